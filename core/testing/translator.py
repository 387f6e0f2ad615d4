"""The translator contract suite."""

from __future__ import annotations

import pytest

from ..models import Segment
from ..roles import Translator, facade_for


class TranslatorContract:
    """Subclass and provide a `translator_plugin` fixture returning a plugin instance."""

    source_language = "Algerian Arabic (Darija)"
    target_language = "English"

    @pytest.fixture
    def translator_plugin(self):
        raise NotImplementedError("provide a `translator_plugin` fixture returning your plugin instance")

    @pytest.fixture
    def translator(self, translator_plugin) -> Translator:
        return facade_for("translator", translator_plugin)

    def translate(self, translator: Translator, segments: list[Segment]) -> list[Segment]:
        return translator.translate(segments, self.source_language, self.target_language)

    def test_every_id_comes_back_once_with_a_translation(self, translator):
        segments = [Segment(id="s1", text="wach rak?"), Segment(id="s2", text="واش راك خويا؟"),
                    Segment(id="s3", text="ana mlih, merci")]
        result = self.translate(translator, segments)
        assert sorted(s.id for s in result) == ["s1", "s2", "s3"]
        by_id = {s.id: s for s in result}
        for segment in segments:
            assert by_id[segment.id].text == segment.text
            assert isinstance(by_id[segment.id].translation, str) and by_id[segment.id].translation.strip()

    def test_an_empty_batch_gives_an_empty_result(self, translator):
        assert self.translate(translator, []) == []

    def test_the_input_segments_are_not_modified(self, translator):
        segments = [Segment(id="a", text="sa7a ftourek")]
        self.translate(translator, segments)
        assert segments[0].translation is None
