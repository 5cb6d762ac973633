"""WebDataset tar shards as img2dataset writes them: `<key>.jpg|png|webp`, `<key>.txt`, `<key>.json`.

Members of one sample are consecutive and share the key (the member name up to the first '.' of its
basename). Writing is deterministic: fixed mtime, owner and mode, so equal input gives equal bytes.
"""

from __future__ import annotations

import io
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


def iter_samples(fileobj: BinaryIO) -> Iterator[tuple[str, dict[str, bytes], dict[str, int]]]:
    """Yields (key, {extension: bytes}, {extension: offset of the member's data in the stream}) in tar
    order; the offsets are empty for a compressed tar, where they point nowhere in the file. Raises
    tarfile.TarError on a broken archive after yielding every sample before the break."""
    key: str | None = None
    files: dict[str, bytes] = {}
    offsets: dict[str, int] = {}
    try:
        for name, data, offset in iter_members(fileobj):
            member_key, ext = split_member_name(name)
            if member_key != key:
                if key is not None:
                    yield key, files, offsets
                key, files, offsets = member_key, {}, {}
            files[ext] = data
            if offset is not None:
                offsets[ext] = offset
    except TruncatedMember as exc:
        # The sample before a truncated member of another sample is whole.
        if key is not None and split_member_name(exc.name)[0] != key:
            yield key, files, offsets
        raise
    if key is not None:
        yield key, files, offsets


class TruncatedMember(tarfile.ReadError):
    """A member whose header was read but whose data the archive cuts short."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def iter_members(fileobj: BinaryIO) -> Iterator[tuple[str, bytes, int | None]]:
    """(name, bytes, offset of the bytes in the stream) of every regular file in a tar stream, in order;
    the offset is None in a compressed stream.

    Uncompressed tars (what img2dataset writes) are parsed here: tarfile builds a TarInfo per member at
    ~30 us each, several times the cost of the rest of reading a sample. Handled: ustar names with
    prefix, GNU long names (`L`), pax `path`/`size` records, base-256 sizes; other member types are
    skipped like tarfile's isfile() skips them. A compressed stream goes to tarfile. A bad header or a
    truncated member raises tarfile.ReadError, also mid-archive (tarfile would stop there silently).
    """
    first = _read_exact(fileobj, BLOCK)
    if first[:2] == b"\x1f\x8b" or first[:3] == b"BZh" or first[:6] == b"\xfd7zXZ\x00":
        for name, data in _tarfile_members(_Prefixed(first, fileobj)):
            yield name, data, None
        return
    if not first:
        raise tarfile.ReadError("empty file")
    header: bytes | None = first
    position = BLOCK  # bytes of the stream consumed so far
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        if header is None:
            header = _read_exact(fileobj, BLOCK)
            position += BLOCK
        if len(header) < BLOCK:
            if not header:
                return  # no end-of-archive blocks: tarfile accepts that too
            raise tarfile.ReadError("unexpected end of data in a tar header")
        if header == _ZERO_BLOCK:
            return
        _check_header(header)
        kind = header[156:157]
        size = int(pax["size"]) if "size" in pax else _number(header[124:136])
        data = _read_exact(fileobj, size)
        padding = -size % BLOCK
        if len(data) < size or (padding and len(_read_exact(fileobj, padding)) < padding):
            name = pax.get("path") or long_name or _ustar_name(header)
            raise TruncatedMember(name, f"unexpected end of data in member {name!r}")
        offset, position = position, position + size + padding
        current, header = header, None
        if kind == b"L":  # GNU long name of the next member
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if kind == b"x":  # pax extended header of the next member
            pax = _pax_records(data)
            continue
        if kind == b"g" or kind == b"K":  # global pax header, GNU long link name: nothing to yield
            continue
        name = pax.get("path") or long_name or _ustar_name(current)
        long_name, pax = None, {}
        if kind in _REGULAR:
            yield name, data, offset


def _read_exact(fileobj: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes; fewer only at the end of the stream (file-likes may return short reads)."""
    data = fileobj.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing:
        more = fileobj.read(missing)
        if not more:
            break
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


_ZERO_BLOCK = bytes(512)
_REGULAR = (b"0", b"\0", b"7")


def _check_header(header: bytes) -> None:
    try:
        stored = _number(header[148:156])
    except ValueError:
        raise tarfile.ReadError("bad tar header (checksum field)") from None
    unsigned = sum(header) - sum(header[148:156]) + 8 * 32
    if stored != unsigned:
        signed = unsigned - 2 * sum(b for b in header[:148] + header[156:] if b > 127)
        if stored != signed:
            raise tarfile.ReadError("bad tar header (checksum mismatch)")


def _number(field: bytes) -> int:
    """A numeric header field: octal ASCII, or base-256 when the first byte has its high bit set."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    """`<length> <key>=<value>\\n` records."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            raise tarfile.ReadError("bad pax header") from None
        if length <= 0:
            raise tarfile.ReadError("bad pax header")
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _tarfile_members(fileobj) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                yield member.name, handle.read() if handle else b""


class _Prefixed(io.RawIOBase):
    """A read-only stream: `prefix`, then the rest of `fileobj` (bytes already read to sniff the format)."""

    def __init__(self, prefix: bytes, fileobj: BinaryIO) -> None:
        self._prefix, self._fileobj = prefix, fileobj

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0:
                data, self._prefix = self._prefix + self._fileobj.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._fileobj.read(size)


BLOCK = 512
RECORD = 20 * BLOCK  # tar archives end padded to whole 10 KiB records, as tarfile writes them


# The fields of a member's header that are the same for every member: mode 644, owner 0 (bytes 100-124),
# mtime 0 (136-148), and from the type flag on (156-512): regular file, no link, "ustar" magic, version 00.
_MODE_OWNER = b"0000644\0" + b"0000000\0" * 2
_MTIME = b"00000000000\0"
_TYPE_TO_END = (b"0" + bytes(100) + b"ustar\x0000").ljust(BLOCK - 156, b"\0")
# The checksum sums every header byte with its own field read as eight spaces.
_FIXED_SUM = sum(_MODE_OWNER) + sum(_MTIME) + 8 * ord(" ") + sum(_TYPE_TO_END)


def ustar_header(name: str, size: int) -> bytes:
    """A USTAR header for a regular file: mode 644, owner 0, mtime 0, so equal input gives equal bytes.

    Written by hand because tarfile spends ~50 us per member (TarInfo copies, generic field encoding);
    shards hold several members per pair. Only the name and size differ between members, so only their
    bytes are summed for the checksum (summing all 512 took ~5 us)."""
    encoded = name.encode("utf-8")
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    size_field = b"%011o\0" % size
    checksum = _FIXED_SUM + sum(encoded) + sum(size_field)
    return b"".join(
        (encoded.ljust(100, b"\0"), _MODE_OWNER, size_field, _MTIME, b"%06o\0 " % checksum, _TYPE_TO_END)
    )


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

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:  # a failed write is not marked as a whole archive
            self.close()
