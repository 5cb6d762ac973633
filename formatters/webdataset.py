"""WebDataset tar shards as img2dataset writes them: `<key>.jpg|png|webp`, `<key>.txt`, `<key>.json`.

Members of one sample are consecutive and share the key (the member name up to the first '.' of its
basename). Writing is deterministic: fixed mtime, owner and mode, so equal input gives equal bytes.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from vlcurate.schemas.record import IMAGE_EXTENSIONS  # noqa: F401  (re-exported for readers)

EXTENSION_OF_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/000012.jpg' -> ('dir/000012', 'jpg'); 'a.seg.json' -> ('a', 'seg.json')."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_samples(fileobj: BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields (key, {extension: bytes}) in tar order. Raises tarfile.TarError on a broken archive
    after yielding every sample before the break."""
    key: str | None = None
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            member_key, ext = split_member_name(member.name)
            if member_key != key:
                if key is not None:
                    yield key, files
                key, files = member_key, {}
            handle = tar.extractfile(member)
            files[ext] = handle.read() if handle else b""
    if key is not None:
        yield key, files


BLOCK = 512
RECORD = 20 * BLOCK  # tar archives end padded to whole 10 KiB records, as tarfile writes them


def ustar_header(name: str, size: int) -> bytes:
    """A USTAR header for a regular file: mode 644, owner 0, mtime 0, so equal input gives equal bytes.

    Written by hand because tarfile spends ~50 us per member (TarInfo copies, generic field encoding);
    shards hold several members per pair."""
    encoded = name.encode("utf-8")
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    header = bytearray(BLOCK)
    header[0 : len(encoded)] = encoded
    header[100:108] = b"0000644\0"  # mode
    header[108:116] = b"0000000\0"  # uid
    header[116:124] = b"0000000\0"  # gid
    header[124:136] = b"%011o\0" % size
    header[136:148] = b"00000000000\0"  # mtime
    header[148:156] = b" " * 8  # checksum field counts as spaces while summing
    header[156:157] = b"0"  # regular file
    header[257:265] = b"ustar\x0000"
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


class TarShardWriter:
    """Streams samples into a tar on any writable binary file object (local or gs:// stream)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._out = fileobj
        self._written = 0

    def add(self, key: str, files: dict[str, bytes]) -> None:
        for ext, data in files.items():
            padding = -len(data) % BLOCK
            self._out.write(ustar_header(f"{key}.{ext}", len(data)))
            self._out.write(data)
            if padding:
                self._out.write(b"\0" * padding)
            self._written += BLOCK + len(data) + padding

    def close(self) -> None:
        end = self._written + 2 * BLOCK  # two zero blocks mark the end of the archive
        self._out.write(b"\0" * (2 * BLOCK + (-end % RECORD)))

    def __enter__(self) -> TarShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
