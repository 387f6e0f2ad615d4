"""The folding and snippets that search shares between the stores and the site."""

import pytest

from dziri.core.errors import ValidationError
from dziri.core.search import SNIPPET_CHARS, fold, folded_words, snippet, terms


def test_folding_joins_the_spellings_people_use():
    assert fold("CHORBA Sétif") == "chorba setif"
    assert folded_words("أكلةٌ بنينة، مدينه!") == "اكله بنينه مدينه"  # harakat, hamza, ta marbuta
    assert folded_words("ktabt_lik 3lik — wach?") == "ktabt lik 3lik wach"


@pytest.mark.parametrize("query, message", [
    ("", "empty"), ("   ", "empty"), ("x" * 201, "at most 200"), ("?! …", "no letters"), (None, "empty")])
def test_a_bad_query_is_a_clear_error(query, message):
    with pytest.raises(ValidationError, match=message):
        terms(query)


def test_terms_are_the_query_s_distinct_folded_words():
    assert terms("Chorba chorba, SÉTIF") == ["chorba", "setif"]


def test_the_snippet_marks_every_matching_word_in_the_original_text():
    text, spans = snippet("Kifach ndir CHORBA frik? yemma dirat chorbat", ["chorb"])
    assert [text[s:e] for s, e in spans] == ["CHORBA", "chorbat"]
    text, spans = snippet("شربتْ الشُّربة", ["الشربه"])
    assert [text[s:e] for s, e in spans] == ["الشُّربة"]


def test_a_long_message_is_cut_around_the_match_at_word_boundaries():
    content = " ".join(f"kelma{n}" for n in range(200)) + " chorba " + " ".join(f"akher{n}" for n in range(100))
    text, [(start, end)] = snippet(content, ["chorba"])
    assert text[start:end] == "chorba" and text.startswith("…") and text.endswith("…")
    assert len(text) <= SNIPPET_CHARS + 20
    assert all(word.startswith(("kelma", "chorba", "akher", "…")) for word in text.split())
