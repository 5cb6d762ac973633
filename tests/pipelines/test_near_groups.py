"""pipelines/near_groups.py on pairs with known hashes: who stays, whom each loser names, the caption
policies and decontamination, the same answer for any bucket count, and exact accounting."""

import json
import random
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from vlcurate.filters.decontaminate import Decontaminate
from vlcurate.filters.near_dedup import HASH_KEY, NearDedup
from vlcurate.pipelines.near_groups import NearDuplicatePairs
from vlcurate.pipelines.options import pipeline_options
from vlcurate.pipelines.steps import STATS, MergeStats
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair

BITS = 64


def _flip(value: int, rng: random.Random, bits: int) -> int:
    for bit in rng.sample(range(BITS), bits):
        value ^= 1 << bit
    return value


def planted(seed: int = 3) -> tuple[list[Pair], dict[str, str]]:
    """12 clusters of 1-4 pairs (copies 1-3 bits from the cluster's first pair, so within radius 6 of each
    other), 20 singletons and 3 pairs without a hash. Returns the pairs (shuffled) and {loser: winner}."""
    rng = random.Random(seed)
    pairs, truth = [], {}
    for cluster in range(12):
        centre = rng.getrandbits(BITS)
        members = [f"s/c{cluster:02d}-{m}" for m in range(rng.randint(1, 4))]
        for m, uid in enumerate(members):
            value = centre if m == 0 else _flip(centre, rng, rng.randint(1, 3))
            pairs.append(
                Pair(
                    uid=uid,
                    source="s",
                    caption=f"caption {cluster} {m % 2}",
                    meta={HASH_KEY: f"{value:016x}"},
                )
            )
            if m:
                truth[uid] = members[0]
    for i in range(20):
        pairs.append(
            Pair(
                uid=f"s/single-{i:02d}",
                source="s",
                caption="x",
                meta={HASH_KEY: f"{rng.getrandbits(BITS):016x}"},
            )
        )
    pairs += [Pair(uid=f"s/nohash-{i}", source="s", caption="y") for i in range(3)]
    rng.shuffle(pairs)
    return pairs, truth


def run_group(pairs, transform, out, workers=1, batch=7):
    """Runs a group transform on `pairs` in batches of `batch`; returns ({kept: [(uid, meta captions)],
    counted: ({(source, reason): n}, pairs seen), written: rows}, reject rows, reject files)."""
    batches = [PairBatch(pairs[i : i + batch]) for i in range(0, len(pairs), batch)]
    with beam.Pipeline(options=pipeline_options(workers)) as p:
        grouped = p | beam.Create(batches) | transform
        kept = grouped["kept"] | "Kept" >> beam.FlatMap(
            lambda b: [("kept", (x.uid, x.meta.get("captions"))) for x in b]
        )
        stats = grouped[STATS] | beam.CombineGlobally(MergeStats())
        counted = stats | "Counted" >> beam.Map(
            lambda s: ("counted", (sorted(s.rejected.items()), sum(s.step_seen.values())))
        )
        written = grouped[REJECT_FILES] | "Rows" >> beam.Map(lambda r: r["pairs"]) | beam.CombineGlobally(sum)
        (
            (kept, counted, written | "Tag" >> beam.Map(lambda w: ("written", w)))
            | beam.Flatten()
            | beam.Map(json.dumps)
            | beam.io.WriteToText(f"{out}/result", shard_name_template="")
        )
    result = {"kept": []}
    for line in Path(f"{out}/result").read_text().splitlines():
        tag, value = json.loads(line)
        if tag == "kept":
            result["kept"].append(tuple(value))
        elif tag == "counted":
            result["counted"] = ({tuple(k): v for k, v in value[0]}, value[1])
        else:
            result["written"] = value
    files = sorted(Path(out).glob("rejects/*.parquet"))
    return result, pq.read_table(files).to_pylist(), files


def _run(pairs, step, buckets, out, extra=()):
    result, rows, _ = run_group(
        pairs, NearDuplicatePairs({"s": step}, buckets, out, extra_entries=extra), out
    )
    return result, rows


@pytest.mark.parametrize("buckets", [1, 5])
def test_losers_name_their_cluster_head_for_any_bucket_count(buckets, tmp_path):
    pairs, truth = planted()
    result, rows = _run(pairs, NearDedup(radius=6), buckets, str(tmp_path))
    assert sorted(uid for uid, _ in result["kept"]) == sorted(p.uid for p in pairs if p.uid not in truth)
    assert {r["uid"]: json.loads(r["meta"])["near_duplicate_of"] for r in rows} == truth
    assert {r["reason"] for r in rows} == {"near_duplicate"}
    hashed = sum(1 for p in pairs if HASH_KEY in p.meta)
    assert result["counted"] == ({("s", "near_duplicate"): len(truth)}, hashed)
    assert result["written"] == len(truth)
    assert len(result["kept"]) + len(rows) == len(pairs)


def test_radius_zero_keeps_every_distinct_hash(tmp_path):
    pairs, truth = planted()
    _result, rows = _run(pairs, NearDedup(radius=0), 3, str(tmp_path))
    same_hash = {
        p.uid
        for p in pairs
        if p.uid in truth
        and p.meta[HASH_KEY] == next(q.meta[HASH_KEY] for q in pairs if q.uid == truth[p.uid])
    }
    assert {r["uid"] for r in rows} == same_hash


def test_merge_collects_the_losers_captions(tmp_path):
    pairs, truth = planted()
    result, _ = _run(pairs, NearDedup(radius=6, captions="merge"), 4, str(tmp_path))
    kept = dict(result["kept"])
    captions = {p.uid: p.caption for p in pairs}
    for head in set(truth.values()):
        others = {captions[u] for u, w in truth.items() if w == head} - {captions[head]}
        assert kept[head] == [captions[head], *sorted(others)] if others else kept[head] is None
    assert all(kept[u] is None for u in kept if u not in truth.values())


def test_same_caption_only_drops_copies_with_the_same_caption(tmp_path):
    pairs, truth = planted()
    _result, rows = _run(pairs, NearDedup(radius=6, captions="same_caption"), 2, str(tmp_path))
    captions = {p.uid: p.caption for p in pairs}
    # Members alternate captions "... 0" / "... 1": a copy loses to the best pair with its own caption.
    expected = {}
    for uid, head in truth.items():
        members = sorted([head, *[u for u, w in truth.items() if w == head]])
        same = [m for m in members if captions[m] == captions[uid]]
        if same[0] != uid:
            expected[uid] = same[0]
    assert {r["uid"]: json.loads(r["meta"])["near_duplicate_of"] for r in rows} == expected


def test_decontaminate_drops_only_what_matches_an_evaluation_image(tmp_path):
    pairs, truth = planted()
    step = Decontaminate(sets=["unused-here"], radius=6)
    by_uid = {p.uid: p for p in pairs}
    head = sorted(set(truth.values()))[0]
    members = {head, *[u for u, w in truth.items() if w == head]}
    extra = [step.eval_entry("bench/0001.jpg", by_uid[head].meta[HASH_KEY])]
    result, rows = _run(pairs, step, 3, str(tmp_path), extra)
    assert {r["uid"] for r in rows} == members  # the whole cluster, its head too; no other near duplicate
    assert {json.loads(r["meta"])["eval_match"] for r in rows} == {"bench/0001.jpg"}
    assert {r["reason"] for r in rows} == {"eval_overlap"}
    assert len(result["kept"]) == len(pairs) - len(members)
