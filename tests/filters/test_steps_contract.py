"""What every step of the table promises the pipeline: registered, documented reasons and histograms,
JSON-able parameters, picklable, and overridable per source."""

import json
import pickle

import pytest

from vlcurate.filters.base import Cleaner
from vlcurate.filters.chain import DEFAULT_CHAIN, build_chain
from vlcurate.filters.registry import BUILTIN_STEPS, build_step, parameter_names, step_class, step_names
from vlcurate.schemas.config import CleanConfig, SourceConfig
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair

OURS = (
    "max_caption_bytes",
    "clean_html",
    "clean_patterns",
    "strip_tags",
    "script",
    "emoji",
    "length",
    "language",
    "max_pixels",
    "min_side",
    "aspect_ratio",
)


def test_the_table_fixes_the_default_order():
    assert DEFAULT_CHAIN == tuple(BUILTIN_STEPS) == step_names()
    # Text steps first, so that the image steps see only their survivors; then the image steps, the model
    # step on their survivors and its filter; the steps that compare pairs with each other come last.
    text = [n for n in DEFAULT_CHAIN if not step_class(n).needs_image and not step_class(n).groups_records]
    assert DEFAULT_CHAIN[: len(text)] == tuple(text) and text[0] == "max_caption_bytes"
    assert [n for n in DEFAULT_CHAIN if step_class(n).runs_on_survivors] == ["clip_score"]
    assert DEFAULT_CHAIN[DEFAULT_CHAIN.index("clip_score") :] == (
        "clip_score",
        "clip_filter",
        "keep_longest",
        "decontaminate",
        "dedup",
        "near_dedup",
        "semantic_dedup",
    )
    assert [n for n in DEFAULT_CHAIN if step_class(n).groups_records] == [
        "keep_longest",
        "decontaminate",
        "dedup",
        "near_dedup",
        "semantic_dedup",
    ]


def test_every_line_of_the_table_names_its_class():
    for name, target in BUILTIN_STEPS.items():
        cls = step_class(name)
        assert f"{cls.__module__}:{cls.__qualname__}" == target and cls.name == name


@pytest.mark.parametrize("name", DEFAULT_CHAIN)
def test_every_step_has_a_one_line_summary_and_cites_only_its_parameters(name):
    # The first docstring line is the step's description in `vlcurate steps` and the README's table.
    cls = step_class(name)
    lines = (cls.__doc__ or "").splitlines()
    assert lines and lines[0].endswith(".") and (len(lines) == 1 or not lines[1].strip()), name
    assert set(cls.default_sources) <= set(parameter_names(name))


@pytest.mark.parametrize("name", OURS)
def test_step_contract(name):
    cls = step_class(name)
    assert cls.__doc__ and cls.name == name
    assert isinstance(cls.reasons, tuple)
    assert issubclass(cls, Cleaner) or cls.reasons, "a filter must say why it drops"
    for low, high, bins in cls.histograms.values():
        assert low < high and bins > 0
    step = build_step(name)
    json.dumps(step.params())
    assert set(step.params()) == set(parameter_names(name))
    clone = pickle.loads(pickle.dumps(step))
    pair = Pair(uid="s/1", source="s", caption="A red car <b>parked</b> 🚗", width=640, height=480)
    twin = pair.copy()
    step.apply(pair)
    clone.apply(twin)
    assert pair == twin


def _config(**source_steps) -> CleanConfig:
    return CleanConfig(
        sources=[
            SourceConfig(name="web", format="jsonl", paths=["x.jsonl"]),
            SourceConfig(name="cc12m", format="jsonl", paths=["y.jsonl"], steps=source_steps),
        ]
    )


def test_thresholds_are_overridable_per_source():
    chain = build_chain(_config(length={"min_words": 1}, strip_tags={"tags": ["<PERSON>"]}), DEFAULT_CHAIN)
    params = chain.params()
    assert params["web"]["length"]["min_words"] == 3
    assert params["cc12m"]["length"]["min_words"] == 1
    assert params["cc12m"]["strip_tags"]["tags"] == ["<PERSON>"]
    json.dumps(params)


def test_unknown_parameter_fails_at_startup():
    with pytest.raises(ConfigError):
        build_chain(_config(length={"min_wrods": 1}), DEFAULT_CHAIN)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("strip_tags", {"tags": "<PERSON>"}),  # a bare string would become a list of characters
        ("clean_patterns", {"extra_boilerplate": "stock photo"}),
        ("script", {"extra_ranges": [880]}),
        ("language", {"allowed": "en"}),
        ("length", {"min_words": 10, "max_words": 5}),
    ],
)
def test_bad_values_fail_at_startup(name, params):
    with pytest.raises(ConfigError):
        build_step(name, params)


@pytest.mark.parametrize("name", ["normalize_caption", "clean_html", "clean_patterns", "strip_tags"])
def test_cleaners_keep_an_unchanged_caption_as_the_same_object(name):
    # The shuffle's pickle then stores a caption that equals caption_raw once (memo), not twice.
    text = "a red bicycle leaning on a wall"
    pair = Pair(uid="s/1", source="s", caption=text, caption_raw=text)
    build_step(name).apply(pair)
    assert pair.caption is pair.caption_raw
    changed = Pair(
        uid="s/2", source="s", caption="a  red <b>bicycle</b>", caption_raw="a  red <b>bicycle</b>"
    )
    for step in ("normalize_caption", "clean_html"):
        build_step(step).apply(changed)
    assert changed.caption == "a red bicycle" and changed.caption_raw == "a  red <b>bicycle</b>"


# clip_score's scores are written by pipelines/clip.py; clip_filter only decides on them; the group steps
# (dedup, ...) write none.
_WRITTEN_ELSEWHERE = {
    "clip_score",
    "clip_filter",
    *(n for n in DEFAULT_CHAIN if step_class(n).groups_records),
}


@pytest.mark.parametrize("name", DEFAULT_CHAIN)
def test_a_step_declares_exactly_the_scores_it_writes(name):
    # The declared names become the fields of every output's scores struct (schemas/arrow.py): a score
    # written but not declared would land in meta, a declared one never written would be an empty column.
    cls = step_class(name)
    assert isinstance(cls.score_names, tuple) and set(cls.histograms) <= set(cls.score_names)
    pairs = [
        Pair(uid="s/1", source="s", caption="A red car parked on a street", width=640, height=480),
        Pair(uid="s/2", source="s", caption="红色的汽车停在街上", width=300, height=900),
    ]
    step = build_step(name)
    written: set[str] = set()
    for pair in pairs:
        if name not in _WRITTEN_ELSEWHERE:
            step.apply(pair)
        written.update(pair.scores)
    assert written == (set() if name in _WRITTEN_ELSEWHERE else set(cls.score_names))


@pytest.mark.parametrize("name", DEFAULT_CHAIN)
def test_a_what_if_threshold_is_met_exactly_where_the_step_passes(name):
    """Each what-if curve (pipelines/whatif.py) varies a real parameter over a score with a histogram
    range; for a filter, the pair passes the step with that parameter at T exactly when the number
    what_if_value gives meets T (None: never; +-inf: always)."""
    import math

    from vlcurate.filters.base import Filter
    from vlcurate.pipelines.whatif import grid_for

    cls = step_class(name)
    step = build_step(name)
    for param, (score, direction) in cls.what_if.items():
        assert score in cls.histograms and direction in ("min", "max") and hasattr(step, param)
        if not isinstance(step, Filter):
            continue  # decided in apply (clip_filter's table, language); tests/pipelines/test_whatif.py
        captions = [
            "A red car",
            "A red car parked on a quiet street at night " * 3,
            "红色的汽车停在街上",
            "红色的汽车",
        ]
        sizes = [(640, 480), (300, 900), (100, 120), (2000, 500)]
        for caption, (width, height) in zip(captions, sizes):
            pair = Pair(uid="s/1", source="s", caption=caption, width=width, height=height)
            pair.scores.update(step.score(pair))
            value = step.what_if_value(param, pair)
            for threshold in grid_for(cls.histograms[score])[::7]:
                passes = step._with(param, threshold).decide(pair.scores) is None
                meets = value is not None and (
                    value >= threshold if direction == "min" else value <= threshold
                )
                assert passes == meets, (param, caption, threshold, value)
            assert value is None or math.isinf(value) or value == pair.scores[score]


def test_the_chain_lists_its_score_names_in_step_order():
    chain = build_chain(_config())
    assert chain.score_names() == [
        "n_disallowed",
        "n_emoji",
        "n_chars",
        "n_words",
        "n_cjk",
        "chinese",
        "lang_prob",
        "pixels",
        "min_side",
        "aspect_ratio",
        "clip",
    ]
    text_only = build_chain(_config(), DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")])  # text steps
    assert text_only.score_names() == chain.score_names()[:7]
