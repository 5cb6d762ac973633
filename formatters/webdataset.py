"""WebDataset tar shards as img2dataset writes them: `<key>.jpg|png|webp`, `<key>.txt`, `<key>.json`.

Members of one sample are consecutive and share the key (the member name up to the first '.' of its
basename). Writing is deterministic: fixed mtime, owner and mode, so equal input gives equal bytes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from vlcurate.schemas.record import IMAGE_EXTENSIONS  # noqa: F401  (re-exported for readers)
from vlcurate.schemas.rows import NotAFile

EXTENSION_OF_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/000012.jpg' -> ('dir/000012', 'jpg'); 'a.seg.json' -> ('a', 'seg.json')."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_samples(fileobj: BinaryIO) -> Iterator[tuple[str, dict[str, bytes | NotAFile], dict[str, int]]]:
    """Yields (key, {extension: bytes}, {extension: offset of the member's data in the stream}) in tar
    order; the offsets are empty for a compressed tar, where they point nowhere in the file. A member that
    is no regular file (a link, a device, a directory named like a member) is a NotAFile in place of its
    bytes, so a sample made of one is still seen. Raises tarfile.TarError on a broken archive after
    yielding every sample before the break (the one the broken member belongs to, when that is certain,
    is incomplete and not yielded)."""
    key: str | None = None
    files: dict[str, bytes | NotAFile] = {}
    offsets: dict[str, int] = {}
    try:
        for name, data, offset in _entries(fileobj):
            member_key, ext = split_member_name(name)
            if member_key != key:
                if key is not None:
                    yield key, files, offsets
                key, files, offsets = member_key, {}, {}
            files[ext] = data
            if offset is not None:
                offsets[ext] = offset
    except BrokenMember as exc:
        # The sample before the break is whole unless the broken member certainly belongs to it.
        if key is not None and (exc.name is None or split_member_name(exc.name)[0] != key):
            yield key, files, offsets
        raise
    if key is not None:
        yield key, files, offsets


class BrokenMember(tarfile.ReadError):
    """A member whose header is bad or cut short, or whose data the archive cuts short; `name`: the
    member's name, None where it could not be read whole."""

    def __init__(self, name: str | None, message: str) -> None:
        super().__init__(message)
        self.name = name


def iter_members(fileobj: BinaryIO) -> Iterator[tuple[str, bytes, int | None]]:
    """(name, bytes, offset of the bytes in the stream) of every regular file in a tar stream, in order;
    the offset is None in a compressed stream. Raises tarfile.ReadError where the archive breaks, after
    the members before the break."""
    for name, data, offset in _entries(fileobj):
        if isinstance(data, bytes):
            yield name, data, offset


def _entries(fileobj: BinaryIO) -> Iterator[tuple[str, bytes | NotAFile, int | None]]:
    """(name, bytes or NotAFile, offset of the bytes in the stream) of every member with a name in a tar
    stream, in order: regular files, and members that are none (see below).

    Tars are parsed here: tarfile builds a TarInfo per member at ~30 us each, several times the cost of
    the rest of reading a sample, and it stops silently at a bad header after the first. Handled: ustar
    names with prefix, GNU long names (`L`), pax `path`/`size` records, base-256 sizes, gzip, bzip2 and xz
    streams (decompressed here; offsets are then None). Links, devices, FIFOs, GNU sparse and other
    non-file members come as NotAFile; directories too where their name looks like a sample member
    (`000001.jpg/`), other directories are folders and are skipped. A bad or cut header, a cut member or
    a corrupt compressed stream raises BrokenMember (a tarfile.ReadError), also mid-archive.
    """
    first = _read_exact(fileobj, BLOCK)
    compressed = _decompressor(first, fileobj)
    if compressed is not None:
        fileobj = compressed
        first = _read_guarded(fileobj, BLOCK, None)
    if not first:
        raise tarfile.ReadError("empty file")
    header: bytes | None = first
    position = BLOCK  # bytes of the stream consumed so far
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        if header is None:
            header = _read_guarded(fileobj, BLOCK, None)
            position += BLOCK
        if len(header) < BLOCK:
            if not header:
                return  # no end-of-archive blocks: tarfile accepts that too
            name = pax.get("path") or long_name or _cut_ustar_name(header)
            raise BrokenMember(name, "unexpected end of data in a tar header")
        if header == _ZERO_BLOCK:
            return
        name = pax.get("path") or long_name or _ustar_name(header)
        _check_header(header, name)
        kind = header[156:157]
        try:
            size = int(pax["size"]) if "size" in pax else _number(header[124:136])
        except ValueError:
            raise BrokenMember(name, f"bad tar header of {name!r} (size field)") from None
        data = _read_guarded(fileobj, size, name)
        padding = -size % BLOCK
        if len(data) < size or (padding and len(_read_guarded(fileobj, padding, name)) < padding):
            raise BrokenMember(name, f"unexpected end of data in member {name!r}")
        offset, position = position, position + size + padding
        current, header = header, None
        if kind == b"L":  # GNU long name of the next member
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if kind == b"x":  # pax extended header of the next member
            pax = _pax_records(data, name)
            continue
        if kind in _METADATA:
            continue
        long_name, pax = None, {}
        if kind in _REGULAR:
            yield name, data, None if compressed is not None else offset
            continue
        what = _NOT_FILES.get(kind, f"member of type {kind.decode('latin-1')!r}")
        if kind in _DIRECTORIES:
            name = name.rstrip("/")
            if not split_member_name(name)[1]:
                continue  # a folder, not a member of a sample
        target = current[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        yield name, NotAFile(what, target if kind in _LINKS else ""), None


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
_METADATA = (b"g", b"K", b"V")  # global pax header, GNU long link name, volume label: no member
_LINKS = (b"1", b"2")
_DIRECTORIES = (b"5", b"D")
_NOT_FILES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
    b"D": "directory",
    b"S": "GNU sparse file",
}


def _read_guarded(fileobj: BinaryIO, size: int, name: str | None) -> bytes:
    """_read_exact, with a corrupt compressed stream raising BrokenMember (`name`: the member being
    read, None for a header)."""
    try:
        return _read_exact(fileobj, size)
    except _CorruptStream as exc:
        raise BrokenMember(name, str(exc)) from None


def _check_header(header: bytes, name: str) -> None:
    try:
        stored = _number(header[148:156])
    except ValueError:
        raise BrokenMember(name, "bad tar header (checksum field)") from None
    unsigned = sum(header) - sum(header[148:156]) + 8 * 32
    if stored != unsigned:
        signed = unsigned - 2 * sum(b for b in header[:148] + header[156:] if b > 127)
        if stored != signed:
            raise BrokenMember(name, "bad tar header (checksum mismatch)")


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


def _cut_ustar_name(header: bytes) -> str | None:
    """The name in a header the archive cuts short, or None where the cut falls inside it."""
    if b"\0" not in header[:100] and len(header) < 100:
        return None
    if header[257:262] == b"ustar" and b"\0" not in header[345:500] and len(header) < 500:
        return None  # a prefix that may go on
    return _ustar_name(header)


def _pax_records(data: bytes, name: str | None = None) -> dict[str, str]:
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
            raise BrokenMember(name, "bad pax header") from None
        if length <= 0:
            raise BrokenMember(name, "bad pax header")
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


class _CorruptStream(Exception):
    """A compressed stream that does not decompress (corrupt, or cut short)."""


def _decompressor(first: bytes, fileobj: BinaryIO) -> BinaryIO | None:
    """A stream of the decompressed tar when `first` (the first bytes read) starts a gzip, bzip2 or xz
    stream, else None."""
    for magic, opener in _DECOMPRESSORS:
        if first.startswith(magic):
            return _Guarded(opener(_Prefixed(first, fileobj)))
    return None


_DECOMPRESSORS = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)


class _Guarded(io.RawIOBase):
    """A decompressing stream whose every failure (a cut stream's EOFError, zlib.error, LZMAError, a bad
    header's OSError) is a _CorruptStream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise _CorruptStream(f"compressed stream: {type(exc).__name__}: {exc}") from None


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
