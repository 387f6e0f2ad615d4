"""A translator plugin for the translate step's tests: it "translates" by prefixing the
text, and can be slowed down, made to fail or to drop segments, and made to log every
call to a file — the log is how a test counts translations across processes (a
`dziri` subprocess killed with SIGKILL and run again).

Log lines: `start <id> <id> …` when a call begins, `done <id>` per segment when it
returns. Registered for subprocesses by `tests/training/conftest.py` as the
translator `recording`: `DZIRI_TRANSLATOR=recording`, settings as
`DZIRI_TRANSLATOR__RECORDING__DELAY_S=0.5` and so on.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dziri.core.errors import TranslatorError
from dziri.core.hookspecs import hookimpl
from dziri.core.models import PluginContext, Segment


class RecordingTranslator:
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")

        prefix: str = "EN: "
        log_path: str = ""  # append `start …` / `done …` lines here
        delay_s: float = Field(default=0.0, ge=0.0)  # per call, after logging `start`
        fail_marker: str = ""  # a call whose batch has a text containing this raises TranslatorError
        drop_marker: str = ""  # segments whose text contains this are left out of the answer
        empty_marker: str = ""  # segments whose text contains this get an empty translation

    def __init__(self, settings: Settings, context: PluginContext):
        self.settings = settings
        self.calls: list[list[str]] = []  # the ids of each call, in this process

    def _log(self, line: str) -> None:
        if self.settings.log_path:
            with Path(self.settings.log_path).open("a", encoding="utf-8") as log:
                log.write(line + "\n")

    @hookimpl
    def translator_translate(self, segments: list[Segment]) -> list[Segment]:
        s = self.settings
        ids = [segment.id for segment in segments]
        self.calls.append(ids)
        self._log("start " + " ".join(str(i) for i in ids))
        if s.delay_s:
            time.sleep(s.delay_s)
        if s.fail_marker and any(s.fail_marker in segment.text for segment in segments):
            raise TranslatorError(f"the fake service refused a text with {s.fail_marker!r}")
        result = []
        for segment in segments:
            if s.drop_marker and s.drop_marker in segment.text:
                continue
            translation = "" if s.empty_marker and s.empty_marker in segment.text else s.prefix + segment.text
            result.append(segment.model_copy(update={"translation": translation}))
        for segment in result:
            self._log(f"done {segment.id}")
        return result
