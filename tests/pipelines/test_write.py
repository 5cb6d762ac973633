import json

from vlcurate.formatters.shard_images import StoredImage
from vlcurate.pipelines.write import (
    BYTES_PER_BUCKET,
    MAX_BUCKETS,
    buckets_for_input,
    sample_json,
    split_by_uid,
)
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair, stable_hash


def test_buckets_follow_the_input_size():
    assert buckets_for_input(0) == 1
    assert buckets_for_input(BYTES_PER_BUCKET) == 1
    assert buckets_for_input(BYTES_PER_BUCKET + 1) == 2
    assert buckets_for_input(10**18) == MAX_BUCKETS


def test_split_by_uid_puts_each_pair_in_its_hash_bucket_in_order():
    batch = PairBatch(Pair(uid=f"s/{i}", source="s") for i in range(100))
    parts = dict(split_by_uid(batch, 3))
    assert sorted(parts) == [0, 1, 2]
    for index, part in parts.items():
        assert type(part) is PairBatch
        assert [p.uid for p in part] == [p.uid for p in batch if stable_hash(p.uid) % 3 == index]


def test_one_bucket_takes_the_whole_batch_and_an_empty_batch_gives_nothing():
    batch = PairBatch(Pair(uid=f"s/{i}", source="s") for i in range(5))
    assert list(split_by_uid(batch, 1)) == [(0, batch)]
    assert list(split_by_uid(PairBatch(), 1)) == list(split_by_uid(PairBatch(), 3)) == []


def test_a_samples_json_member_has_sorted_keys_at_every_level_and_keeps_its_meta():
    pair = Pair(
        uid="web/7",
        source="web",
        caption="a red circle",
        caption_raw="A red circle!",
        lang="en",
        image_format="PNG",
        scores={"n_words": 3.0, "clip": 0.31, "lang_prob": 0.99},  # in the order the steps wrote them
        meta={"url": "https://example.com/7.jpg", "similarity": 0.3},
    )
    stored = StoredImage(b"\xff\xd8\xff", "jpg", "JPEG")  # the PNG re-encoded
    assert sample_json(pair, "000000007", stored) == (
        b'{"caption": "a red circle", "caption_raw": "A red circle!", "height": null, "image_format": "JPEG", '
        b'"key": "000000007", "lang": "en", "original_image_format": "PNG", '
        b'"scores": {"clip": 0.31, "lang_prob": 0.99, "n_words": 3.0}, "similarity": 0.3, '
        b'"source": "web", "uid": "web/7", "url": "https://example.com/7.jpg", "width": null}'
    )
    failed = StoredImage(b"GIF89a", "gif", "GIF", error="OSError: broken data stream")
    assert json.loads(sample_json(pair, "000000007", failed))["image_reencode_error"] == failed.error
