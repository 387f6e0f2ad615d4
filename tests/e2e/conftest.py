"""The chat site end to end: the real `dziri serve` in a subprocess, driven by Debian's
chromium through Playwright (never a downloaded browser).

Without /usr/bin/chromium the tests skip, except in CI (CI=true), where `make test`
installs it, so a missing browser is a failure there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
FRONTEND_DIST = REPO / "django_host" / "frontend" / "dist" / "index.html"
SCREENSHOTS = REPO / "docs" / "screenshots"
DZIRI = Path(sys.executable).parent / "dziri"
# Read at import: the suite's autouse fixture clears every DZIRI_* variable for each test.
TAKE_SCREENSHOTS = os.environ.get("DZIRI_SCREENSHOTS") == "1"
START_TIMEOUT_S = 120  # generous: a loaded 2-core machine starts Django and the model slowly
DEFAULT_TIMEOUT_MS = 15_000


def _require_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is missing (`make test` installs Debian's chromium)")
    if not FRONTEND_DIST.exists():
        missing.append(f"the frontend is not built ({FRONTEND_DIST.relative_to(REPO)}; `make frontend`)")
    if not missing:
        return
    reason = "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`dziri serve` on a free loopback port, over one data dir that outlives restarts."""

    def __init__(self, data_dir: Path, env: dict[str, str], expect_healthy: bool = True):
        self.data_dir = data_dir
        self.expect_healthy = expect_healthy  # False: up once /api/health answers at all
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("DZIRI_") and k != "GROQ_API_KEY"}
        self.env = {
            **base,
            "DZIRI_DATA_DIR": str(data_dir),
            "DZIRI_LOAD_PLUGINS": "",
            "XDG_CONFIG_HOME": str(data_dir.parent / "xdg-config"),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it until stop()
        self.process = subprocess.Popen(
            [str(DZIRI), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=self.data_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dziri serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/health", timeout=2) as response:
                    if response.status == 200 and json.load(response).get("status") == "ok":
                        return
            except urllib.error.HTTPError as error:
                if error.code == 503 and not self.expect_healthy:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dziri serve was not healthy within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _serve(tmp_path_factory, name: str, env: dict[str, str], expect_healthy: bool = True):
    _require_browser()
    base = tmp_path_factory.mktemp(name)
    server = Server(base / "data", env, expect_healthy)
    server.data_dir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The site on the example echo backend: it answers "echo: <message>" one word per
    50 ms, so streaming can be watched and a long reply can be stopped."""
    yield from _serve(
        tmp_path_factory,
        "site-echo",
        {"DZIRI_BACKEND": "echo", "DZIRI_BACKEND__ECHO__DELAY_S": "0.05"},
    )


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """The echo site with room for one reply and no waiting line: a second reply gets 503."""
    yield from _serve(
        tmp_path_factory,
        "site-busy",
        {
            "DZIRI_BACKEND": "echo",
            "DZIRI_BACKEND__ECHO__DELAY_S": "0.05",
            "DZIRI_WEB__MAX_CONCURRENT_REPLIES": "1",
            "DZIRI_WEB__MAX_WAITING": "0",
        },
    )


@pytest.fixture(scope="module")
def unavailable_server(tmp_path_factory):
    """The site on an Ollama backend with no Ollama behind it: health says unavailable."""
    yield from _serve(
        tmp_path_factory,
        "site-no-model",
        {"DZIRI_BACKEND": "ollama", "DZIRI_BACKEND__OLLAMA__HOST": f"http://127.0.0.1:{free_port()}"},
        expect_healthy=False,
    )


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    """The site on the embedded defaults: llama.cpp on the bundled Gemma 3 270M and SQLite."""
    yield from _serve(tmp_path_factory, "site-model", {"DZIRI_CHAT__MAX_TOKENS": "64"})


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser, request):
    """Fresh browser contexts (their own cookies: one per person), closed after the test."""
    contexts = []

    def make(base_url: str, **options):
        context = browser.new_context(base_url=base_url, locale="en-US", **options)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot():
    """save(page, name) writes docs/screenshots/<name>.png, only when DZIRI_SCREENSHOTS=1
    (a test run must not rewrite tracked files)."""

    def save(page, name: str) -> None:
        if not TAKE_SCREENSHOTS:
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring or caret
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled", caret="hide")

    return save
