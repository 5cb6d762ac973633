import pytest

from vlcurate.filters.academic import StripTags, keep_longest
from vlcurate.schemas.record import Pair


@pytest.mark.parametrize(
    ("tags", "raw", "expected"),
    [
        ([], "<PERSON> at the premiere", "<PERSON> at the premiere"),  # default: no-op
        (["<PERSON>"], "<PERSON> at the premiere", "at the premiere"),
        (["<PERSON>"], "<PERSON> and <PERSON> on stage", "and on stage"),
        (
            ["<PERSON>"],
            "A <person> stays: tags are case-sensitive",
            "A <person> stays: tags are case-sensitive",
        ),
        (["<PERSON>", "<LOC>"], "<PERSON> visits <LOC> today", "visits today"),
        (["<PERSON>"], "no tag here", "no tag here"),
    ],
)
def test_strip_tags(tags, raw, expected):
    pair = Pair(uid="s/1", source="s", caption=raw)
    StripTags(tags=tags).apply(pair)
    assert pair.caption == expected and pair.reject is None


def test_drop_mode():
    pair = Pair(uid="s/1", source="s", caption="<PERSON> at the premiere")
    StripTags(tags=["<PERSON>"], drop=True).apply(pair)
    assert pair.reject == "special_tag" and pair.caption == "<PERSON> at the premiere"
    pair = Pair(uid="s/1", source="s", caption="a clean caption")
    StripTags(tags=["<PERSON>"], drop=True).apply(pair)
    assert pair.reject is None


@pytest.mark.parametrize(
    ("captions", "expected"),
    [
        (["a dog"], "a dog"),
        (["a dog", "a brown dog on grass", "dog"], "a brown dog on grass"),
        (["bbb", "aaa", "ccc"], "aaa"),  # ties: smallest, whatever the order
        (["ccc", "aaa", "bbb"], "aaa"),
        (["  padded  ", "longer!"], "longer!"),  # surrounding whitespace does not count
        (iter(["x", "yy"]), "yy"),
    ],
)
def test_keep_longest(captions, expected):
    assert keep_longest(captions) == expected


def test_keep_longest_needs_captions():
    with pytest.raises(ValueError):
        keep_longest([])
