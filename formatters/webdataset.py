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


class TarShardWriter:
    """Streams samples into a tar on any writable binary file object (local or gs:// stream)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def add(self, key: str, files: dict[str, bytes]) -> None:
        for ext, data in files.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> TarShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
