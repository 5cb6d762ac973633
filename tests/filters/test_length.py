import pytest

from vlcurate.filters.length import LengthFilter
from vlcurate.schemas.record import Pair


def run(step: LengthFilter, text: str) -> tuple[dict, str | None]:
    pair = Pair(uid="s/1", source="s", caption=text)
    step.apply(pair)
    return pair.scores, pair.reject


CASES = [
    # DataComp minimum: more than 2 words and more than 5 characters
    ("", "too_short"),
    ("Dog", "too_short"),
    ("Throw Pillow", "too_short"),
    ("a b c", "too_short"),  # 3 words but 5 characters
    ("a b cd", None),
    ("A red car", None),
    ("iphone-5s-gold-space-gray-32gb", "too_short"),  # one word
    # maximum: 300 characters / 60 words
    ("word " * 60, None),
    ("word " * 61, "too_long"),
    ("x" * 150 + " " + "y" * 100 + " z", None),
    ("x" * 200 + " " + "y" * 100 + " z", "too_long"),
    # Chinese: CJK ideographs counted (min 4, max 50)
    ("小狗", "too_short"),
    ("小狗狗", "too_short"),
    ("一只小狗", None),
    ("北京天安门广场的夜景", None),
    ("我爱北京 Beijing", "too_short"),  # 4 ideographs vs 7 Latin letters: English rules, 2 words
    ("中国 China Daily", None),
    ("中国 China", "too_short"),  # English rules: 2 words
    ("风" * 50, None),
    ("风" * 51, "too_long"),
    ("价格：１２３元", "too_short"),  # 3 ideographs; full-width digits are not ideographs
]


@pytest.mark.parametrize(("text", "reason"), CASES)
def test_length(text, reason):
    assert run(LengthFilter(), text)[1] == reason


def test_scores():
    scores, _ = run(LengthFilter(), "北京 天安门 Beijing")
    assert scores == {"n_chars": 14, "n_words": 3, "n_cjk": 5, "chinese": 0}
    scores, _ = run(LengthFilter(), "北京天安门广场 夜景")
    assert scores == {"n_chars": 10, "n_words": 2, "n_cjk": 9, "chinese": 1}


def test_thresholds_are_parameters():
    step = LengthFilter(min_words=1, min_chars=1, max_chars=10, min_cjk_chars=1)
    assert run(step, "Dog")[1] is None
    assert run(step, "小狗")[1] is None
    assert run(step, "a" * 11)[1] == "too_long"
