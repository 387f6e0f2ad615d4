"""The example plugin passes dziri's backend contract suite: this is all an author writes."""

import pytest

from dziri.core.models import PluginContext
from dziri.core.testing import BackendContract, TranslatorContract
from dziri_echo import EchoBackend, EchoTranslator


class TestEchoBackend(BackendContract):
    @pytest.fixture
    def backend_plugin(self, tmp_path):
        return EchoBackend(EchoBackend.Settings(), PluginContext(data_dir=tmp_path))


class TestEchoTranslator(TranslatorContract):
    @pytest.fixture
    def translator_plugin(self, tmp_path):
        return EchoTranslator(EchoTranslator.Settings(), PluginContext(data_dir=tmp_path))
