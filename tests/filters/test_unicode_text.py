import pytest

from vlcurate.filters.unicode_text import NormalizeCaption
from vlcurate.schemas.record import Pair


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CafÃ©", "Café"),  # mojibake: UTF-8 read as Latin-1
        ("donâ€™t stop", "don't stop"),  # ftfy also uncurls quotes
        ("Ã\xa0 la carte", "à la carte"),
        ("e\u0301cole", "école"),  # NFC
        ("zero\u200bwidth\u200d joiner", "zerowidth joiner"),
        ("soft\u00adhyphen", "softhyphen"),
        ("\ufeffBOM at start", "BOM at start"),
        ("tabs\tand\nnewlines\r\n", "tabs and newlines"),
        ("non\xa0breaking  space", "non breaking space"),
        ("ctrl\x01char", "ctrlchar"),
        ("  plain ascii  ", "plain ascii"),
        ("北京　天安门", "北京 天安门"),  # ideographic space is whitespace
        ("背景上，左边（三个）！", "背景上，左边（三个）！"),  # Chinese punctuation stays full-width
        ("ｆｕｌｌ ｗｉｄｔｈ １２３", "ｆｕｌｌ ｗｉｄｔｈ １２３"),
    ],
)
def test_normalize_caption(raw, expected):
    assert NormalizeCaption().clean(raw) == expected


def test_fix_width_folds_full_width_forms_when_asked():
    assert NormalizeCaption(fix_width=True).clean("ｆｕｌｌ １２３，") == "full 123,"


def test_empty_after_normalization_is_rejected():
    pair = Pair(uid="s/1", source="s", caption="\u200b \t")
    NormalizeCaption().apply(pair)
    assert pair.caption == "" and pair.reject == "caption_empty"
