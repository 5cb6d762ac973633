"""Sample rejects, the report's galleries and their thumbnails in RunStats: the same choice whatever the
partition and merge order, and bounded."""

import itertools
import pickle
import random

from vlcurate.schemas.record import Pair, stable_hash
from vlcurate.schemas.stats import (
    KEPT_PER_SOURCE,
    NEAR_PER_SIDE,
    SAMPLES_PER_REASON,
    RunStats,
    gallery_key,
    rounded,
)


def _reject(uid: str, reason: str) -> Pair:
    return Pair(uid=uid, source="web", caption=uid, caption_raw=uid, reject=reason)


UIDS = [f"web/{i:04d}" for i in range(40)]


def _partials() -> list[RunStats]:
    """Three partials as three workers would make them: final counts in one, thumbnails in the others."""
    counted, first, second = RunStats(), RunStats(), RunStats()
    for i, uid in enumerate(UIDS):
        counted.observe_final(_reject(uid, "too_small"))
        if i % 4:  # a quarter of the rejects had no image to show
            (first if i % 2 else second).offer_thumbnail("too_small", uid, lambda uid=uid: uid.encode())
    return [counted, first, second]


def test_thumbnails_are_made_once_and_only_for_the_candidates_still_standing():
    stats, made = RunStats(), []
    for uid in sorted(UIDS, key=stable_hash, reverse=True):  # each uid pushes out the one before
        stats.offer_thumbnail("emoji", uid, lambda uid=uid: made.append(uid) or uid.encode())
    assert made == []  # nothing is decoded while the bundle runs
    copy = pickle.loads(pickle.dumps(stats))  # a partial leaving its worker
    lowest = sorted(UIDS, key=lambda u: (stable_hash(u), u))[:SAMPLES_PER_REASON]
    assert sorted(made) == sorted(lowest)
    assert [uid for _, uid, _ in copy.thumbnails["emoji"]] == lowest
    pickle.dumps(stats)
    assert len(made) == SAMPLES_PER_REASON  # made once


def test_every_sample_with_an_image_finds_its_thumbnail_in_any_merge_order():
    lowest = sorted(UIDS, key=lambda u: (stable_hash(u), u))[:SAMPLES_PER_REASON]
    expected = {uid: uid.encode() for uid in lowest if UIDS.index(uid) % 4}
    results = []
    for order in itertools.permutations(range(3)):
        parts = _partials()
        merged = RunStats()
        for index in order:
            merged.merge(parts[index])
        assert [s["uid"] for s in merged.to_json()["samples"]["too_small"]] == lowest
        results.append(merged.sample_thumbnails())
    assert results[0] == expected and all(r == expected for r in results)


def test_a_failed_thumbnail_is_not_recorded():
    stats = RunStats()
    stats.offer_thumbnail("emoji", "web/1", lambda: None)
    stats.observe_final(_reject("web/1", "emoji"))
    assert stats.sample_thumbnails() == {}


def test_sample_rejects_carry_their_scores_and_the_uid_they_duplicate():
    stats = RunStats()
    low = _reject("web/1", "clip_low_score")
    low.scores = {"min_side": 180, "clip": 0.2134567, "aspect_ratio": float("nan")}
    copy = _reject("web/2", "duplicate")
    copy.meta["duplicate_of"] = "web/123"
    for pair in (low, copy):
        stats.observe_final(pair)
    samples = stats.to_json()["samples"]
    assert samples["clip_low_score"] == [
        {
            "uid": "web/1",
            "caption_raw": "web/1",
            "scores": {"aspect_ratio": None, "clip": 0.2135, "min_side": 180.0},
        }
    ]
    assert samples["duplicate"] == [
        {"uid": "web/2", "caption_raw": "web/2", "scores": {}, "duplicate_of": "web/123"}
    ]


# --- galleries: near-threshold pairs and kept pairs ---------------------------------------------------------

CLIP = "clip_filter.threshold"
CLIP_RULE = {"name": CLIP, "step": "clip_filter", "param": "threshold", "score": "clip", "direction": "min"}
RATIO = "aspect_ratio.max_ratio"
RATIO_RULE = {
    "name": RATIO,
    "step": "aspect_ratio",
    "param": "max_ratio",
    "score": "aspect_ratio",
    "direction": "max",
}


def _scored(i: int, clip: float, source: str = "web") -> Pair:
    return Pair(
        uid=f"{source}/{i:04d}",
        source=source,
        caption=f"caption {i}",
        width=100 + i,
        height=50,
        scores={"clip": clip},
        image_ref=f"file.tar#{i}",
    )


def _near_pairs(n: int = 90) -> list[Pair]:
    """Scores around 0.4 with ties (every score appears three times) and a pair exactly at it."""
    return [_scored(i, 0.4 + ((i // 3) % 15 - 7) * 0.01) for i in range(n)]


def _picture(made: list[str]):
    return lambda pair: lambda uid=pair.uid: made.append(uid) or uid.encode()


def _expected_near(pairs: list[Pair], threshold: float) -> dict[str, list[str]]:
    """The closest NEAR_PER_SIDE per side, ties by uid hash then uid; each side in score order."""
    out = {}
    for side, on_side in (("below", lambda v: v < threshold), ("above", lambda v: v >= threshold)):
        chosen = sorted(
            (p for p in pairs if on_side(p.scores["clip"])),
            key=lambda p: (abs(p.scores["clip"] - threshold), stable_hash(p.uid), p.uid),
        )[:NEAR_PER_SIDE]
        chosen.sort(
            key=lambda p: (rounded(p.scores["clip"]), abs(p.scores["clip"] - threshold), stable_hash(p.uid))
        )
        out[side] = [p.uid for p in chosen]
    return out


def test_near_threshold_pairs_are_the_closest_on_each_side_whatever_the_partition_and_merge_order():
    pairs = _near_pairs()
    expected = _expected_near(pairs, 0.4)
    assert len(expected["below"]) == len(expected["above"]) == NEAR_PER_SIDE
    results = set()
    rng = random.Random(5)
    for trial in range(12):
        workers = 1 + trial % 4
        parts = [RunStats() for _ in range(workers)]
        order = list(pairs)
        rng.shuffle(order)
        for pair in order:
            parts[rng.randrange(workers)].offer_near(CLIP_RULE, pair, 0.4, _picture([]))
        if trial % 2:  # partials travel pickled, their thumbnails made
            parts = [pickle.loads(pickle.dumps(p)) for p in parts]
        rng.shuffle(parts)
        merged = RunStats()
        for part in parts:
            merged.merge(part)
        near = merged.to_json()["near_threshold"][CLIP]["web"]
        assert {k: near[k] for k in ("step", "param", "score", "direction")} == {
            "step": "clip_filter",
            "param": "threshold",
            "score": "clip",
            "direction": "min",
        }
        assert {side: [p["uid"] for p in near[side]] for side in ("below", "above")} == expected
        assert all(p["value"] < 0.4 for p in near["below"]) and all(p["value"] >= 0.4 for p in near["above"])
        thumbnails = merged.sample_thumbnails()
        for side in ("below", "above"):
            for i, p in enumerate(near[side]):
                assert thumbnails[gallery_key("near", CLIP, "web", side, i)] == p["uid"].encode()
        results.add(merged.dumps() + repr(sorted(thumbnails.items())))
    assert len(results) == 1
    uid = expected["above"][0]
    assert near["above"][0] == {
        "uid": uid,
        "caption": f"caption {int(uid[-4:])}",
        "width": 100 + int(uid[-4:]),
        "height": 50,
        "value": 0.4,
        "threshold": 0.4,
        "lang": None,
        "reject": None,
    }


def test_a_pair_at_the_threshold_is_on_the_side_that_passes():
    stats = RunStats()
    at = _scored(1, 3.0)
    at.scores = {"aspect_ratio": 3.0}
    stats.offer_near(RATIO_RULE, at, 3.0)  # aspect_ratio passes at <= max_ratio
    stats.offer_near(CLIP_RULE, _scored(2, 0.4), 0.4)  # clip passes at >= threshold
    stats.offer_near(CLIP_RULE, _scored(3, float("nan")), 0.4)  # no score: not offered
    stats.offer_near(CLIP_RULE, _scored(4, 0.9), float("inf"))  # no threshold (no pair scored)
    near = stats.to_json()["near_threshold"]
    assert [p["uid"] for p in near[RATIO]["web"]["below"]] == ["web/0001"]
    assert near[RATIO]["web"]["above"] == []
    assert [p["uid"] for p in near[CLIP]["web"]["above"]] == ["web/0002"]
    assert near[CLIP]["web"]["below"] == []


def test_a_pair_its_step_decides_on_another_threshold_is_not_offered():
    """value_of (Step.what_if_value): None where another threshold of the step rejects the pair, an
    infinity where this one does not apply to it; asked only for a pair that could be chosen."""
    asked = []

    def value_of(pair):
        asked.append(pair.uid)
        return {"web/0001": None, "web/0002": float("inf")}.get(pair.uid, pair.scores["clip"])

    stats = RunStats()
    for i in range(1, 4):
        stats.offer_near(CLIP_RULE, _scored(i, 0.41), 0.4, value_of=value_of)
    for i in range(4, 4 + NEAR_PER_SIDE):
        stats.offer_near(CLIP_RULE, _scored(i, 0.45), 0.4, value_of=value_of)
    stats.offer_near(CLIP_RULE, _scored(99, 0.9), 0.4, value_of=value_of)  # farther than all six
    above = stats.to_json()["near_threshold"][CLIP]["web"]["above"]
    assert [p["uid"] for p in above][:1] == ["web/0003"] and len(above) == NEAR_PER_SIDE
    assert "web/0099" not in asked and {"web/0001", "web/0002"} <= set(asked)
    empty = RunStats()
    empty.offer_near(CLIP_RULE, _scored(1, 0.41), 0.4, value_of=value_of)
    assert empty.to_json().get("near_threshold") is None


def test_galleries_stay_bounded_and_make_thumbnails_only_for_pairs_still_standing():
    stats, made = RunStats(), []
    rng = random.Random(3)
    for i in range(5000):
        pair = _scored(i, rng.uniform(0.0, 0.8), source=f"s{i % 2}")
        stats.offer_near(CLIP_RULE, pair, 0.4, _picture(made))
        stats.observe_final(pair, _picture(made))
    assert made == []
    assert all(len(chosen) <= NEAR_PER_SIDE for chosen in stats.near.values()) and len(stats.near) == 4
    assert all(len(chosen) == KEPT_PER_SOURCE for chosen in stats.kept_samples.values())
    pickle.dumps(stats)
    assert len(made) == 4 * NEAR_PER_SIDE + 2 * KEPT_PER_SOURCE
    assert len(pickle.dumps(stats)) < 50_000


def test_kept_pairs_are_the_lowest_uid_hashes_whatever_the_merge_order():
    pairs = [_scored(i, 0.5) for i in range(40)]
    lowest = sorted((p.uid for p in pairs), key=lambda u: (stable_hash(u), u))[:KEPT_PER_SOURCE]
    results = set()
    for order in itertools.permutations(range(3)):
        parts = [RunStats() for _ in range(3)]
        for i, pair in enumerate(pairs):
            # a third of the pairs have no image: they are chosen all the same, without a picture
            parts[i % 3].observe_final(pair, _picture([]) if i % 3 else None)
        merged = RunStats()
        for index in order:
            merged.merge(parts[index])
        kept = merged.to_json()["kept_samples"]["web"]
        assert [p["uid"] for p in kept] == lowest
        assert kept[0]["scores"] == {"clip": 0.5} and kept[0]["caption"].startswith("caption ")
        thumbnails = merged.sample_thumbnails()
        assert {i for i in range(len(kept)) if gallery_key("kept", "web", i) in thumbnails} == {
            i for i, p in enumerate(kept) if int(p["uid"][-4:]) % 3
        }
        results.add(merged.dumps())
    assert len(results) == 1
