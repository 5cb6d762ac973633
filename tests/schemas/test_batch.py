import pickle

from vlcurate.schemas.batch import PairBatch, batched
from vlcurate.schemas.record import Pair


def full_pair(i: int) -> Pair:
    return Pair(
        uid=f"web/{i:04d}",
        source="web",
        caption=f"a dog {i}",
        caption_raw=f"A <b>dog</b> {i}",
        image=bytes([i % 256]) * 3,
        image_ref=None if i % 2 else f"img/{i}.jpg",
        width=640,
        height=480 + i,
        image_format="JPEG",
        lang="en",
        scores={"chars": 7.0, "clip": 0.25},
        reject=None if i % 3 else "too_short",
        meta={"url": f"http://x/{i}", "audit_reasons": ["emoji"]},
    )


def test_a_batch_survives_pickling_field_for_field():
    batch = PairBatch(full_pair(i) for i in range(5))
    back = pickle.loads(pickle.dumps(batch))
    assert type(back) is PairBatch
    assert back == batch  # dataclass equality compares every field
    assert back[0] is not batch[0]


def test_batched_cuts_at_the_size_and_leaves_no_empty_batch():
    sizes = [len(b) for b in batched((full_pair(i) for i in range(1100)), size=512)]
    assert sizes == [512, 512, 76]
    assert list(batched([], size=512)) == []
    assert all(type(b) is PairBatch for b in batched([full_pair(0)]))
