"""`dziri data clean`: every rule on Darija as people write it (Arabizi, Arabic script,
French mixed in, emojis, links), stable ids, the input formats, the errors, the CLI."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import types

import pytest

from dziri.core.errors import ValidationError
from dziri.training.clean import RULES, clean_file, clean_text, clean_texts, text_id


def cleaned(text: str) -> str:
    return clean_text(text)[0]


def touched(text: str) -> list[str]:
    return clean_text(text)[1]


def read_out(path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["segments"]


# -- what is kept --------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "3lach ma jitch lbareh?",
    "had l7aja ta3 9lbi",
    "sa7a ftourek, m3ak l7a9",
    "5ouya rah ya5dem f dzayer",
    "2ahlan, rani 3la bali",
    "kilo ta3 tmatem b 200 da, w l9ahwa b 50",
    "rdv 3:30 f la fac",
])
def test_arabizi_digits_are_letters_and_stay(text):
    assert cleaned(text) == text
    assert touched(text) == []


@pytest.mark.parametrize("text", [
    "واش راك خويا؟",
    "أُحِبُّكَ بزاف، إن شاء الله",
    "وين راك ساكن؟ ٣ سنين فالعاصمة",
    "c'est très génial, ça va? à demain ❤ خويا".replace(" ❤", ""),
    "ⵣ amazigh ⴰⵣⵓⵍ",  # Tifinagh is a script, not a symbol: it stays
])
def test_arabic_script_french_accents_and_other_scripts_stay(text):
    assert cleaned(text) == text
    assert touched(text) == []


def test_arabic_presentation_forms_become_the_letters_they_stand_for():
    assert cleaned("ﺳﻼﻡ ﻋﻠﻴﻜﻢ") == "سلام عليكم"
    assert cleaned("ﻻ ﺑﺄﺱ") == "لا بأس"
    assert cleaned("ﷲ") == "الله"
    # An isolated-form harakah stays on its letter (plain NFKC would put a space before it).
    assert cleaned("ب\ufe76اب") == "بَاب"
    assert cleaned("م\ufc60د") == "مَّد"
    assert cleaned("﷽ صباح الخير") == "بسم الله الرحمن الرحيم صباح الخير"
    assert touched("ﺳﻼﻡ") == ["unicode"]


def test_tatweel_html_entities_and_styled_latin_are_normalised():
    assert cleaned("ســــلام خويا") == "سلام خويا"
    assert cleaned("wach &amp; kifach &quot;rak&quot;") == 'wach & kifach "rak"'
    assert cleaned("ｗａｃｈ ｒａｋ") == "wach rak"
    assert cleaned("𝐰𝐚𝐜𝐡 𝐫𝐚𝐤") == "wach rak"
    assert cleaned("cafe\u0301") == "café"  # a decomposed accent is composed


# -- what goes -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("wach rak khouya? 😂😂", "wach rak khouya?"),
    ("mlih😂merci", "mlih merci"),
    ("يا خو 🇩🇿🇩🇿", "يا خو"),
    ("bravo 👍🏽 l'équipe", "bravo l'équipe"),
    ("nhabek ❤️ bzaf", "nhabek bzaf"),
    ("l3ayla 👨\u200d👩\u200d👧 kamla", "l3ayla kamla"),
    ("3️⃣ kilo", "kilo"),  # a keycap is an emoji; the 3 in 3lach is a letter
    ("ana mlih :) w nta :D", "ana mlih w nta"),
    ("hhh xD <3 ^^", "hhh"),
    ("sa7a ⏰ ⭐ ☀️", "sa7a"),
])
def test_emojis_and_emoticons_are_removed(text, expected):
    assert cleaned(text) == expected
    assert "emojis" in touched(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("chouf hada https://t.co/3lach", "chouf hada"),
    ("http://example.dz/page?id=7aja w ba3d", "w ba3d"),
    ("zour www.univ-alger.dz ghodwa", "zour ghodwa"),
    ("ab3athli 3la karim.dz@gmail.com", "ab3athli 3la"),
    ("HTTPS://WWW.YOUTUBE.COM/watch?v=abc chouf", "chouf"),
])
def test_links_and_email_addresses_are_removed(text, expected):
    assert cleaned(text) == expected
    assert "links" in touched(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("@karim_dz 3lach ma jitch?", "3lach ma jitch?"),
    ("merci @محمد bzaf", "merci bzaf"),
    ("@sara.b @yacine wach rakom", "wach rakom"),
])
def test_mentions_are_removed(text, expected):
    assert cleaned(text) == expected
    assert touched(text)[0] == "mentions"


@pytest.mark.parametrize(("text", "expected"), [
    ("#sa7a_ftourek ya khouti", "sa7a ftourek ya khouti"),
    ("وين راك #الجزائر", "وين راك الجزائر"),
    ("##dz bled", "dz bled"),
    ("C# w python", "C# w python"),  # no word after the sign: not a hashtag
])
def test_hashtags_keep_their_word(text, expected):
    assert cleaned(text) == expected


def test_other_symbols_and_invisible_characters_are_removed():
    assert cleaned("★ top ★ ۞") == "top"
    assert cleaned("\u200fwach\u200e rak\ufeff") == "wach rak"  # bidi marks, BOM
    assert cleaned("wach\u200brak") == "wach rak"  # a zero-width space separated two words
    assert cleaned("sa\x007a") == "sa7a"
    assert touched("۞ top") == ["symbols", "whitespace"]


def test_whitespace_is_collapsed_and_trimmed():
    assert cleaned("  rani\tf   la\u00a0fac\n\nw nta  ") == "rani f la fac w nta"
    assert touched("rani  hna") == ["whitespace"]


def test_rules_run_in_the_documented_order():
    assert list(RULES) == ["unicode", "links", "mentions", "hashtags", "emojis", "symbols", "whitespace"]
    assert touched("@karim #dz 😂 https://x.dz  ۞") == ["links", "mentions", "hashtags", "emojis", "symbols",
                                                        "whitespace"]


# -- dropped lines, counts, ids --------------------------------------------------------------
RAW = [
    "wach rak khouya? 😂😂 https://t.co/xyz",  # emojis, links, whitespace
    "@karim_dz 3lach ma jitch lbareh?",  # mentions, whitespace
    "Wach rak khouya?",  # a duplicate of the first once cleaned (case aside)
    "#الجزائر وين راك يا خو 🇩🇿",  # hashtags, emojis, whitespace
    "c'est vrai, had l7aja ta3 9lbi",  # untouched
    "ﺳﻼﻡ ﻋﻠﻴﻜﻢ",  # unicode
    "سلام عليكم",  # a duplicate of the one before
    "   ",  # empty
    None,  # empty (a record with no text)
    "😂😂😂",  # emojis, whitespace; then empty
    "!!! 123",  # no letter: empty
]


def test_every_rule_counts_the_lines_it_touched_and_removed():
    segments, report = clean_texts(RAW)
    assert [s.text for s in segments] == [
        "wach rak khouya?", "3lach ma jitch lbareh?", "الجزائر وين راك يا خو", "c'est vrai, had l7aja ta3 9lbi",
        "سلام عليكم",
    ]
    assert report.lines_in == 11 and report.lines_out == 5
    assert report.changed == {"unicode": 1, "links": 1, "mentions": 1, "hashtags": 1, "emojis": 3, "symbols": 0,
                              "whitespace": 5}
    assert report.removed == {"empty": 4, "duplicates": 2}
    assert report.lines_in == report.lines_out + sum(report.removed.values())


def test_duplicates_keep_the_first_text_as_written():
    segments, report = clean_texts(["Sa7a Ftourek", "sa7a ftourek 😂", "SA7A   FTOUREK"])
    assert [s.text for s in segments] == ["Sa7a Ftourek"]
    assert report.removed["duplicates"] == 2


def test_ids_are_a_hash_of_the_cleaned_text_and_stable_across_runs_and_files():
    first, _ = clean_texts(["wach rak", "sa7a ftourek", "واش راك"])
    again, _ = clean_texts(["واش راك", "autre chose", "sa7a ftourek 😂", "wach  rak"])
    ids = {s.text: s.id for s in first}
    assert {s.text: s.id for s in again if s.text in ids} == ids
    assert ids["wach rak"] == hashlib.sha256(b"wach rak").hexdigest()[:16] == text_id("wach rak")
    assert len(set(ids.values())) == 3


def test_colliding_ids_are_lengthened_so_every_id_is_unique():
    texts = [f"jumla {n}" for n in range(200)]
    segments, _ = clean_texts(texts, id_length=1)  # 16 possible one-digit ids for 200 texts
    ids = [s.id for s in segments]
    assert len(set(ids)) == 200
    assert ids == [s.id for s in clean_texts(texts, id_length=1)[0]]  # and the same in every run
    assert all(hashlib.sha256(s.text.encode()).hexdigest().startswith(s.id) for s in segments)


# -- input formats ---------------------------------------------------------------------------
def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_json_format(tmp_path):
    source = write(tmp_path / "seed.json", json.dumps(
        {"segments": [{"id": "1", "text": "wach rak 😂"}, {"id": "2", "text": "labas 3lik"}]}, ensure_ascii=False))
    report = clean_file(str(source), tmp_path / "out.json")
    assert [s["text"] for s in read_out(tmp_path / "out.json")] == ["wach rak", "labas 3lik"]
    assert report.lines_in == 2 and report.changed["emojis"] == 1


def test_json_list_of_strings_and_of_objects_with_a_detected_column(tmp_path):
    write(tmp_path / "strings.json", json.dumps(["wach rak", "labas", None]))
    clean_file(str(tmp_path / "strings.json"), tmp_path / "a.json")
    assert [s["text"] for s in read_out(tmp_path / "a.json")] == ["wach rak", "labas"]
    write(tmp_path / "objects.json", json.dumps([{"label": 1, "sentence": "sa7a"}, {"label": 0, "sentence": "bslama"}]))
    clean_file(str(tmp_path / "objects.json"), tmp_path / "b.json")
    assert [s["text"] for s in read_out(tmp_path / "b.json")] == ["sa7a", "bslama"]
    write(tmp_path / "one.json", json.dumps([{"n": 1, "darija_post": "yaw fi"}]))  # the only string field
    clean_file(str(tmp_path / "one.json"), tmp_path / "c.json")
    assert [s["text"] for s in read_out(tmp_path / "c.json")] == ["yaw fi"]


def test_jsonl_with_blank_lines_and_a_chosen_column(tmp_path):
    write(tmp_path / "in.jsonl", '{"text": "x", "darija": "wach rak"}\n\n{"text": "y", "darija": "labas"}\n')
    report = clean_file(str(tmp_path / "in.jsonl"), tmp_path / "out.json", column="darija")
    assert [s["text"] for s in read_out(tmp_path / "out.json")] == ["wach rak", "labas"]
    assert report.lines_in == 2


def test_csv_detects_the_text_column_and_keeps_quoted_newlines_and_commas(tmp_path):
    write(tmp_path / "in.csv", 'id,Text,label\n1,"wach rak, khouya?",pos\n2,"sa7a\nftourek",pos\n3,,neg\n')
    report = clean_file(str(tmp_path / "in.csv"), tmp_path / "out.json")
    assert [s["text"] for s in read_out(tmp_path / "out.json")] == ["wach rak, khouya?", "sa7a ftourek"]
    assert report.lines_in == 3 and report.removed["empty"] == 1


def test_csv_with_column_tsv_and_text_files(tmp_path):
    write(tmp_path / "in.csv", "a,b\nwach,rak\nlabas,hamdoullah\n")
    clean_file(str(tmp_path / "in.csv"), tmp_path / "csv.json", column="b")
    assert [s["text"] for s in read_out(tmp_path / "csv.json")] == ["rak", "hamdoullah"]
    write(tmp_path / "in.tsv", "text\tlang\nwach rak\tdz\n")
    clean_file(str(tmp_path / "in.tsv"), tmp_path / "tsv.json")
    assert [s["text"] for s in read_out(tmp_path / "tsv.json")] == ["wach rak"]
    (tmp_path / "in.txt").write_bytes("\ufeffwach rak\n\nlabas 3lik\r\nwach rak\n".encode())  # a BOM, CRLF
    report = clean_file(str(tmp_path / "in.txt"), tmp_path / "txt.json")
    assert [s["text"] for s in read_out(tmp_path / "txt.json")] == ["wach rak", "labas 3lik"]
    assert report.removed == {"empty": 1, "duplicates": 1}


def test_format_option_overrides_the_file_name(tmp_path):
    write(tmp_path / "export.data", "wach rak\nlabas\n")
    clean_file(str(tmp_path / "export.data"), tmp_path / "out.json", fmt="txt")
    assert len(read_out(tmp_path / "out.json")) == 2


class FakeDataset:
    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


def test_hugging_face_dataset_when_datasets_is_installed(tmp_path, monkeypatch):
    calls = []

    def load_dataset(name, split):
        calls.append((name, split))
        return FakeDataset([{"label": 0, "tweet": "wach rak 😂"}, {"label": 1, "tweet": "@x labas"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    report = clean_file("someone/algerian-darija", tmp_path / "out.json", split="test")
    assert calls == [("someone/algerian-darija", "test")]
    assert [s["text"] for s in read_out(tmp_path / "out.json")] == ["wach rak", "labas"]
    assert report.source == "someone/algerian-darija (test)"
    clean_file("hf:darija", tmp_path / "out2.json", column="tweet")
    assert calls[-1] == ("darija", "train")
    with pytest.raises(ValidationError, match="no column 'text'.*'label', 'tweet'"):
        clean_file("hf:darija", tmp_path / "out3.json", column="text")


def test_hugging_face_dataset_that_cannot_be_loaded(tmp_path, monkeypatch):
    def load_dataset(name, split):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(ValidationError, match="cannot load the Hugging Face dataset 'a/b'.*no network"):
        clean_file("a/b", tmp_path / "out.json")


def test_hugging_face_dataset_without_datasets_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # an import of it fails, as when it is not installed
    with pytest.raises(ValidationError, match=r"needs the `datasets` package: pip install 'dziri\[train\]'"):
        clean_file("someone/darija", tmp_path / "out.json")


# -- output ----------------------------------------------------------------------------------
def test_output_is_replaced_atomically_and_leaves_no_temp_file(tmp_path):
    source = write(tmp_path / "in.txt", "wach rak\n")
    out = write(tmp_path / "out.json", "old content")
    clean_file(str(source), out)
    assert read_out(out) == [{"id": text_id("wach rak"), "text": "wach rak"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.json"]


def test_output_written_in_utf8_one_segment_a_line(tmp_path):
    source = write(tmp_path / "in.txt", "واش راك\nlabas\n")
    clean_file(str(source), tmp_path / "out.json")
    lines = (tmp_path / "out.json").read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"segments": [' and "واش راك" in lines[1] and lines[-1] == "]}"


def test_progress_bar_when_asked(tmp_path, capsys):
    source = write(tmp_path / "in.txt", "\n".join(f"jumla {n}" for n in range(50)))
    clean_file(str(source), tmp_path / "out.json", progress=True)
    assert "cleaning" in capsys.readouterr().err


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.json", None, "input file missing.json does not exist"),
    ("data.xml", "<a/>", "unknown input format for data.xml"),
    ("bad.json", '{"segments": [\n  {"id": "1", "text": "wach"\n  {"id": "2"}]}', "bad.json is not valid JSON: line 3"),
    ("bad.jsonl", '{"text": "wach"}\n{"text": "rak"}\n{"text": oops}\n', "bad.jsonl is not valid JSON: line 3"),
    ("nocol.csv", "a,b\n1,2\n", "cannot tell which column holds the text (columns: 'a', 'b'): pass --column"),
    ("nofield.json", '[{"a": 1, "b": 2}]', "cannot tell which column holds the text"),
    ("dict.json", '{"data": []}', "expected {\"segments\": [...]}"),
    ("number.json", '[{"text": 7}]', "record 1: the text is a int, not a string"),
    ("empty.csv", "", "empty.csv is empty"),
    ("latin1.txt", b"caf\xe9", "latin1.txt is not UTF-8 text"),
])
def test_bad_input_is_one_clear_error(tmp_path, name, content, message):
    if content is not None:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValidationError) as caught:
        clean_file(name, tmp_path / "out.json")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.json").exists()


def test_a_column_that_does_not_exist(tmp_path):
    write(tmp_path / "in.csv", "text,label\nwach,1\n")
    with pytest.raises(ValidationError, match="no column 'darija' \\(columns: 'text', 'label'\\)"):
        clean_file("in.csv", tmp_path / "out.json", column="darija")
    write(tmp_path / "in.jsonl", '{"text": "wach"}\n')
    with pytest.raises(ValidationError, match="line 1: no 'darija' field"):
        clean_file("in.jsonl", tmp_path / "out.json", column="darija")


def test_an_output_directory_that_does_not_exist(tmp_path):
    write(tmp_path / "in.txt", "wach\n")
    with pytest.raises(ValidationError, match="the directory .*nowhere does not exist"):
        clean_file("in.txt", tmp_path / "nowhere" / "out.json")


# -- the command -----------------------------------------------------------------------------
def test_cli_prints_the_report_and_writes_the_segments(tmp_path, dziri):
    write(tmp_path / "raw.jsonl", "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in RAW if t))
    result = dziri("data", "clean", "raw.jsonl", "clean.json")
    assert result.returncode == 0, result.stderr
    assert re.search(r"lines in +10\n +lines out +5\n", result.stdout)
    assert re.search(r"duplicates +2 +dropped: duplicate", result.stdout)
    assert len(read_out(tmp_path / "clean.json")) == 5
    result = dziri("data", "clean", "raw.jsonl", "clean.json", "--json")
    report = json.loads(result.stdout)
    assert report["lines_out"] == 5 and report["removed"] == {"empty": 3, "duplicates": 2}
    assert report["changed"]["emojis"] == 3


def test_cli_errors_are_one_line(tmp_path, dziri, one_line_error):
    one_line_error(dziri("data", "clean", "nope.json", "out.json"), "Error: input file nope.json does not exist")
    write(tmp_path / "bad.jsonl", '{"text": "wach"}\n{"text": \n')
    one_line_error(dziri("data", "clean", "bad.jsonl", "out.json"), "not valid JSON: line 2")
    # Offline (as here), a Hugging Face dataset name fails in one line too; without the
    # `datasets` package it says how to install it (test above).
    one_line_error(dziri("data", "clean", "someone/darija", "out.json", env={"HF_HUB_OFFLINE": "1"}),
                   "cannot load the Hugging Face dataset 'someone/darija'")
