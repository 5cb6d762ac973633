import io
import tarfile

import pytest

from vlcurate.formatters.webdataset import (
    TarShardWriter,
    _number,
    iter_members,
    iter_samples,
    split_member_name,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("000012.jpg", ("000012", "jpg")),
        ("dir/000012.JPG", ("dir/000012", "jpg")),
        ("a.seg.json", ("a", "seg.json")),
        ("noext", ("noext", "")),
    ],
)
def test_split_member_name(name, expected):
    assert split_member_name(name) == expected


def write(samples):
    buffer = io.BytesIO()
    with TarShardWriter(buffer) as writer:
        for key, files in samples:
            writer.add(key, files)
    return buffer.getvalue()


def members(data: bytes) -> list[tuple[str, bytes]]:
    return [(name, body) for name, body, _ in iter_members(io.BytesIO(data))]


def test_round_trip_keeps_keys_order_and_bytes():
    samples = [
        ("000000000", {"jpg": b"\xff\xd8abc", "txt": "un café".encode(), "json": b"{}"}),
        ("000000001", {"png": b"\x89PNG", "txt": b"x"}),
    ]
    assert [(key, files) for key, files, _ in iter_samples(io.BytesIO(write(samples)))] == samples


def test_a_failed_write_gets_no_end_of_archive():
    buffer = io.BytesIO()
    with pytest.raises(RuntimeError), TarShardWriter(buffer) as writer:
        writer.add("k", {"txt": b"hello"})
        raise RuntimeError("disk full")
    assert len(buffer.getvalue()) == 2 * 512  # the member only: no zero blocks, no record padding


def test_writing_is_deterministic_and_owner_free():
    data = write([("k", {"txt": b"hello"})])
    assert data == write([("k", {"txt": b"hello"})])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmembers()[0]
    assert (member.mtime, member.uid, member.gid, member.uname, member.mode) == (0, 0, 0, "", 0o644)


def test_a_truncated_archive_yields_what_came_before_then_raises():
    data = write([(f"{i:03d}", {"txt": b"x" * 600}) for i in range(4)])
    seen = []
    with pytest.raises(tarfile.TarError):
        for key, _, _ in iter_samples(io.BytesIO(data[:2600])):
            seen.append(key)
    assert seen[:1] == ["000"]


def test_the_hand_written_headers_equal_tarfiles_own_ustar_output():
    samples = [
        ("000000001", {"jpg": b"x" * 1000, "txt": "un café".encode(), "json": b"{}"}),
        ("000000002", {"txt": b""}),
        ("dir/k", {"txt": b"y" * 512}),
    ]
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
                tar.addfile(info, io.BytesIO(data))
    assert write(samples) == reference.getvalue()


def test_member_names_over_100_bytes_are_refused():
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        write([("k" * 100, {"txt": b""})])


def tarfile_archive(fmt: int, compress: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compress}" if compress else "w", format=fmt) as tar:
        directory = tarfile.TarInfo("shard")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        members = [
            ("shard/000001.jpg", b"\xff\xd8jpeg bytes"),
            ("shard/000001.txt", "a caption, café".encode()),
            ("shard/" + "k" * 120 + ".json", b'{"long": "name"}'),  # over 100 bytes: prefix/L/pax
            ("shard/über-000002.txt", b""),  # non-ASCII name, empty file
            ("shard/000003.bin", bytes(range(256)) * 40),
        ]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("shard/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "000001.txt"
        tar.addfile(link)
    return buffer.getvalue()


def tarfile_members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_read_as_tarfile_reads_them(fmt):
    # GNU writes the long name as an `L` member, pax as a `path` record; the directory and the symlink
    # are not files.
    data = tarfile_archive(fmt)
    expected = tarfile_members(data)
    assert len(expected) == 5
    assert members(data) == expected


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_member_offsets_address_the_bytes_in_the_file(fmt):
    # Long names (GNU `L` members, pax records) shift the data: the offsets must still point at it.
    data = tarfile_archive(fmt)
    found = list(iter_members(io.BytesIO(data)))
    assert [(name, member) for name, member, _ in found] == tarfile_members(data)
    for _, member, offset in found:
        assert data[offset : offset + len(member)] == member
    samples = list(iter_samples(io.BytesIO(write([("a", {"jpg": b"\xff\xd8" * 300, "txt": b"x"})]))))
    assert samples == [("a", {"jpg": b"\xff\xd8" * 300, "txt": b"x"}, {"jpg": 512, "txt": 512 + 1024 + 512})]


def test_compressed_archives_have_no_offsets():
    data = tarfile_archive(tarfile.PAX_FORMAT, "gz")
    assert [offset for _, _, offset in iter_members(io.BytesIO(data))] == [None] * 5
    assert all(offsets == {} for _, _, offsets in iter_samples(io.BytesIO(data)))


def test_compressed_archives_go_through_tarfile():
    data = tarfile_archive(tarfile.PAX_FORMAT, "gz")
    assert members(data) == tarfile_members(data)


def test_ustar_prefix_names_and_a_missing_end_of_archive():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("d" * 90 + "/" + "e" * 30 + "/000001.txt")  # split into prefix + name
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    data = buffer.getvalue()
    names = [name for name, _ in members(data)]
    assert names == ["d" * 90 + "/" + "e" * 30 + "/000001.txt"]
    without_end = data[: 512 + 512]  # header + one data block, no zero blocks after
    assert members(without_end) == [(names[0], b"abc")]


def test_a_bad_header_mid_archive_raises_after_the_members_before_it():
    data = bytearray(write([(f"{i:03d}", {"txt": b"x" * 10}) for i in range(3)]))
    data[1024 + 20] ^= 0xFF  # the second member's header: checksum no longer matches
    seen = []
    with pytest.raises(tarfile.TarError, match="checksum"):
        for name, _, _ in iter_members(io.BytesIO(bytes(data))):
            seen.append(name)
    assert seen == ["000.txt"]


def test_empty_input_and_numeric_fields():
    with pytest.raises(tarfile.TarError):
        list(iter_members(io.BytesIO(b"")))
    assert _number(b"00000001750\0") == 1000
    assert _number(bytes([0x80]) + (8 * 2**30).to_bytes(11, "big")) == 8 * 2**30  # base-256, over 8 GiB
