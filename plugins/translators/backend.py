"""The backend translator: translates with whatever chat backend dziri is configured to
use (the embedded llama.cpp model by default), so translation works offline.

Small models cannot follow a batch format, so each segment is one chat call: a strict
system prompt, the text as the user's message, temperature 0, and room for an answer
in proportion to the text (`max_tokens`). The answer is tidied like the Groq
translator's (labels, quotes, trailing notes) and, for a one-line text, cut to its
first line, where small models put the translation before explaining it.
"""

from __future__ import annotations

import logging
import math

from pydantic import BaseModel, ConfigDict, Field

from dziri.core.errors import BackendError, ConfigError, ModelError, TranslatorError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import ChatMessage, GenerationOptions, PluginContext, Role, Segment

from .cleaning import clean_translation

log = logging.getLogger(__name__)

PROMPT = (
    "You are a translation engine. Translate the user's message from {source} into {target}. "
    "Reply with only the {target} translation, on one line: no commentary, no notes, no quotes."
)


class BackendTranslatorSettings(BaseModel):
    """`[translator.backend]` in dziri.toml."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_source_token: float = Field(
        2.0, gt=0, description="answer room: this many tokens per token of the source text ..."
    )
    min_tokens: int = Field(16, ge=1, description="... but at least this many")
    max_tokens: int = Field(512, ge=1, description="... and at most this many")
    system_prompt: str = Field(PROMPT, min_length=1, description="{source} and {target} are filled in")


class BackendTranslator:
    Settings = BackendTranslatorSettings

    def __init__(self, settings: BackendTranslatorSettings, context: PluginContext):
        if settings.min_tokens > settings.max_tokens:
            raise ConfigError("translator.backend: min_tokens must not be larger than max_tokens")
        if context.backend is None:
            raise ConfigError(
                "the backend translator needs the configured chat backend, and this plugin was created "
                "without one (PluginContext.backend is None)"
            )
        self.settings = settings
        self._backend_factory = context.backend
        self._backend = None  # created on the first translation, not while the App builds its plugins
        self._template_tokens: int | None = None

    @property
    def backend(self):
        if self._backend is None:
            self._backend = self._backend_factory()
        return self._backend

    @hookimpl
    def translator_translate(
        self, segments: list[Segment], source_language: str, target_language: str
    ) -> list[Segment]:
        system = self.settings.system_prompt.format(source=source_language, target=target_language)
        translated = []
        for number, segment in enumerate(segments, start=1):
            translation = self._translate_one(segment, system) if segment.text.strip() else ""
            translated.append(segment.model_copy(update={"translation": translation}))
            log.info("backend translator: %d/%d segments", number, len(segments))
        return translated

    def _translate_one(self, segment: Segment, system: str) -> str:
        messages = [ChatMessage(role=Role.SYSTEM, content=system), ChatMessage(role=Role.USER, content=segment.text)]
        options = GenerationOptions(max_tokens=self.answer_tokens(segment.text), temperature=0.0, top_p=1.0, seed=0)
        try:
            pieces = self.backend.chat(messages, options)
            answer = "".join(pieces)
        except (BackendError, ModelError) as exc:
            raise TranslatorError(f"the backend failed on segment {segment.id!r}: {exc}") from exc
        translation = clean_translation(answer, single_line="\n" not in segment.text.strip())
        if not translation:
            raise TranslatorError(
                f"the backend gave an empty translation for segment {segment.id!r} (its answer was {answer[:80]!r})"
            )
        return translation

    def answer_tokens(self, text: str) -> int:
        """max_tokens for translating `text`: in proportion to its length in the model's tokens."""
        source_tokens = self._source_tokens(text)
        wanted = math.ceil(source_tokens * self.settings.tokens_per_source_token)
        return max(self.settings.min_tokens, min(self.settings.max_tokens, wanted))

    def _source_tokens(self, text: str) -> int:
        try:
            if self._template_tokens is None:  # what an empty user turn costs: the template alone
                self._template_tokens = self.backend.count_tokens([ChatMessage(role=Role.USER, content="")])
            with_text = self.backend.count_tokens([ChatMessage(role=Role.USER, content=text)])
            return max(1, with_text - self._template_tokens)
        except (BackendError, ModelError) as exc:
            raise TranslatorError(f"the backend cannot count tokens: {exc}") from exc
