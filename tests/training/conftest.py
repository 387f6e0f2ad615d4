"""Fixtures for the training pipeline's tests: the real `dziri` command in a subprocess,
with the test translator `recording` (tests/fakes/translators.py) installed for it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
DZIRI = str(Path(sys.executable).parent / "dziri")


@pytest.fixture(scope="session")
def recording_plugin_path(tmp_path_factory) -> str:
    """A PYTHONPATH under which `recording` is an installed translator (an entry point of a
    fake distribution, as tests/conftest.py does for `echo`)."""
    base = tmp_path_factory.mktemp("recording-plugin")
    dist_info = base / "dziri_recording_translator-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: dziri-recording-translator\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[dziri.translators]\nrecording = fakes.translators:RecordingTranslator\n"
    )
    return os.pathsep.join([str(base), str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


@pytest.fixture
def dziri(recording_plugin_path):
    """Run `dziri ARGS…` (env: extra variables); returns the CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "PYTHONPATH": recording_plugin_path, **(env or {})}
        return subprocess.run([DZIRI, *args], capture_output=True, text=True, env=full_env, timeout=timeout)

    run.executable = DZIRI
    run.pythonpath = recording_plugin_path
    return run


@pytest.fixture
def one_line_error():
    """`one_line_error(result, *fragments)`: exit 1, one line on stderr holding the fragments, no traceback."""

    def check(result: subprocess.CompletedProcess, *fragments: str) -> str:
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        for fragment in fragments:
            assert fragment in lines[0], lines[0]
        return lines[0]

    return check


@pytest.fixture(scope="session")
def models_data_dir(tmp_path_factory) -> Path:
    """One data dir for the session's training tests: transformers' fp32 copy of a base GGUF
    is made there once (SmolLM2: ~40 s) and reused by every test that loads it."""
    return tmp_path_factory.mktemp("models-data")


@pytest.fixture(scope="session")
def build_script():
    """build_script(data/<set>): that data set's stdlib-only build.py, imported as a module."""

    def load(data_set: Path):
        name = f"{data_set.name.replace('-', '_')}_build"
        spec = importlib.util.spec_from_file_location(name, data_set / "build.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
