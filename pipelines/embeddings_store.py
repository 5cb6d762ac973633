"""The image embeddings a clean output keeps beside its shards (`output.embeddings: true`), in the layout
clip-retrieval writes and its users load:

    embeddings/img_emb/img_emb_<shard>.npy            float16 [n, d], one L2-normalized row per kept pair
    embeddings/metadata/metadata_<shard>.parquet      uid (string), row (int64): the .npy's rows, in order

`<shard>` is the shard's name stem ("00003"). `vlcurate dedup --semantic` reads them (pipelines/
semantic_job.py). Paths go through Beam's FileSystems, so gs:// works like a local folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from vlcurate.pipelines.output import atomic_writer, ensure_dir, join, write_bytes_atomic
from vlcurate.schemas.embedding import EMBEDDING_DTYPE, vector_bytes, vector_of
from vlcurate.schemas.errors import ConfigError

EMBEDDINGS_DIR = "embeddings"
_VECTORS, _METADATA = "img_emb", "metadata"
METADATA_SCHEMA = pa.schema([("uid", pa.string()), ("row", pa.int64())])

__all__ = [
    "EMBEDDINGS_DIR",
    "embedding_shards",
    "metadata_path",
    "read_embeddings",
    "read_shard",
    "vector_bytes",
    "vector_of",
    "vectors_path",
    "write_embeddings",
]


def vectors_path(out_dir: str, shard: str) -> str:
    """Where a shard's float16 [n, d] matrix lies (out_dir "" gives the path relative to the output)."""
    return join(out_dir, EMBEDDINGS_DIR, _VECTORS, f"{_VECTORS}_{shard}.npy")


def metadata_path(out_dir: str, shard: str) -> str:
    """Where a shard's (uid, row) index lies."""
    return join(out_dir, EMBEDDINGS_DIR, _METADATA, f"{_METADATA}_{shard}.parquet")


def write_embeddings(out_dir: str, shard: str, uids: Sequence[str], vectors: np.ndarray) -> None:
    """One shard's embeddings: row i of `vectors` ([n, d]) is the image of `uids[i]`."""
    matrix = np.asarray(vectors, dtype=EMBEDDING_DTYPE)
    if matrix.ndim != 2 and matrix.size == 0:
        matrix = matrix.reshape(0, 0)
    if matrix.ndim != 2 or len(matrix) != len(uids):
        raise ValueError(f"write_embeddings: {len(uids)} uids for vectors of shape {matrix.shape}")
    for folder in (_VECTORS, _METADATA):
        ensure_dir(join(out_dir, EMBEDDINGS_DIR, folder))
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    write_bytes_atomic(vectors_path(out_dir, shard), buffer.getvalue())
    table = pa.table({"uid": list(uids), "row": np.arange(len(uids), dtype=np.int64)}, schema=METADATA_SCHEMA)
    with atomic_writer(metadata_path(out_dir, shard)) as fh:
        pq.write_table(table, fh, compression="zstd")


def embedding_shards(out_dir: str) -> list[str]:
    """The shard stems that have embeddings, sorted; a ConfigError when there are none."""
    pattern = join(out_dir, EMBEDDINGS_DIR, _VECTORS, f"{_VECTORS}_*.npy")
    paths = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    prefix = f"{_VECTORS}_"
    shards = sorted(p.rsplit("/", 1)[-1][len(prefix) : -len(".npy")] for p in paths)
    if not shards:
        raise ConfigError(
            f"{out_dir} was written without embeddings (no {EMBEDDINGS_DIR}/{_VECTORS}/*.npy): "
            "rerun clean with output.embeddings: true"
        )
    return shards


def read_shard(out_dir: str, shard: str) -> tuple[list[str], np.ndarray]:
    """(uids, float16 [n, d]) of one shard, its metadata checked against its rows."""
    with FileSystems.open(vectors_path(out_dir, shard)) as fh:
        matrix = np.load(io.BytesIO(fh.read()), allow_pickle=False)
    path = metadata_path(out_dir, shard)
    if not FileSystems.exists(path):
        raise ConfigError(f"{path} is missing: the embeddings of shard {shard} have no uids; rerun clean")
    with FileSystems.open(path) as fh:
        table = pq.read_table(io.BytesIO(fh.read()), columns=["uid", "row"])
    rows = table.column("row").to_numpy()
    if (
        matrix.ndim != 2
        or matrix.dtype != EMBEDDING_DTYPE
        or not np.array_equal(rows, np.arange(len(matrix)))
    ):
        raise ConfigError(
            f"the embeddings of shard {shard} in {out_dir} do not match their metadata "
            f"({len(rows)} rows for an array of shape {matrix.shape}, {matrix.dtype}); rerun clean"
        )
    return table.column("uid").to_pylist(), matrix


def read_embeddings(out_dir: str) -> Iterator[tuple[str, list[str], np.ndarray]]:
    """(shard, uids, float16 [n, d]) of every shard with embeddings, by shard name."""
    for shard in embedding_shards(out_dir):
        uids, matrix = read_shard(out_dir, shard)
        yield shard, uids, matrix


def count_embeddings(out_dir: str, shards: Sequence[str]) -> int:
    """Embeddings the shards hold, from the metadata files' footers (for progress lines)."""
    total = 0
    for shard in shards:
        with FileSystems.open(metadata_path(out_dir, shard)) as fh:
            total += pq.ParquetFile(io.BytesIO(fh.read())).metadata.num_rows
    return total
