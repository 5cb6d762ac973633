"""Hostile images and image paths: each test makes its input in tmp_path and runs the real `vlcurate clean`.

The promise: the job completes (exit 0, COMPLETED), every pair read is kept or rejected with a reason
(stats.json, shards and reject files agree), nothing blocks or reads without bound, and no byte of a file
outside the source's image root reaches the output. Cases that hung or ran out of memory before the fix
(a FIFO, /dev/zero) run in a subprocess with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import struct
import subprocess
import sys
import tarfile
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from vlcurate.cli import main
from vlcurate.filters.image_probe import DecodeCheck, header_size
from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.model.clip_preprocess import pil_pixels
from vlcurate.pipelines.options import SCHEME_EXTRAS
from vlcurate.pipelines.output import COMPLETED
from vlcurate.schemas.image_paths import (
    DEFAULT_MAX_IMAGE_BYTES,
    ImageRejected,
    outside_root,
    read_at_most,
    read_image_file,
)
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, output_files, reject_rows

NO_CLIP = ["--disable", "clip_score,clip_filter", "--no-progress"]
RED = (220, 20, 20)
SUBPROCESS_TIMEOUT_S = 300  # a clean run of a few rows takes seconds; a hang is stopped here


def caption(key: str) -> str:
    return f"A red square on a white wall, photo {key}"  # distinct per row: dedup leaves them alone


def write_config(tmp_path, source: dict, name: str) -> tuple[str, str]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "src", **source}]}))
    return str(config), str(tmp_path / name)


def clean(tmp_path, source: dict, name: str = "out", disable: str = "") -> str:
    config, out = write_config(tmp_path, source, name)
    flags = NO_CLIP if not disable else ["--disable", f"{NO_CLIP[1]},{disable}", *NO_CLIP[2:]]
    assert main(["clean", "--config", config, "--output", out, *flags]) == 0
    return out


def clean_in_subprocess(tmp_path, source: dict, name: str = "out") -> str:
    """`clean` in a child process that is killed after SUBPROCESS_TIMEOUT_S: a read that blocks (a FIFO)
    or never ends (/dev/zero) fails the test instead of hanging the suite."""
    config, out = write_config(tmp_path, source, name)
    args = ["clean", "--config", config, "--output", out, *NO_CLIP]
    code = f"import sys\nfrom vlcurate.cli import main\nsys.exit(main({args!r}))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"clean did not finish in {SUBPROCESS_TIMEOUT_S} s: an image read blocks")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def outcome(out: str) -> dict[str, int]:
    """{"kept": n, reason: n, ...} from stats.json, after checking that the run completed and that stats,
    shards and reject files all account for every pair read."""
    assert os.path.exists(os.path.join(out, COMPLETED))
    with open(os.path.join(out, "stats.json")) as fh:
        stats = json.load(fh)
    totals = stats["totals"]
    by_reason = stats["sources"]["src"]["rejected_by_reason"]
    assert totals["read"] == totals["kept"] + totals["rejected"] == totals["kept"] + sum(by_reason.values())
    assert len(kept_rows(out)) == totals["kept"]
    rejects = reject_rows(out)
    assert len(rejects) == totals["rejected"]
    assert {r: sum(x["reason"] == r for x in rejects) for r in by_reason} == by_reason
    return {"kept": totals["kept"], **by_reason}


def rejects_by_key(out: str) -> dict[str, dict]:
    return {row["uid"].split("/", 1)[1]: row for row in reject_rows(out)}


def write_rows(path, rows: dict[str, str]) -> None:
    """A JSONL file of {key, caption, image} rows: key -> image path."""
    lines = [json.dumps({"key": k, "caption": caption(k), "image": image}) for k, image in rows.items()]
    path.write_text("\n".join(lines) + "\n")


def write_tar(path, samples: dict[str, tuple[str, bytes]]) -> None:
    """A WebDataset tar: key -> (image extension, image bytes)."""
    with open(path, "wb") as fh, TarShardWriter(fh) as writer:
        for key, (ext, data) in samples.items():
            writer.add(
                key, {ext: data, "txt": caption(key).encode(), "json": json.dumps({"key": key}).encode()}
            )


def noisy_jpeg(width: int, height: int) -> bytes:
    pixels = random.Random(width * height).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def missing_extras() -> list[str]:
    return [
        s
        for s, (module, _, _) in SCHEME_EXTRAS.items()
        if importlib.util.find_spec(module.split(".")[0]) is None
    ]


# --- 1. gs://, s3://, azfs:// image refs --------------------------------------------------------------


def test_remote_image_refs_without_their_extra_are_rejects_not_a_crash(tmp_path):
    schemes = missing_extras()
    if not schemes:
        pytest.skip("every cloud extra is installed")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "good.jpg").write_bytes(jpeg(300, 300))
    rows = {
        "good": "images/good.jpg",
        **{f"r{i}": f"{s}bucket/images/{i}.jpg" for i, s in enumerate(schemes)},
    }
    write_rows(tmp_path / "rows.jsonl", rows)
    # Inside the root only with the opt-out: a URL is not under a local image root.
    out = clean(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"], "allow_outside_root": True})
    assert outcome(out) == {"kept": 1, "image_missing": len(schemes)}
    rejects = rejects_by_key(out)
    for i, scheme in enumerate(schemes):
        error = json.loads(rejects[f"r{i}"]["meta"])["error"]
        assert error.endswith(SCHEME_EXTRAS[scheme][2]), (
            error
        )  # names the install, e.g. pip install 'vlcurate[gcp]'
    default = clean(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"]}, "default")
    assert outcome(default) == {"kept": 1, "image_outside_root": len(schemes)}


def test_urls_are_inside_a_url_root_only_under_its_prefix():
    root = "gs://bucket/images"
    assert outside_root("gs://bucket/images/a/b.jpg", root) is None
    assert outside_root("gs://bucket/images/../other/b.jpg", root) is not None
    assert outside_root("gs://bucket/images-private/b.jpg", root) is not None
    assert outside_root("gs://other/images/b.jpg", root) is not None
    assert outside_root("s3://bucket/images/b.jpg", root) is not None
    assert outside_root("/bucket/images/b.jpg", root) is not None  # a local path against a URL root
    assert outside_root("gs://bucket/images/b.jpg", "/data/images") is not None
    assert outside_root("https://example.com/b.jpg", "/data/images") is None  # never fetched: image_missing


# --- 2. special files and the size cap ---------------------------------------------------------------


def test_a_fifo_image_is_rejected_without_being_opened(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.jpg").write_bytes(jpeg(300, 300))
    os.mkfifo(images / "fifo.jpg")  # no writer ever: open() for reading would block forever
    os.symlink(images / "fifo.jpg", images / "to_fifo.jpg")
    os.mkdir(images / "folder.jpg")
    rows = {"good": "images/good.jpg", "fifo": "images/fifo.jpg", "link": "images/to_fifo.jpg"}
    write_rows(tmp_path / "rows.jsonl", {**rows, "folder": "images/folder.jpg"})
    out = clean_in_subprocess(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"]})
    assert outcome(out) == {"kept": 1, "image_not_a_file": 3}
    assert "FIFO, not a regular file" in json.loads(rejects_by_key(out)["fifo"]["meta"])["error"]


def test_dev_zero_and_other_devices_are_rejected_without_being_read(tmp_path):
    (tmp_path / "good.jpg").write_bytes(jpeg(300, 300))
    write_rows(tmp_path / "rows.jsonl", {"good": "good.jpg", "zero": "/dev/zero", "null": "/dev/null"})
    out = clean_in_subprocess(
        tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"], "allow_outside_root": True}, "allowed"
    )
    assert outcome(out) == {"kept": 1, "image_not_a_file": 2}
    assert "character device" in json.loads(rejects_by_key(out)["zero"]["meta"])["error"]
    default = clean_in_subprocess(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"]}, "default")
    assert outcome(default) == {"kept": 1, "image_outside_root": 2}


def test_images_over_max_image_bytes_are_rejected_by_path_and_inline(tmp_path):
    big, small = noisy_jpeg(300, 300), jpeg(300, 300)
    cap = 20_000
    assert len(small) < cap < len(big)
    (tmp_path / "big.jpg").write_bytes(big)
    (tmp_path / "small.jpg").write_bytes(small)
    with open(tmp_path / "sparse.jpg", "wb") as fh:  # over the default cap without using the disk
        fh.truncate(DEFAULT_MAX_IMAGE_BYTES + 1)
    write_rows(tmp_path / "rows.jsonl", {"big": "big.jpg", "small": "small.jpg", "sparse": "sparse.jpg"})
    out = clean(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"], "max_image_bytes": cap})
    assert outcome(out) == {"kept": 1, "image_too_large": 2}
    assert outcome(clean(tmp_path, {"format": "jsonl", "paths": ["rows.jsonl"]}, "default")) == {
        "kept": 2,
        "image_too_large": 1,  # sparse.jpg, from its size alone: it is never read
    }
    # Bytes held inline: tar members and Parquet image bytes.
    write_tar(tmp_path / "a.tar", {"big": ("jpg", big), "small": ("jpg", small)})
    out = clean(tmp_path, {"format": "webdataset", "paths": ["a.tar"], "max_image_bytes": cap}, "tar")
    assert outcome(out) == {"kept": 1, "image_too_large": 1}
    assert rejects_by_key(out)["big"]["image_ref"].endswith("a.tar#big.jpg")
    table = pa.table(
        {"key": ["big", "small"], "caption": [caption("big"), caption("small")], "image": [big, small]}
    )
    pq.write_table(table, tmp_path / "a.parquet")
    out = clean(tmp_path, {"format": "parquet", "paths": ["a.parquet"], "max_image_bytes": cap}, "parquet")
    assert outcome(out) == {"kept": 1, "image_too_large": 1}


def test_reads_stop_at_the_cap_even_when_the_size_lies(tmp_path):
    class Endless(io.RawIOBase):  # /dev/zero as a file object
        given = 0

        def readinto(self, buffer):
            buffer[:] = bytes(len(buffer))
            self.given += len(buffer)
            return len(buffer)

    endless = Endless()
    assert read_at_most(endless, 1000) is None and endless.given <= 1001
    if os.path.exists("/proc/self/status"):  # a regular file whose stat size (0) is not its length
        with pytest.raises(ImageRejected) as raised:
            read_image_file("/proc/self/status", 10)
        assert raised.value.reason == "image_too_large"
    (tmp_path / "a.jpg").write_bytes(b"x" * 100)
    assert read_image_file(str(tmp_path / "a.jpg"), 100) == b"x" * 100


# --- 3. paths outside the image root ------------------------------------------------------------------


def test_image_paths_outside_the_root_are_never_read(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "images").mkdir(parents=True)
    outside.mkdir()
    secret = noisy_jpeg(320, 320)  # a valid image: before the fix it was kept and written into the shards
    (outside / "secret.jpg").write_bytes(secret)
    token = b"root:$6$TOP-SECRET-HASH-9f3c2a:19000:0:99999:7:::"
    (outside / "shadow").write_bytes(token)
    (data / "images" / "good.jpg").write_bytes(jpeg(300, 300))
    os.symlink(outside / "secret.jpg", data / "images" / "link.jpg")
    os.symlink(outside, data / "images" / "linkdir")
    rows = {
        "good": "images/good.jpg",
        "dotdot": "../outside/secret.jpg",
        "deep": "images/../../outside/shadow",
        "absolute": str(outside / "secret.jpg"),
        "symlink": "images/link.jpg",
        "symlinked_dir": "images/linkdir/secret.jpg",
        "etc": "/etc/passwd",
        "remote": "gs://bucket/secret.jpg",
    }
    write_rows(data / "rows.jsonl", rows)
    out = clean(tmp_path, {"format": "jsonl", "paths": ["data/rows.jsonl"]})  # root: the file's folder
    assert outcome(out) == {"kept": 1, "image_outside_root": 7}
    written = b"".join(output_files(out).values())
    assert token not in written and b"TOP-SECRET" not in written
    middle = len(secret) // 2
    assert secret not in written and secret[middle : middle + 64] not in written  # random pixel data
    assert "resolves to" in json.loads(rejects_by_key(out)["symlink"]["meta"])["error"]
    # image_root set: the same rule against it; inside it, symlinks that stay inside are fine.
    os.symlink(data / "images" / "good.jpg", data / "images" / "alias.jpg")
    in_images = {k: v.removeprefix("images/") for k, v in rows.items()}
    in_images.update(dotdot="../../outside/secret.jpg", deep="../../outside/shadow", alias="alias.jpg")
    write_rows(data / "rows.jsonl", in_images)
    out = clean(
        tmp_path, {"format": "jsonl", "paths": ["data/rows.jsonl"], "image_root": "data/images"}, "rooted"
    )
    # alias.jpg is read (inside the root) and found to be good.jpg's picture
    assert outcome(out) == {"kept": 1, "near_duplicate": 1, "image_outside_root": 7}
    # The opt-out reads them wherever they are (the gs:// row aside: that is the first test's case).
    del rows["remote"]
    write_rows(data / "rows.jsonl", rows)
    allow = {"format": "jsonl", "paths": ["data/rows.jsonl"], "allow_outside_root": True}
    # Read: good and the four routes to secret.jpg (one picture: three are its near duplicates); shadow
    # and /etc/passwd are read but are no images.
    assert outcome(clean(tmp_path, allow, "allow")) == {
        "kept": 2,
        "near_duplicate": 3,
        "image_undecodable": 2,
    }


def test_the_resolved_path_is_realpath_through_a_maze_of_symlinks(tmp_path, monkeypatch):
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "f").touch()
    os.symlink(tmp_path / "o", tmp_path / "x" / "to_o")
    os.symlink("../o/f", tmp_path / "x" / "to_f")
    os.symlink(tmp_path / "x" / "to_f", tmp_path / "x" / "y" / "chain")
    os.symlink("y/../to_o", tmp_path / "x" / "dotdot")
    monkeypatch.chdir(tmp_path)
    names = [
        "f",
        "to_o",
        "to_f",
        "chain",
        "dotdot",
        "y",
        "..",
        ".",
        "missing",
        "to_o/f",
        "to_o/..",
        "y/../to_o/f",
    ]
    for base in (str(tmp_path / "x"), str(tmp_path / "x" / "y"), str(tmp_path / "x" / "dotdot"), "x"):
        for name in names:
            for last in ("", "f", ".."):
                path = os.path.join(base, name, last)
                real, root = os.path.realpath(path), str(tmp_path / "x")
                inside = real == root or real.startswith(root + os.sep)
                assert (outside_root(path, str(tmp_path / "x")) is None) == inside, path


# --- 4. a header claiming an absurd size --------------------------------------------------------------


def bmp_with_width(width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), RED).save(buffer, "BMP")
    data = bytearray(buffer.getvalue())
    data[18:22] = struct.pack("<I", width)  # BITMAPINFOHEADER biWidth
    return bytes(data)


def test_a_bmp_claiming_4_billion_pixels_wide_is_rejected_with_its_size(tmp_path):
    bad = bmp_with_width(4_294_967_169)  # Pillow's bmp/b/badwidth.bmp has this header width
    assert header_size(bad) == ("BMP", 4_294_967_169, 4)  # recorded as the header says
    write_tar(tmp_path / "a.tar", {"bad": ("bmp", bad), "good": ("jpg", jpeg(300, 300))})
    out = clean(tmp_path, {"format": "webdataset", "paths": ["a.tar"]})
    assert outcome(out) == {"kept": 1, "too_many_pixels": 1}
    row = rejects_by_key(out)["bad"]
    assert (row["width"], row["height"]) == (4_294_967_169, 4)


# --- 5. multi-frame images: the first frame only -------------------------------------------------------


def _two_frames(fmt: str, **options) -> bytearray:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (256, 256), RED), Image.new("RGB", (256, 256), (20, 20, 220))
    first.save(buffer, fmt, save_all=True, append_images=[second], **options)
    return bytearray(buffer.getvalue())


def gif_with_bad_second_frame(truncated: bool) -> bytes:
    """The second frame's descriptor claims 65535 x 65535 (4.3 billion pixels); truncated: its data is cut."""
    data = _two_frames("GIF")
    at = _gif_image_descriptors(bytes(data))[1]
    data[at + 5 : at + 9] = b"\xff\xff\xff\xff"  # width, height (little-endian)
    return bytes(data[: at + 12] if truncated else data)


def _gif_image_descriptors(data: bytes) -> list[int]:
    def skip_sub_blocks(at: int) -> int:
        while data[at]:
            at += 1 + data[at]
        return at + 1

    flags, at, found = data[10], 13, []
    at += 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0  # global colour table
    while data[at] != 0x3B:
        if data[at] == 0x21:  # extension: label, then sub-blocks
            at = skip_sub_blocks(at + 2)
            continue
        found.append(at)
        flags = data[at + 9]
        at += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
        at = skip_sub_blocks(at + 1)  # LZW minimum code size, then the data
    return found


def _png_chunks(data: bytes):
    at = 8
    while at < len(data):
        length = struct.unpack(">I", data[at : at + 4])[0]
        yield at, data[at + 4 : at + 8]
        at += 12 + length


def apng_with_bad_second_frame() -> bytes:
    data = _two_frames("PNG")
    at = [i for i, kind in _png_chunks(bytes(data)) if kind == b"fcTL"][1]
    body = bytearray(data[at + 8 : at + 34])
    body[4:12] = struct.pack(">II", 100_000, 100_000)  # larger than the canvas
    data[at + 8 : at + 34] = body
    data[at + 34 : at + 38] = struct.pack(">I", zlib.crc32(b"fcTL" + bytes(body)))
    return bytes(data)


def tiff_with_bad_second_frame() -> bytes:
    data = _two_frames("TIFF")
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first : first + 2])[0]
    second = struct.unpack("<I", data[first + 2 + 12 * count : first + 6 + 12 * count])[0]
    for i in range(struct.unpack("<H", data[second : second + 2])[0]):
        entry = second + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: 65535 x 65535 with no pixel data for it
            data[entry + 8 : entry + 12] = (
                struct.pack("<HH", 65535, 0) if kind == 3 else struct.pack("<I", 65535)
            )
    return bytes(data)


def webp_with_bad_second_frame() -> bytes:
    data = _two_frames("WEBP", lossless=True)
    at = [i for i in range(len(data)) if data[i : i + 4] == b"ANMF"][1]
    data[at + 14 : at + 20] = b"\xff" * 6  # frame width and height - 1: 16.7 million each
    return bytes(data)


def test_multi_frame_images_use_their_first_frame_and_never_decode_a_later_one(tmp_path):
    later_bad = {
        "gif_huge": ("gif", gif_with_bad_second_frame(truncated=False)),
        "gif_cut": ("gif", gif_with_bad_second_frame(truncated=True)),
        "apng": ("png", apng_with_bad_second_frame()),
        "tiff": ("tif", tiff_with_bad_second_frame()),
    }
    for _, data in later_bad.values():  # the later frame really is bad, and the first frame is fine
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (256, 256)
            with pytest.raises(Exception):  # noqa: B017  (DecompressionBombError, SyntaxError, OSError)
                img.seek(1)
                img.load()
        pair = Pair(uid="s/k", source="s", image=data)
        DecodeCheck().apply(pair)
        assert header_size(data)[1:] == (256, 256) and pair.reject is None
        pixels = pil_pixels(data, 32)  # CLIP's CPU preprocessing
        assert pixels.shape == (32, 32, 3) and tuple(pixels[16, 16]) == RED
    # libwebp checks every frame when it opens an animation: such a WebP cannot be opened at all.
    samples = {**later_bad, "webp": ("webp", webp_with_bad_second_frame())}
    write_tar(tmp_path / "a.tar", samples)
    # every first frame is the same red picture: near_dedup off, so that each one's output can be checked
    out = clean(tmp_path, {"format": "webdataset", "paths": ["a.tar"]}, disable="near_dedup")
    assert outcome(out) == {"kept": 4, "image_undecodable": 1}
    with tarfile.open(os.path.join(out, "shards", "00000.tar")) as tar:
        stored = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    assert len(stored) == 4
    for data in stored:  # re-encoded as JPEG from the first (red) frame
        with Image.open(io.BytesIO(data)) as img:
            red, green, blue = img.convert("RGB").resize((1, 1)).getpixel((0, 0))
        assert red > 180 and green < 60 and blue < 60


# --- the same rules in `vlcurate sft` ------------------------------------------------------------------


def test_sft_reads_image_paths_by_the_same_rules(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.jpg").write_bytes(jpeg(64, 48))
    (images / "big.jpg").write_bytes(noisy_jpeg(300, 300))
    os.mkfifo(images / "fifo.jpg")
    (tmp_path / "secret.jpg").write_bytes(jpeg(64, 48))
    paths = {
        "good": "good.jpg",
        "fifo": "fifo.jpg",
        "big": "big.jpg",
        "zero": "/dev/zero",
        "up": "../secret.jpg",
        "remote": "gs://bucket/a.jpg",
    }
    records = [{"id": k, "image": v, "caption": "A red square.", "lang": "en"} for k, v in paths.items()]
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    caps = {"name": "caps", "kind": "captions", "paths": ["caps.jsonl"], "image_root": "images"}
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"inputs": [{**caps, "max_image_bytes": 20_000}]}))
    code = f"import sys\nfrom vlcurate.cli import main\nsys.exit(main(['sft', '--config', {str(config)!r}, '--output', {str(tmp_path / 'out')!r}, '--no-progress']))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"sft did not finish in {SUBPROCESS_TIMEOUT_S} s: an image read blocks")
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.path.exists(tmp_path / "out" / COMPLETED)
    with open(tmp_path / "out" / "stats.json") as fh:
        stats = json.load(fh)
    assert stats["totals"]["records_read"] == 6 and stats["totals"]["records_in_dialogues"] == 1
    assert stats["rejects_by_reason"] == {
        "image_not_a_file": 1,
        "image_too_large": 1,
        "image_outside_root": 3,
    }
