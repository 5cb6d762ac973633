"""Image paths named by input rows: plain Python (no Beam), shared by the readers of `clean` and `sft`."""

from __future__ import annotations

import os


def resolve_image_path(ref: str, root: str) -> str:
    """`ref` as a path to open: URLs and absolute paths as they are, relative ones joined to `root`."""
    if "://" in ref or os.path.isabs(ref):
        return ref
    return root.rstrip("/") + "/" + ref if "://" in root else os.path.join(root, ref)
