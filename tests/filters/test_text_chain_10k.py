"""The whole text stage over 10,000 real web alt texts, with every count pinned.

Any change in what a step removes, rewrites or rejects shows up here as a diff in these numbers; update
them deliberately, after looking at what changed. The records go through the pipeline's own step engine
(filters/runner.py, which RunSteps wraps): a pair stops at its first reject, and a cleaner counts as
`changed` when the caption differs after it.
"""

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from vlcurate.filters.chain import DEFAULT_CHAIN
from vlcurate.filters.registry import build_step, step_class
from vlcurate.filters.runner import StepRunner
from vlcurate.schemas.batch import batched
from vlcurate.schemas.record import Pair

# 10,000 real web alt texts vendored with the tests (tests/data/README.md); a missing file fails the test.
WEB_CAPTIONS = Path(__file__).resolve().parents[1] / "data" / "web_captions_10k.parquet"
TEXT_STEPS = DEFAULT_CHAIN[: DEFAULT_CHAIN.index("probe_image")]

EXPECTED_REJECTS = {"too_short": 500, "disallowed_script": 215, "too_long": 51, "emoji": 6}
EXPECTED_CHANGED = {"normalize_caption": 435, "clean_html": 70, "clean_patterns": 557}
EXPECTED_KEPT = 9228
EXPECTED_LANGS = {"en": 9218, "zh": 10}


def run_text_stage(texts: list[str]) -> tuple[list[Pair], Counter, Counter]:
    runner = StepRunner({"web": [build_step(name) for name in TEXT_STEPS]})
    pairs = [Pair(uid=f"web/{i}", source="web", caption=t, caption_raw=t) for i, t in enumerate(texts)]
    for batch in batched(pairs):
        runner.run(batch)
    stats = runner.stats
    rejects: Counter[str] = Counter()
    for (_, _, reason), n in stats.step_dropped.items():
        rejects[reason] += n
    changed = Counter({step: n for (step, _), n in stats.step_changed.items()})
    return pairs, rejects, changed


def test_text_steps_are_the_chain_head():
    # The table's text steps (neither image nor group steps) come first; a new one changes the pins below.
    text = [n for n in DEFAULT_CHAIN if not step_class(n).needs_image and not step_class(n).groups_records]
    assert tuple(text) == TEXT_STEPS and TEXT_STEPS[0] == "max_caption_bytes"


def test_web_captions_10k_pinned():
    texts = pq.read_table(WEB_CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()
    assert len(texts) == 10_000
    pairs, rejects, changed = run_text_stage(texts)
    assert dict(rejects) == EXPECTED_REJECTS
    assert dict(changed) == EXPECTED_CHANGED
    kept = [p for p in pairs if p.reject is None]
    assert len(kept) == EXPECTED_KEPT == len(texts) - sum(EXPECTED_REJECTS.values())
    langs = Counter(p.lang for p in kept)
    assert dict(langs) == EXPECTED_LANGS
    # Every survivor is clean for the formatters: no markup, no special token, stripped, non-empty.
    for pair in kept:
        assert pair.caption == pair.caption.strip() and pair.caption
        assert "<|" not in pair.caption and "<img>" not in pair.caption and "&amp;" not in pair.caption
