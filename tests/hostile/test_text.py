"""Hostile captions through the text steps: long repeated patterns finish in linear time with exact
results, the size guard rejects what no caption is, and no text step raises on any text.

Speed is not timed here: each long case runs in a subprocess under a generous timeout (LIMIT_S), so a
step gone quadratic again fails by timeout (before the fix "stock photo" repeated to 96 KB took 52 s and
960 KB did not finish in 600 s), while a slow machine only makes the test slower.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlcurate.cli import main
from vlcurate.filters.chain import DEFAULT_CHAIN
from vlcurate.filters.patterns import has_special_tokens
from vlcurate.filters.registry import build_step
from vlcurate.filters.runner import StepRunner
from vlcurate.schemas.batch import batched
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.helpers import jpeg, write_tar

LIMIT_S = 60
TEXT_STEPS = DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")]
KB = 1024


def run_isolated(body: str) -> object:
    """Runs `body` (Python that sets `result`) in a fresh interpreter under LIMIT_S; returns `result`."""
    code = "import json, warnings\nwarnings.filterwarnings('ignore')\n" + textwrap.dedent(body)
    code += "\nprint(json.dumps(result))\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_S, env=env, check=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish in {LIMIT_S} s: quadratic again?")
    return json.loads(done.stdout.splitlines()[-1])


def repeat(unit: str, size: int) -> str:
    return unit * (size // len(unit))


# --- clean_patterns ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [12 * KB, 24 * KB, 48 * KB, 96 * KB, 960 * KB])
def test_stock_photo_repeated_is_removed_in_linear_time(size):
    caption = repeat("stock photo ", size)
    result = run_isolated(f"""
        from vlcurate.filters.patterns import CleanPatterns
        caption = "stock photo " * {len(caption) // 12}
        clean = CleanPatterns().clean
        result = [clean(caption), clean("A red car " + caption + "parked outside")]
    """)
    assert result == ["", "A red car parked outside"]


# Shapes that were quadratic (or worse) in clean_patterns, each ~200 KB, with the exact result.
PATTERN_CASES = {
    "urls back to back": ('"http://example.com/a/b " * 9000', ""),
    "a dashed file stem": ('"a-" * 100000 + "b.jpg"', "a-" * 100000 + "b"),
    "dotted run before an e-mail": ('"Name " + "a." * 100000 + " x@y.com"', "Name " + "a." * 100000),
    "dotted run before a slash": ('"x" + "a." * 100000 + "/"', "x" + "a." * 100000),
    "dashed run before a slash": ('"x" + "a-" * 100000 + " /x"', "x" + "a-" * 100000 + " /x"),
    "whitespace run after a removal": ('"x http://a.b/c" + " " * 200000 + "y"', "x y"),
    "separator pile": ('"x http://a.b/c" + " , ," * 50000 + "y"', "x, ,y"),
    "commas without space": ('"x http://a.b/c " + "," * 200000 + "y"', "x ,y"),
    "edge runs": ('"-x" + " -" * 100000 + "x-"', "x" + " -" * 100000 + "x"),
    "stock photo then spaces": ('"cat stock photo" + " " * 200000 + "x"', "cat x"),
    "nested special tokens": ('"<im" * 60000 + "<img>" + "g>" * 60000', ""),
    "long extra token": ('"a <|extra_" + "1" * 200000 + "|> b"', "a b"),
}


@pytest.mark.parametrize("name", list(PATTERN_CASES))
def test_clean_patterns_is_linear_on_hostile_shapes(name):
    expression, expected = PATTERN_CASES[name]
    result = run_isolated(f"""
        from vlcurate.filters.patterns import CleanPatterns
        result = CleanPatterns().clean({expression})
    """)
    assert result == expected


def test_tokens_joined_by_tidying_again_and_again_end_without_tokens():
    # Each round's tidying ("|||" -> "|") forms the next token; a caption that needs more than 8 rounds
    # (no real one needs 2) loses its "<" instead.
    result = run_isolated("""
        from vlcurate.filters.patterns import CleanPatterns
        clean = CleanPatterns().clean
        result = [clean("x " + "<|||" * k + "im_end|>" + "||im_end|>" * k + " y") for k in (1, 5, 20000)]
    """)
    assert result[:2] == ["x ||im_end|> y", "x ||im_end|> y"]
    assert not has_special_tokens(result[2]) and result[2].startswith("x |") and result[2].endswith(" y")


# --- clean_html --------------------------------------------------------------------------------------
HTML_CASES = {
    "unclosed tags": ('"cat " + "<a " * 60000 + "dog"', "cat" + " <a" * 59998),
    "unclosed separating tags": ('"a <div " * 40000', "a" + " <div a" * 39998),
    "unclosed quoted attributes": ('"<a href=\'" * 30000', "<a href='" * 29998),
    "unclosed comments": ('"x <!--" * 50000', "x <!--" * 50000),
    "nested tags": ('"<b>" * 30000 + "x" + "</b>" * 30000', "x"),
    "entities": ('"&amp;" * 60000', "&" * 60000),
    "whitespace before a lone <": ('"<b>x</b>" + " " * 200000 + "<"', "x"),
}


@pytest.mark.parametrize("name", list(HTML_CASES))
def test_clean_html_is_linear_on_hostile_shapes(name):
    expression, expected = HTML_CASES[name]
    result = run_isolated(f"""
        from vlcurate.filters.html_text import strip_html
        result = strip_html({expression})
    """)
    assert result == expected


def test_a_marked_section_html_parser_refuses_is_text():
    # html.parser raises on "<![" followed by no name; that was a step_error, now it is text.
    clean = build_step("clean_html").clean
    assert clean("<b>x</b> <![ y") == "x <![ y"
    assert clean("a <![foo b") == "a <![foo b"


# --- the other text steps ----------------------------------------------------------------------------
OTHER_CASES = [
    ("normalize_caption", '" \\u200d" * 100000 + "x"', "x"),
    ("normalize_caption", '"Ã©" * 100000', "é" * 100000),
    ("script", '"中a" * 100000', {"n_disallowed": 0}),
    ("emoji", '"😀\\u200d" * 100000', {"n_emoji": 1}),
    ("length", '"a " * 300000', {"n_chars": 600000, "n_words": 300000, "n_cjk": 0, "chinese": 0}),
    ("language", '"中文 " * 100000', {"lang_prob": 0.8482}),
]


@pytest.mark.parametrize(("step", "expression", "expected"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_text_steps_are_linear(step, expression, expected):
    result = run_isolated(f"""
        from vlcurate.filters.registry import build_step
        from vlcurate.schemas.record import Pair
        step = build_step({step!r})
        caption = {expression}
        pair = Pair(uid="h/1", source="h", caption=caption, caption_raw=caption)
        step.apply(pair)
        result = pair.caption if {step!r} == "normalize_caption" else pair.scores
    """)
    assert result == expected


# --- max_caption_bytes -------------------------------------------------------------------------------
def test_the_size_guard_counts_bytes_not_characters():
    guard = build_step("max_caption_bytes")
    for caption, too_large in [
        ("a" * 4096, False),
        ("a" * 4097, True),
        ("猫" * 1365, False),  # 4095 bytes
        ("猫" * 1366, True),  # 4098 bytes: 1,366 characters are far below 4,096
        ("😀" * 1024, False),
        ("😀" * 1025, True),
        ("\ud800" * 1366, True),  # a lone surrogate takes 3 bytes, as readers keep it
    ]:
        pair = Pair(uid="g/1", source="g", caption=caption, caption_raw=caption)
        guard.apply(pair)
        assert (pair.reject == "caption_too_large") is too_large, caption[:3]
    small = build_step("max_caption_bytes", {"max_bytes": 10})
    pair = Pair(uid="g/2", source="g", caption="é" * 6, caption_raw="é" * 6)  # 12 bytes
    small.apply(pair)
    assert pair.reject == "caption_too_large"


def test_caption_too_large_counts_through_vlcurate_clean(tmp_path, capsys):
    image = jpeg(256, 256)
    captions = {
        "ok": "A blue square on a white wall",
        "ascii5k": "word " * 1000,  # 5,000 bytes
        "zh1366": "猫" * 1366,  # 4,098 bytes
        "stock960k": repeat("stock photo ", 960 * KB),
        "ascii4096": "a " * 2048,  # exactly 4,096 bytes: passes the guard, too long for `length`
        "zh1365": "猫" * 1365,  # 4,095 bytes: the same
    }
    write_tar(tmp_path / "in.tar", [(key, caption, image) for key, caption in captions.items()])
    out = tmp_path / "out"
    no_clip = ["--disable", "clip_score,clip_filter", "--no-progress"]
    code = main(["clean", "--input", str(tmp_path / "in.tar"), "--output", str(out), *no_clip])
    capsys.readouterr()
    assert code == 0
    with open(out / "stats.json", encoding="utf-8") as fh:
        stats = json.load(fh)
    assert stats["totals"] == {"read": 6, "kept": 1, "rejected": 5}
    (source,) = stats["sources"].values()
    assert source["rejected_by_reason"] == {"caption_too_large": 3, "too_long": 2}
    guard = stats["steps"]["max_caption_bytes"]
    assert guard["seen"] == 6 and guard["dropped"] == {"caption_too_large": 3}
    assert stats["steps"]["normalize_caption"]["seen"] == 3


# --- any text ----------------------------------------------------------------------------------------
HOSTILE_UNITS = [
    "stock photo ",
    "<a ",
    "<b>",
    "&amp;",
    " ",
    ", ",
    "http://a.b/c ",
    "a-",
    "a.",
    "<im",
    "<|",
    "😀",
]
surrogate_free = st.text(st.characters(codec="utf-8"), max_size=60)
long_repeats = st.builds(
    lambda unit, n: unit * n, st.sampled_from(HOSTILE_UNITS) | st.text(max_size=6), st.integers(0, 3000)
)
captions = st.lists(surrogate_free | long_repeats, min_size=1, max_size=4).map("".join)
STEPS = [build_step(name) for name in TEXT_STEPS]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(captions)
def test_every_text_step_returns_on_any_caption(caption):
    for step in STEPS:
        pair = Pair(uid="p/1", source="p", caption=caption, caption_raw=caption)
        step.apply(pair)  # raises on a bug: the pipeline would turn that into step_error_<step>
        assert isinstance(pair.caption, str)
    runner = StepRunner({"p": STEPS})
    pair = Pair(uid="p/2", source="p", caption=caption, caption_raw=caption)
    for batch in batched([pair]):
        runner.run(batch)
    assert pair.reject is None or not pair.reject.startswith("step_error"), pair.meta
    if pair.reject is None:
        assert not has_special_tokens(pair.caption)
