import io
import tarfile

import pytest

from vlcurate.formatters.webdataset import TarShardWriter, iter_samples, split_member_name


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


def test_round_trip_keeps_keys_order_and_bytes():
    samples = [
        ("000000000", {"jpg": b"\xff\xd8abc", "txt": "un café".encode(), "json": b"{}"}),
        ("000000001", {"png": b"\x89PNG", "txt": b"x"}),
    ]
    assert list(iter_samples(io.BytesIO(write(samples)))) == samples


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
        for key, _ in iter_samples(io.BytesIO(data[:2600])):
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
