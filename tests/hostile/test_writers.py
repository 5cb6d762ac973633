"""Hostile input for the writers and the output directory: each test makes its input in tmp_path and runs
the real `vlcurate clean` in a child process with a timeout.

The promise: bad input never crashes a job; input == kept + rejects; byte-identical output for any worker
count; a killed run never destroys a completed output; a killed launcher takes its worker processes along.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import urllib.parse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlcurate.pipelines import output
from vlcurate.pipelines.output import COMPLETED, prepare_output_dir, publish
from vlcurate.pipelines.write import write_kept_shard, write_reject_file
from vlcurate.schemas.record import Pair
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, output_files, reject_rows, write_tar

NO_CLIP = ["--disable", "clip_score,clip_filter", "--no-progress"]
TIMEOUT_S = 300
VLCURATE = os.path.join(os.path.dirname(sys.executable), "vlcurate")


def caption(i: int) -> str:
    return f"A blue square on a white wall, photo {i}"  # distinct: dedup leaves the pairs alone


def run_clean(*args: str, workers: int = 1) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [VLCURATE, "clean", *args, "--workers", str(workers), *NO_CLIP],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def config_file(tmp_path, sources: list[dict], out: str, **more) -> str:
    path = tmp_path / f"{os.path.basename(out)}.json"  # YAML reads JSON
    path.write_text(json.dumps({"sources": sources, "output": {"dir": out}, **more}))
    return str(path)


def counts(out) -> dict[str, int]:
    """{"kept": n, reason: n, ...} from stats.json, after checking COMPLETED and that the files hold
    exactly the pairs counted: input == kept + rejects."""
    assert os.path.exists(os.path.join(out, COMPLETED))
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as fh:
        stats = json.load(fh)
    totals = stats["totals"]
    assert totals["read"] == totals["kept"] + totals["rejected"]
    assert len(kept_rows(str(out))) == totals["kept"]
    assert len(reject_rows(str(out))) == totals["rejected"]
    found = {"kept": totals["kept"]}
    for source in stats["sources"].values():
        for reason, n in source["rejected_by_reason"].items():
            found[reason] = found.get(reason, 0) + n
    return found


def tar_of(path, members: list[tuple[str, bytes]]) -> None:
    """A tar of (member name, bytes); names may hold bytes that are not UTF-8 (surrogate-escaped)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- 1. a header size beyond int32 ----------------------------------------------------------------------


def bmp_with_width(width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, "BMP")
    data = bytearray(buffer.getvalue())
    data[18:22] = struct.pack("<I", width)  # BITMAPINFOHEADER biWidth, as in Pillow's badwidth.bmp
    return bytes(data)


def test_a_width_beyond_int32_is_written_as_int64_and_beyond_int64_as_null(tmp_path):
    tar_of(
        tmp_path / "a.tar",
        [
            ("good.jpg", jpeg(300, 300)),
            ("good.txt", caption(0).encode()),
            ("wide.bmp", bmp_with_width(4_294_967_169)),
            ("wide.txt", caption(1).encode()),
        ],
    )
    out = str(tmp_path / "out")
    run_clean("--input", str(tmp_path / "a.tar"), "--output", out)
    assert counts(out) == {"kept": 1, "too_many_pixels": 1}
    (row,) = reject_rows(out)
    assert (row["uid"], row["width"], row["height"]) == ("input/wide", 4_294_967_169, 4)
    for folder in ("shards", "rejects"):
        for name in os.listdir(os.path.join(out, folder)):
            if name.endswith(".parquet"):
                schema = pq.read_schema(os.path.join(out, folder, name))
                assert schema.field("width").type == schema.field("height").type == pa.int64()

    # A size no int64 holds (no image has one) is written as null, with the claimed number in meta.
    huge = Pair(uid="s/huge", source="s", reject="too_many_pixels", width=2**70, height=3)
    write_reject_file(str(tmp_path / "w"), 0, 1, [huge], [])
    (row,) = reject_rows(str(tmp_path / "w"))
    assert (row["width"], row["height"]) == (None, 3)
    assert json.loads(row["meta"]) == {"width_raw": str(2**70)}


# --- 2. strings UTF-8 cannot encode ---------------------------------------------------------------------


def test_unencodable_strings_reach_no_writer_and_fail_no_job(tmp_path):
    """Bytes that are not UTF-8 in a tar member's key, a JSONL field name and an image path, lone
    surrogates in a .json sidecar and in captions: the job completes, captions that do not decode are
    `caption_bad_utf8`, everything else is written with U+FFFD and an image path keeps its raw bytes
    percent-escaped, so the file can still be found."""
    images = tmp_path / "imgs"
    images.mkdir()
    with open(os.fsencode(str(images)) + b"/\xffsmall.jpg", "wb") as fh:  # not UTF-8: os.fsdecode escapes it
        fh.write(jpeg(40, 40))  # too_small: its reject row names the path
    (images / "good.jpg").write_bytes(jpeg(300, 300))
    lines = [
        b'{"key": "a", "caption": "%s", "image": "good.jpg", "f\xffo": 1, "nested": {"k\xfe": ["v\xfd"]}}',
        b'{"key": "b", "caption": "caf\xe9 is not UTF-8", "image": "good.jpg"}',
        b'{"key": "c", "caption": "a lone \\ud800 surrogate", "image": "good.jpg"}',
        b'{"key": "d", "caption": "%s", "image": "\xffsmall.jpg"}',
        b'{"key": "e\xff", "caption": "%s", "image": "good.jpg"}',
    ]
    rows = b"\n".join(line.replace(b"%s", caption(i).encode()) for i, line in enumerate(lines)) + b"\n"
    (images / "rows.jsonl").write_bytes(rows)
    tar_of(
        tmp_path / "t.tar",
        [
            ("t\udcff.jpg", jpeg(300, 300)),
            ("t\udcff.txt", caption(10).encode()),
            ("t\udcff.json", b'{"u\\ud800": "v\\udfff", "ok": "\\u00e9"}'),
            ("u.jpg", jpeg(300, 300)),
            ("u.txt", b"bad \xff caption"),
        ],
    )
    out = str(tmp_path / "out")
    sources = [
        {"name": "rows", "format": "jsonl", "paths": [str(images / "rows.jsonl")]},
        {"name": "tars", "format": "webdataset", "paths": [str(tmp_path / "t.tar")]},
    ]
    # One picture under three captions: near_dedup (uids and captions with lone surrogates in its shuffles)
    # keeps them all when it asks for the same caption too.
    run_clean(
        "--config", config_file(tmp_path, sources, out, steps={"near_dedup": {"captions": "same_caption"}})
    )
    assert counts(out) == {"kept": 3, "caption_bad_utf8": 3, "too_small": 1}
    kept = {row["uid"]: json.loads(row["meta"]) for row in kept_rows(out)}
    assert set(kept) == {"rows/a", "rows/e\ufffd", "tars/t\ufffd"}
    assert kept["rows/a"]["f\ufffdo"] == 1 and kept["rows/a"]["nested"] == {"k\ufffd": ["v\ufffd"]}
    (small,) = [row for row in reject_rows(out) if row["reason"] == "too_small"]
    assert small["image_ref"] == str(images / "\ufffdsmall.jpg")
    escaped = json.loads(small["meta"])["image_ref_escaped"]
    assert escaped.endswith("/%FFsmall.jpg")
    assert os.path.exists(os.fsdecode(urllib.parse.unquote_to_bytes(escaped)))
    with tarfile.open(os.path.join(out, "shards", "00000.tar")) as tar:  # the sidecars are UTF-8 JSON
        for member in tar.getmembers():
            if member.name.endswith((".json", ".txt")):
                tar.extractfile(member).read().decode("utf-8")


def test_one_policy_for_every_text_a_writer_writes(tmp_path):
    """What a reader might let through, straight to the writers: every lone surrogate is written as U+FFFD,
    the fields it touched are named in meta.unicode_replaced, uid and image_ref keep their raw bytes."""

    def hostile(uid: str, reject: str | None = None) -> Pair:
        return Pair(
            uid=uid,
            source="s",
            caption="ok \ud800",
            caption_raw="raw \udcff",
            image_ref="/data/\udcff.jpg",
            lang="en",
            scores={"s\ud800": 0.5},
            reject=reject,
            meta={"k\ud800": {"n\udc80": ["v\udfff"]}, "fine": "é"},
        )

    write_kept_shard(str(tmp_path / "k"), 0, 1, 10, [hostile("s/a\ud800")], ["clip_score"])
    write_reject_file(str(tmp_path / "r"), 0, 1, [hostile("s/b\udcff", "too_short")], ["clip_score"])
    (kept,), (rejected,) = kept_rows(str(tmp_path / "k")), reject_rows(str(tmp_path / "r"))
    assert (kept["uid"], kept["caption"], kept["caption_raw"]) == ("s/a\ufffd", "ok \ufffd", "raw \ufffd")
    assert json.loads(kept["meta"]) == {
        "k\ufffd": {"n\ufffd": ["v\ufffd"]},
        "fine": "é",
        "image_ref_escaped": "/data/%FF.jpg",
        "uid_escaped": "s/a%ED%A0%80",
        "other_scores": {"s\ufffd": 0.5},
        "unicode_replaced": ["caption", "caption_raw", "image_ref", "meta", "scores", "uid"],
    }
    assert (rejected["uid"], rejected["image_ref"]) == ("s/b\ufffd", "/data/\ufffd.jpg")
    assert json.loads(rejected["meta"])["uid_escaped"] == "s/b%FF"
    with tarfile.open(tmp_path / "k" / "shards" / "00000.tar") as tar:
        member = json.loads(tar.extractfile(tar.getmember("000000000.json")).read().decode("utf-8"))
    assert member["uid"] == "s/a\ufffd" and member["scores"] == {"s\ufffd": 0.5}


# --- 3. duplicate uids ----------------------------------------------------------------------------------


def test_duplicate_uids_keep_one_copy_and_every_worker_count_writes_the_same_bytes(tmp_path):
    """1,000 JSONL rows over 100 key values, and two tars reusing 50 keys: every copy but one is a
    `duplicate_uid` reject, the copy kept does not depend on arrival order, and 1 and 2 workers write the
    same shards, rejects and stats byte for byte."""
    image = jpeg(300, 300)
    for tar in ("a", "b"):
        write_tar(
            tmp_path / f"{tar}.tar", [(f"k{i:02d}", f"{caption(i)} in {tar}", image) for i in range(50)]
        )
    (tmp_path / "img.jpg").write_bytes(image)
    rows = [{"key": f"r{i % 100:02d}", "caption": caption(1000 - i), "image": "img.jpg"} for i in range(1000)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = [
        {"name": "rows", "format": "jsonl", "paths": [str(tmp_path / "rows.jsonl")]},
        {"name": "tars", "format": "webdataset", "paths": [str(tmp_path / "*.tar")]},
    ]
    outs = {}
    for workers in (1, 2):
        out = str(tmp_path / f"out{workers}")
        # one picture for every pair: near_dedup would keep one, and this test is about uids
        run_clean("--config", config_file(tmp_path, sources, out, disable=["near_dedup"]), workers=workers)
        outs[workers] = output_files(out)
        assert counts(out) == {"kept": 150, "duplicate_uid": 950}
    assert outs[1] == outs[2]
    out = str(tmp_path / "out1")
    kept = {row["uid"]: row["caption"] for row in kept_rows(out)}
    # The copy kept: the first by where it was read (a.tar before b.tar), then by content (the caption).
    assert kept == {
        **{f"tars/k{i:02d}": f"{caption(i)} in a" for i in range(50)},
        **{f"rows/r{k:02d}": min(r["caption"] for r in rows if r["key"] == f"r{k:02d}") for k in range(100)},
    }
    with open(os.path.join(out, "stats.json"), encoding="utf-8") as fh:
        step = json.load(fh)["steps"]["unique_uid"]
    assert (step["seen"], step["dropped"]) == (1100, {"duplicate_uid": 950})
    with open(os.path.join(out, "info.json"), encoding="utf-8") as fh:
        listed = {r["file"]: r["pairs"] for r in json.load(fh)["rejects"]}
    assert sum(n for name, n in listed.items() if "uid-duplicates" in name) == 950


# --- 4. a killed --overwrite run --------------------------------------------------------------------------


def many_pairs(folder, n: int, tag: str = "") -> str:
    os.makedirs(folder, exist_ok=True)
    for part in range(4):
        write_tar(  # a distinct picture per pair (jpeg draws one per size)
            os.path.join(folder, f"{part}.tar"),
            [
                (f"{part}{i:05d}", f"{caption(i)}{tag} part {part}", jpeg(300 + i, 300 + part))
                for i in range(n // 4)
            ],
        )
    return os.path.join(str(folder), "*.tar")


def test_a_killed_overwrite_run_leaves_the_previous_output_completed(tmp_path):
    out = str(tmp_path / "out")
    run_clean("--input", many_pairs(tmp_path / "small", 40), "--output", out)
    before = output_files(out)
    (tmp_path / "out" / "notes.txt").write_text("mine")  # not the run's: never touched
    bigger = many_pairs(tmp_path / "big", 8000, " again")
    command = [VLCURATE, "clean", "--input", bigger, "--output", out, "--overwrite", *NO_CLIP]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(
            files
            for name in os.listdir(tmp_path)
            if name.startswith(".out.partial-")
            for _, _, files in os.walk(tmp_path / name)
        ):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it wrote"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # while it writes its staging directory
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert output_files(out) == {**before, "notes.txt": b"mine"}

    (tmp_path / "out" / "shards" / "99999.tar").write_bytes(b"stale")  # a shard the next run did not write
    run_clean("--input", many_pairs(tmp_path / "third", 40, " third"), "--output", out, "--overwrite")
    assert counts(out) == {"kept": 40}
    assert not (tmp_path / "out" / "shards" / "99999.tar").exists()
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".out.")]  # staging swept


def test_publishing_through_an_object_store_copies_and_deletes(tmp_path, monkeypatch):
    """gs:// has no rename (a copy and a delete per object): the same swap, with Beam's FileSystems calls
    run on local files."""
    monkeypatch.setattr(output, "_is_local", lambda path: False)
    out = tmp_path / "out"
    for folder, names in ((out, ("shards/00000.tar", "stats.json", COMPLETED, "notes.txt")),):
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"old {name}")
    staging = prepare_output_dir(str(out), overwrite=True)
    assert os.path.basename(staging).startswith(".out.partial-") and os.path.isdir(staging)
    for name in ("shards/00001.tar", "rejects/rejects-00000.parquet", "stats.json", COMPLETED):
        os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
        with open(os.path.join(staging, name), "w") as fh:
            fh.write(f"new {name}")
    assert publish(staging, str(out)) == str(out)
    assert {path: data.decode() for path, data in output_files(str(out)).items()} == {
        "shards/00001.tar": "new shards/00001.tar",
        "rejects/rejects-00000.parquet": "new rejects/rejects-00000.parquet",
        "stats.json": "new stats.json",
        COMPLETED: f"new {COMPLETED}",
        "notes.txt": "old notes.txt",
    }
    assert not any(files for _, _, files in os.walk(staging))


# --- 5. worker processes of a killed launcher -------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_launcher_is_killed(tmp_path):
    inputs = many_pairs(tmp_path / "in", 8000)
    command = [VLCURATE, "clean", "--input", inputs, "--output", str(tmp_path / "out"), "--workers", "2"]
    proc = subprocess.Popen(
        [*command, *NO_CLIP], stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        workers: list[int] = []
        while len(workers) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no worker processes started"
            time.sleep(0.05)
            workers = children(proc.pid)
        workers += [grandchild for pid in workers for grandchild in children(pid)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 2
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if alive(pid)]
    finally:
        proc.kill()
        proc.wait(timeout=30)
