"""check_clean_sample on a shard written by clean's own writer (pipelines/write.py write_kept_shard):
every sample passes, and each planted defect gives its exact reason."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlcurate.filters.image_probe import ProbeImage
from vlcurate.formatters.check_clean import check_clean_sample
from vlcurate.formatters.check_findings import STRUCTURAL_REASONS
from vlcurate.formatters.webdataset import iter_samples
from vlcurate.pipelines.write import write_kept_shard
from vlcurate.schemas.record import Pair


def encode(fmt: str, size: tuple[int, int], orientation: int | None = None) -> bytes:
    img = Image.effect_noise(size, 60).convert("RGB")
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


IMAGES = [
    encode("JPEG", (64, 48)),
    encode("PNG", (64, 48)),  # re-encoded as JPEG by the writer
    encode("JPEG", (64, 48), orientation=6),  # stored as is; clean records 48x64
    encode("PNG", (64, 48), orientation=8),  # turned upright when re-encoded
    encode("WEBP", (50, 70)),
]


def write_shard(directory, image_format: str) -> list[tuple[str, dict, dict]]:
    pairs = []
    for i, data in enumerate(IMAGES):
        pair = Pair(f"src/{i}", "src", f"A dog {i}.", f"A <b>dog</b> {i}.", image=data, lang="en")
        ProbeImage().apply(pair)
        pairs.append(pair)
    write_kept_shard(str(directory), 0, 1, 8, pairs, ["clip"], image_format)
    twin = pq.read_table(directory / "shards/00000.parquet").to_pylist()
    with open(directory / "shards/00000.tar", "rb") as fh:
        samples = list(iter_samples(fh))
    assert len(samples) == len(twin) == len(IMAGES)
    return [(key, members, row) for (key, members, _), row in zip(samples, twin)]


@pytest.fixture(scope="module", params=["jpg", "keep"])
def shard(request, tmp_path_factory):
    return write_shard(tmp_path_factory.mktemp(request.param), request.param)


def reasons(key: str, members: dict, row: dict | None) -> list[str]:
    problems = check_clean_sample(key, members, row)
    assert all(p.reason in STRUCTURAL_REASONS for p in problems)
    return [p.reason for p in problems]


def test_written_shards_pass(shard):
    for key, members, row in shard:
        assert check_clean_sample(key, members, row) == [], key
    assert {(row["width"], row["height"]) for _, _, row in shard[2:4]} == {(48, 64)}


def image_ext(members: dict) -> str:
    [ext] = [ext for ext in members if ext not in ("txt", "json")]
    return ext


def with_image(members: dict, data: bytes | None) -> dict:
    members = dict(members)
    if data is None:
        del members[image_ext(members)]
    else:
        members[image_ext(members)] = data
    return members


def test_image_overwritten_with_garbage(shard):
    key, members, row = shard[0]
    assert reasons(key, with_image(members, b"\x17garbage" * 100), row) == ["image_undecodable"]


@pytest.mark.parametrize("index", [0, 1, 4])  # JPEG; PNG re-encoded (jpg) or kept (keep); WebP
def test_truncated_image(shard, index):
    key, members, row = shard[index]
    data = members[image_ext(members)]
    assert reasons(key, with_image(members, data[: len(data) // 2]), row) == ["image_truncated"]


def test_image_member_missing(shard):
    key, members, row = shard[0]
    assert reasons(key, with_image(members, None), row) == ["image_missing"]


def test_image_of_another_size(shard):
    key, members, row = shard[0]
    assert reasons(key, with_image(members, encode("JPEG", (48, 64))), row) == ["image_size_mismatch"]


def test_orientation_lost_is_a_size_mismatch(shard):
    key, members, row = shard[2]  # the stored JPEG's EXIF says 90 degrees: recorded 48x64
    assert reasons(key, with_image(members, encode("JPEG", (64, 48))), row) == ["image_size_mismatch"]


@pytest.mark.parametrize(("drop", "reason"), [("txt", "bad_members"), ("json", "bad_members")])
def test_text_member_missing(shard, drop, reason):
    key, members, row = shard[0]
    members = {ext: data for ext, data in members.items() if ext != drop}
    assert reason in reasons(key, members, row)


def test_extra_members(shard):
    key, members, row = shard[0]
    assert reasons(key, {**members, "cls": b"3"}, row) == ["bad_members"]
    assert reasons(key, {**members, "png": encode("PNG", (8, 8))}, row) == ["bad_members"]


def test_json_that_does_not_parse(shard):
    key, members, row = shard[0]
    assert reasons(key, {**members, "json": b"{not json"}, row) == ["bad_json"]


def test_twin_row_that_differs(shard):
    key, members, row = shard[0]
    assert reasons(key, members, {**row, "uid": "src/other"}) == ["twin_differs"]
    assert reasons(key, members, {**row, "caption": "A dog 0!"}) == ["twin_differs"]
    assert reasons(key, members, shard[1][2]) == ["twin_differs"]  # the next sample's row
    assert reasons(key, members, None) == ["twin_differs"]


def test_txt_that_is_not_the_caption(shard):
    key, members, row = shard[0]
    assert reasons(key, {**members, "txt": b"A cat."}, row) == ["txt_differs"]


def test_special_token_in_the_caption(shard):
    key, members, row = shard[0]
    caption = "A dog<|im_end|> 0."
    fields = {**json.loads(members["json"]), "caption": caption}
    members = {**members, "txt": caption.encode(), "json": json.dumps(fields).encode()}
    assert reasons(key, members, {**row, "caption": caption}) == ["special_tokens"]
