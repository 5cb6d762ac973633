"""Image paths named by input rows, and reading the local files they name: plain Python (no Beam), shared
by the readers of `clean` and `sft`.

Rows are data, and hostile data names anything: `/dev/zero` (read until memory runs out), a FIFO (open()
blocks forever), `/etc/shadow`, `../../` or a symlink out of the image folder. Every such row becomes a
reject with a reason; nothing here blocks without bound or reads more than `max_bytes`:

- `outside_root`: a path must lie inside the source's image root (`image_root`, else the input file's
  folder) once symlinks and `..` are resolved (`image_outside_root`), unless the source sets
  `allow_outside_root: true`. URLs (gs://, s3://, azfs://) have no symlinks: a URL must be under the root
  URL with the same scheme and bucket, `..` segments collapsed; a URL against a local root, or a local path
  against a URL root, is outside.
- `read_image_file`: stat first; devices, FIFOs, sockets and directories are rejected without being opened
  (`image_not_a_file`: opening a device can have effects of its own). A regular file is opened
  non-blocking, checked again on the open descriptor (it may have been swapped since the stat), and read
  up to `max_bytes` + 1 bytes (`image_too_large`, from the size stat gives and again while reading: a
  file can grow, and /proc files report size 0).

A filesystem that hangs (a dead network mount) still hangs stat and read; that is no per-row trouble and
the input files themselves would hang the same way.
"""

from __future__ import annotations

import functools
import os
import posixpath
import stat
from typing import BinaryIO

# 64 MiB: about ten times the largest JPEG a 50-megapixel camera writes and hundreds of times a typical web
# image (Qwen-VL trains at 448 px), yet small enough that a worker holding a few such images at once stays
# far from its memory limit. Uncompressed BMP/TIFF scans above it are not training data.
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024

_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CHUNK = 1 << 20
_NOT_FILES = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


class ImageRejected(Exception):
    """An image file the row names cannot be used: `reason` is the reject reason, the message its detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def resolve_image_path(ref: str, root: str) -> str:
    """`ref` as a path to open: URLs and absolute paths as they are, relative ones joined to `root`."""
    if "://" in ref or os.path.isabs(ref):
        return ref
    return root.rstrip("/") + "/" + ref if "://" in root else os.path.join(root, ref)


def outside_root(path: str, root: str) -> str | None:
    """Why `path` lies outside `root` (the reject's detail), or None when it lies inside. http(s) URLs are
    never fetched (the loader rejects them as `image_missing`), so they are not judged here."""
    if path.startswith(("http://", "https://")):
        return None
    fix = "set image_root to a folder that holds it, or allow_outside_root: true"
    if "://" in path or "://" in root:
        inside = "://" in path and "://" in root and _url_inside(path, root)
        where = path
    else:
        try:
            real_root, where = _real_folder(root), _realpath(path)
        except ValueError:  # a NUL byte: no such file, which reading it reports (`image_missing`)
            return None
        inside = where == real_root or where.startswith(real_root.rstrip(os.sep) + os.sep)
    if inside:
        return None
    shown = "" if where == path else f" (resolves to {where})"
    return f"{path}{shown} is outside the image root {root}; {fix}"[:500]


def _realpath(path: str) -> str:
    """os.path.realpath(path), with the folder's resolved path cached: realpath walks every component in
    Python (~30 us a path), while the folders of a source's images are few. Equal to realpath since the
    last component is resolved in the resolved folder; a folder swapped for a symlink while the job runs
    is not seen (the data, not a concurrent attacker on the machine, is what this guards against)."""
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        return os.path.realpath(path)
    candidate = os.path.join(
        _real_folder(head if os.path.isabs(head) else os.path.join(os.getcwd(), head)), tail
    )
    try:
        if not stat.S_ISLNK(os.lstat(candidate).st_mode):
            return candidate
    except OSError:  # nothing there (or not a folder above it): nothing to follow, as realpath does
        return candidate
    return os.path.realpath(candidate)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _url_inside(url: str, root: str) -> bool:
    scheme, _, rest = url.partition("://")
    root_scheme, _, root_rest = root.partition("://")
    if scheme != root_scheme:
        return False
    rest, root_rest = posixpath.normpath("/" + rest), posixpath.normpath("/" + root_rest)
    return rest == root_rest or rest.startswith(root_rest.rstrip("/") + "/")


def read_image_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the local regular file `path`, at most `max_bytes` of them; raises ImageRejected
    (`image_missing`, `image_not_a_file`, `image_too_large`). Special files are never opened."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ImageRejected("image_missing", _error(exc)) from None
    _check_file(path, info, max_bytes)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise ImageRejected("image_missing", _error(exc)) from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        info = os.fstat(fd)  # what was opened: the path may name something else than at the stat
        _check_file(path, info, max_bytes)
        data = read_at_most(fh, max_bytes, first=info.st_size + 1)
    if data is None:
        raise ImageRejected("image_too_large", too_large(path, f"more than {max_bytes:,}", max_bytes))
    return data


def _check_file(path: str, info: os.stat_result, max_bytes: int) -> None:
    kind = next((name for test, name in _NOT_FILES if test(info.st_mode)), None)
    if kind is None and not stat.S_ISREG(info.st_mode):
        kind = "special file"
    if kind is not None:
        raise ImageRejected("image_not_a_file", f"{path} is a {kind}, not a regular file; it was not read")
    if info.st_size > max_bytes:
        raise ImageRejected("image_too_large", too_large(path, f"{info.st_size:,}", max_bytes))


def too_large(where: str, size: str, max_bytes: int) -> str:
    """The detail of an `image_too_large` reject."""
    return f"{where}: {size} bytes, over the source's max_image_bytes ({max_bytes:,})"[:500]


def read_at_most(fh: BinaryIO, max_bytes: int, first: int = _CHUNK) -> bytes | None:
    """Everything `fh` holds, or None as soon as it holds more than `max_bytes` (never reading more than
    `max_bytes` + 1 bytes). `first`: the size of the first read (the expected size + 1 reads a file whole in
    one call)."""
    chunks: list[bytes] = []
    total, want = 0, min(first, max_bytes + 1)
    while True:
        chunk = fh.read(want)
        if not chunk:
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            return None
        want = min(_CHUNK, max_bytes + 1 - total)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
