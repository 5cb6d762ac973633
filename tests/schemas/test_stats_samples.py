"""Sample rejects and their thumbnails in RunStats: the same choice whatever the merge order."""

import itertools
import pickle

from vlcurate.schemas.record import Pair, stable_hash
from vlcurate.schemas.stats import SAMPLES_PER_REASON, RunStats


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
