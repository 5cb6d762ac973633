"""Hostile input files for the readers: each test makes its input in tmp_path and runs the real
`vlcurate clean` (vlcurate.cli.main) in a child process killed after a timeout, so a regression that hangs
fails instead of stopping the suite.

The promise: bad input never fails the job and is never dropped silently. A bad record costs that record
(one reject with a reason) and the rest of its file is still read; a break in a file keeps what was read
whole before it and becomes one `file_unreadable` reject; input == kept + rejects.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.pipelines.output import COMPLETED
from vlcurate.pipelines.read import CSV_FIELD_LIMIT
from vlcurate.tests.pipelines.helpers import jpeg, kept_rows, output_files, reject_rows

NO_CLIP = ["--disable", "clip_score,clip_filter", "--no-progress"]
TIMEOUT_S = 300  # a run of a few records takes seconds


def caption(i: int) -> str:
    return f"A red square on a white wall, photo {i}"  # distinct: dedup leaves the pairs alone


def cli(args: list[str]) -> subprocess.CompletedProcess:
    """vlcurate.cli.main(args) in a child process, stopped after TIMEOUT_S (the test then fails)."""
    code = f"import sys\nfrom vlcurate.cli import main\nsys.exit(main({args!r}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def clean(tmp_path, sources: list[dict], name: str = "out") -> dict:
    """Runs `clean` on the sources; checks exit 0, COMPLETED and input == kept + rejects (counted and
    written); returns stats.json's per-source counts."""
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"sources": sources}))
    out = tmp_path / name
    done = cli(["clean", "--config", str(config), "--output", str(out), *NO_CLIP])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / COMPLETED).exists()
    stats = json.loads((out / "stats.json").read_text())
    totals = stats["totals"]
    assert totals["read"] == totals["kept"] + totals["rejected"]
    assert totals["kept"] == len(kept_rows(str(out)))
    assert totals["rejected"] == len(reject_rows(str(out)))
    return stats["sources"]


def counts(entry: dict) -> tuple[int, int, dict[str, int]]:
    return entry["read"], entry["kept"], entry["rejected_by_reason"]


def write_images(folder, n: int) -> None:
    os.makedirs(folder / "images", exist_ok=True)
    for i in range(n):
        (folder / "images" / f"{i}.jpg").write_bytes(jpeg(300 + i, 300))


def good_line(i: int) -> str:
    """A JSONL line of pair i (its image: images/<i>.jpg, write_images)."""
    return json.dumps({"key": f"k{i}", "caption": caption(i), "image": f"images/{i}.jpg"})


def sample(i: int, sidecar: bytes | None = None) -> tuple[str, dict[str, bytes]]:
    files = {"jpg": jpeg(400 + i, 300), "txt": caption(100 + i).encode()}  # unlike the rows' pairs
    return f"{i:03d}", {**files, "json": sidecar if sidecar is not None else json.dumps({"n": i}).encode()}


def write_tar(path, samples: list[tuple[str, dict[str, bytes]]]) -> bytes:
    buffer = io.BytesIO()
    with TarShardWriter(buffer) as writer:
        for key, files in samples:
            writer.add(key, files)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def member_offsets(samples: list[tuple[str, dict[str, bytes]]]) -> int:
    """Where the member after `samples` starts in the tar TarShardWriter writes."""
    return sum(512 + len(data) + (-len(data) % 512) for _, files in samples for data in files.values())


DEEP = "[" * 100_000 + "]" * 100_000
BIG_INT = "9" * 5000  # over Python's int-string conversion limit (4300 digits)


def test_bad_json_in_one_line_or_sidecar_costs_that_record_only(tmp_path):
    # JSONL: each bad line is one row_unparseable reject and every line after it is still read.
    bad_lines = [
        r'{"key": "k\ud800", "caption": "A lone surrogate in the key", "image": "images/0.jpg"}',
        r'{"key": "s1", "caption": "A lone surrogate in a key inside a value", "meta": {"\udfff": 1}}',
        r'{"key": "s2", "caption": "A lone surrogate in a value", "url": "http://x/\ud83d"}',
        '{"key": "s3", "caption": "A very long number", "n": ' + BIG_INT + "}",
        '{"key": "s4", "caption": ' + DEEP + "}",
        '{"key": "s5", "caption": "Nested 150 deep", "v": ' + "[" * 150 + "]" * 150 + "}",
    ]
    write_images(tmp_path, 7)
    lines = [good_line(0)]
    for i, bad in enumerate(bad_lines, start=1):
        lines += [bad, good_line(i)]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    # A tar's .json member is metadata beside the sample: a bad one costs its fields, the sample is kept.
    sidecars = {
        2: rb'{"url": "\ud800"}',
        3: b'{"n": ' + BIG_INT.encode() + b"}",
        4: b'{"v": ' + DEEP.encode() + b"}",
    }
    write_tar(tmp_path / "shard.tar", [sample(i, sidecars.get(i)) for i in range(7)])
    sources = clean(
        tmp_path,
        [
            {"name": "jsonl", "format": "jsonl", "paths": [str(tmp_path / "rows.jsonl")]},
            {"name": "tar", "format": "webdataset", "paths": [str(tmp_path / "shard.tar")]},
        ],
    )
    assert counts(sources["jsonl"]) == (13, 7, {"row_unparseable": 6})
    assert counts(sources["tar"]) == (7, 7, {})
    errors = {
        row["uid"]: json.loads(row["meta"]).get("json_error") for row in kept_rows(str(tmp_path / "out"))
    }
    assert sorted(uid for uid, error in errors.items() if error) == ["tar/002", "tar/003", "tar/004"]
    assert "lone surrogate" in errors["tar/002"] and "4300 digits" in errors["tar/003"]
    assert "nested deeper than 100" in errors["tar/004"]
    rejects = {row["uid"]: json.loads(row["meta"])["error"] for row in reject_rows(str(tmp_path / "out"))}
    # A line that does not parse has no key of its own: its uid is `<file stem>-<line number>`.
    assert "nested deeper than 100 levels" in rejects["jsonl/rows-000000009"]
    assert "lone surrogate \\udfff" in rejects["jsonl/rows-000000003"]


def test_a_broken_tar_header_keeps_the_whole_sample_before_it(tmp_path):
    def tar(first: int) -> tuple[bytes, int]:
        """Five samples (numbered from `first`: no two tars hold duplicates) and where sample 3 starts."""
        samples = [sample(first + i) for i in range(5)]
        return write_tar(tmp_path / "whole.tar", samples), member_offsets(samples[:3])

    def garble(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]

    data, start = tar(0)  # the name in sample 3's first header: its checksum fails
    (tmp_path / "garbled.tar").write_bytes(garble(data, start + 10))
    data, start = tar(10)
    (tmp_path / "cut.tar").write_bytes(data[: start + 300])  # cut inside sample 3's first header
    data, start = tar(20)
    (tmp_path / "cut-data.tar").write_bytes(data[: start + 512 + 100])  # cut in sample 3's image
    data, start = tar(30)
    (tmp_path / "garbled.tar.gz").write_bytes(gzip.compress(garble(data, start + 10)))
    data, _ = tar(40)
    packed = gzip.compress(data)
    (tmp_path / "cut.tar.gz").write_bytes(packed[: len(packed) // 2])  # the stream ends in the samples
    names = ["garbled.tar", "cut.tar", "cut-data.tar", "garbled.tar.gz", "cut.tar.gz"]
    sources = clean(
        tmp_path,
        [{"name": n.replace(".", "_"), "format": "webdataset", "paths": [str(tmp_path / n)]} for n in names],
    )
    for name in names[:4]:  # samples 0-2 whole, then the break
        assert counts(sources[name.replace(".", "_")]) == (4, 3, {"file_unreadable": 1}), name
    read, kept, rejected = counts(sources["cut_tar_gz"])  # a cut compressed stream is never silent
    assert rejected == {"file_unreadable": 1} and read == kept + 1 and kept >= 1


def test_a_sample_made_of_links_devices_or_directories_is_a_reject(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("shard", kind=tarfile.DIRTYPE)  # a folder, not a sample: skipped
        for i in (0, 6):
            for ext, data in sample(i)[1].items():
                add(f"shard/{i:03d}.{ext}", data)
        add("shard/001.jpg", kind=tarfile.SYMTYPE, link="../elsewhere.jpg")  # a sample of one symlink
        add("shard/002.jpg", kind=tarfile.LNKTYPE, link="shard/000.jpg")  # a hard link beside its caption
        add("shard/002.txt", caption(102).encode())
        add("shard/003.jpg", kind=tarfile.CHRTYPE)  # a character device
        add("shard/004.jpg", kind=tarfile.DIRTYPE)  # a directory named like an image
        add("shard/005.jpg", sample(5)[1]["jpg"])  # a whole image, but its caption is a link
        add("shard/005.txt", kind=tarfile.SYMTYPE, link="/etc/passwd")
        for ext, data in sample(7)[1].items():  # a whole sample with an extra link nobody reads
            add(f"shard/007.{ext}", data)
        add("shard/007.cls", kind=tarfile.SYMTYPE, link="000.cls")
    (tmp_path / "links.tar").write_bytes(buffer.getvalue())
    sources = clean(tmp_path, [{"name": "s", "format": "webdataset", "paths": [str(tmp_path / "links.tar")]}])
    assert counts(sources["s"]) == (8, 3, {"row_unparseable": 5})
    errors = {row["uid"]: json.loads(row["meta"])["error"] for row in reject_rows(str(tmp_path / "out"))}
    assert errors["s/001"] == (
        "tar member 'shard/001.jpg' is a symbolic link to '../elsewhere.jpg', not a file: the tar does not hold "
        "its bytes"
    )
    assert "'shard/002.jpg' is a hard link to 'shard/000.jpg'" in errors["s/002"]
    assert "'shard/003.jpg' is a character device," in errors["s/003"]
    assert "'shard/004.jpg' is a directory" in errors["s/004"]
    assert "'shard/005.txt' is a symbolic link to '/etc/passwd'" in errors["s/005"]


def test_csv_long_fields_and_extra_fields(tmp_path):
    long_note = "n" * 200_000  # over csv's default field limit (131,072 characters)
    rows = [
        ["k0", caption(0), "a note"],
        ["k1", "word " * 40_000, "a long caption"],  # read, then rejected by max_caption_bytes
        ["k2", caption(2), long_note],  # a long passthrough field is kept
        ["k3", caption(3), "x", "an extra field"],  # the columns no longer line up
        ["k4", caption(4), "y" * (CSV_FIELD_LIMIT + 1)],  # over vlcurate's own limit
        ["k5", caption(5), "the line after"],
    ]
    text = io.StringIO()
    writer = csv_writer(text)
    writer.writerow(["key", "caption", "note"])
    writer.writerows(rows)
    (tmp_path / "rows.csv").write_text(text.getvalue())
    sources = clean(
        tmp_path,
        [{"name": "c", "format": "csv", "paths": [str(tmp_path / "rows.csv")], "image_column": None}],
    )
    assert counts(sources["c"]) == (6, 3, {"row_unparseable": 2, "caption_too_large": 1})
    kept = {row["uid"]: json.loads(row["meta"]) for row in kept_rows(str(tmp_path / "out"))}
    assert kept == {
        "c/k0": {"note": "a note"},
        "c/k2": {"note": long_note},
        "c/k5": {"note": "the line after"},
    }
    errors = {row["uid"]: json.loads(row["meta"]).get("error") for row in reject_rows(str(tmp_path / "out"))}
    assert errors["c/rows-000000003"] == "4 fields where the header names 3 (an unquoted comma?)"
    assert "field larger than field limit" in errors["c/rows-000000004"]


def csv_writer(fh):
    import csv

    return csv.writer(fh, lineterminator="\n")


def test_input_file_names_that_are_not_utf8_are_read(tmp_path):
    folder = os.fsencode(tmp_path)
    write_images(tmp_path, 4)
    with open(folder + b"/\xff.jsonl", "w") as fh:
        fh.write(good_line(0) + "\n" + good_line(1) + "\n{oops\n")
    with open(folder + b"/ok.jsonl", "w") as fh:
        fh.write(good_line(2) + "\n")
    buffer = io.BytesIO()
    with TarShardWriter(buffer) as writer:
        writer.add(*sample(3))
    with open(folder + b"/\xfe\xfd.tar", "wb") as fh:  # a break after the sample: a file_unreadable reject
        fh.write(buffer.getvalue()[: member_offsets([sample(3)])] + b"\x01" * 700)
    table = pa.table({"caption": [caption(4)], "image": [jpeg(304, 300)]})
    with open(folder + b"/\xfc.parquet", "wb") as fh:
        pq.write_table(table, fh)
    sources = clean(
        tmp_path,
        [
            {"name": "j", "format": "jsonl", "paths": [str(tmp_path / "*.jsonl")]},
            {"name": "w", "format": "webdataset", "paths": [str(tmp_path / "*.tar")]},
            {"name": "p", "format": "parquet", "paths": [str(tmp_path / "*.parquet")]},
        ],
    )
    assert counts(sources["j"]) == (4, 3, {"row_unparseable": 1})
    assert counts(sources["w"]) == (2, 1, {"file_unreadable": 1})
    assert counts(sources["p"]) == (1, 1, {})
    uids = sorted(row["uid"] for row in kept_rows(str(tmp_path / "out")) + reject_rows(str(tmp_path / "out")))
    # Fallback keys start with the file name; bytes that are not UTF-8 are spelled \xNN, so keys stay apart.
    assert uids == [
        "j/\\xff-000000002",
        "j/k0",
        "j/k1",
        "j/k2",
        "p/\\xfc-000000000",
        "w/003",
        "w/\\xfe\\xfd#file_error",
    ]


def test_a_damaged_first_jsonl_line_does_not_refuse_the_job(tmp_path):
    write_images(tmp_path, 16)

    def damage(first: bytes, name: str) -> bytes:
        at = first.index(b"caption")
        if name == "renamed":
            return first[: at + 2] + b"x" + first[at + 3 :]  # "caxtion": the line lacks the column
        if name == "not_utf8":
            return first[: at + 4] + b"\xff" + first[at + 5 :]  # "capt\xffon"
        return first[:1] + b"\x00" + first[2:]  # no longer JSON

    sources = []
    for n, name in enumerate(["renamed", "not_utf8", "syntax"]):
        lines = [good_line(5 * n + i).encode() for i in range(5)]  # no pair twice: dedup stays out
        lines[0] = damage(lines[0], name)
        (tmp_path / f"{name}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        sources.append({"name": name, "format": "jsonl", "paths": [str(tmp_path / f"{name}.jsonl")]})
    # A file of one line, damaged: one line cannot tell damage from a wrong column name.
    (tmp_path / "single.jsonl").write_bytes(damage(good_line(15).encode(), "renamed") + b"\n")
    sources.append({"name": "single", "format": "jsonl", "paths": [str(tmp_path / "single.jsonl")]})
    found = clean(tmp_path, sources)
    assert counts(found["renamed"]) == (5, 4, {"caption_empty": 1})
    assert counts(found["not_utf8"]) == (5, 4, {"caption_empty": 1})
    assert counts(found["syntax"]) == (5, 4, {"row_unparseable": 1})
    assert counts(found["single"]) == (1, 0, {"caption_empty": 1})
    # A file whose first lines (JSONL_LINES_TO_REFUSE or more) all lack the column is refused at start-up.
    lines = [good_line(i).replace('"caption"', '"text"') for i in range(5)]
    (tmp_path / "wrong.jsonl").write_text("".join(line + "\n" for line in lines))
    config = tmp_path / "wrong.yaml"
    config.write_text(
        yaml.safe_dump(
            {"sources": [{"name": "w", "format": "jsonl", "paths": [str(tmp_path / "wrong.jsonl")]}]}
        )
    )
    done = cli(["clean", "--config", str(config), "--output", str(tmp_path / "refused"), *NO_CLIP])
    assert done.returncode == 2
    assert "caption_column 'caption' is not in" in done.stderr
    assert not (tmp_path / "refused").exists()


def test_parquet_images_are_read_back_at_the_writer_with_the_same_output(tmp_path):
    images = [jpeg(300 + i, 300) for i in range(12)]
    structs = pa.array([{"bytes": image, "path": f"{i}.jpg"} for i, image in enumerate(images)])
    table = pa.table({"caption": [caption(i) for i in range(12)], "image": structs})
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=5)  # three row groups
    source = [{"name": "p", "format": "parquet", "paths": [str(tmp_path / "rows.parquet")]}]
    outs = {}
    for reread in (True, False):
        config = tmp_path / f"{reread}.yaml"
        out = tmp_path / f"out-{reread}"
        config.write_text(
            yaml.safe_dump({"sources": source, "output": {"reread_images": reread, "pairs_per_shard": 4}})
        )
        done = cli(["clean", "--config", str(config), "--output", str(out), *NO_CLIP])
        assert done.returncode == 0, done.stderr[-3000:]
        stats = json.loads((out / "stats.json").read_text())
        assert counts(stats["sources"]["p"]) == (12, 12, {})
        outs[reread] = output_files(str(out))
    assert sorted(outs[True]) == sorted(outs[False])
    assert [name for name in outs[True] if outs[True][name] != outs[False][name]] == []
    stored = {}  # the shards hold the input's JPEG bytes, byte for byte
    for name, data in outs[True].items():
        if name.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar:
                    if member.name.endswith(".jpg"):
                        stored[member.name] = tar.extractfile(member).read()
    assert sorted(stored.values()) == sorted(images)


def test_a_parquet_row_whose_strings_are_not_utf8_costs_that_row(tmp_path):
    raw = pa.array([caption(0).encode(), b"A caption with \xff in it", caption(2).encode()], pa.binary())
    strings = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())  # unvalidated, as a writer may
    pq.write_table(pa.table({"key": ["a", "b", "c"], "caption": strings}), tmp_path / "rows.parquet")
    source = {
        "name": "p",
        "format": "parquet",
        "paths": [str(tmp_path / "rows.parquet")],
        "image_column": None,
    }
    assert counts(clean(tmp_path, [source])["p"]) == (3, 2, {"row_unparseable": 1})
    assert [row["uid"] for row in reject_rows(str(tmp_path / "out"))] == ["p/rows-000000001"]
