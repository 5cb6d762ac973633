"""Near-duplicate dedup's cost (filters/near_dedup.py, pipelines/near_groups.py): the hash per image, the
band search without Beam at 100k and 1M hashes, and the NearDuplicatePairs transform in-process.

    python bench/dedup.py [--images 500] [--sizes 100000 1000000] [--radii 8 4 16 35] [--beam-pairs 100000]
                          [--beam-buckets 1 8] [--skew-sizes 2500 5000 10000] [--all-radii] [--seed 0] [--quick]

1. hash: `decode_draft` (decode_check's draft decode + the near-dedup hash, what the pipeline runs per
   image) against the same call without the hash (`image_hash=False`: the draft decode alone), and the
   hash function alone on already decoded drafts (phash64 beside it), on --images JPEGs 512x384 quality 90
   of synthetic content (smooth colour fields, gradients, noise; `_image`). Best of 5 interleaved rounds.
2. search: N hashes of NEAR_DUP_HASH_BITS uniform random bits (phash64's 64 when near_dup_hash is absent),
   5% of them planted copies of a random original with 0..radius bits flipped (radii: NearDedup's default,
   4, 16 and 35, the radius bench/image_hash.py chose for near_dup_hash; above 200k pairs the default only, unless --all-radii). Timed as the transform
   does it, without Beam: every pair's band keys (`band_keys`), routing each (key, entry) to its shuffle
   bucket (`bucket_of(key_digest(key))`, buckets_for_input of N images of 50 KB), grouping a bucket's
   entries by band key, and `losers_in_bucket` on every group of two or more. Checked: the losers are
   exactly the planted copies, each beaten by its original. Memory: tracemalloc's peak while
   pipelines/near_groups.py `_compare` decides the largest shuffle bucket (what one worker holds) and
   while `losers_in_bucket` decides the largest band group, against the run's entries.
3. skew: the same search on hashes shaped like real ones. near_dup_hash's colour and thermometer bits
   (bits 144-463) take few distinct values; bands made of them alone (contiguous bands, before 2026-12-07's
   change) put one band value on most pairs. Bands now take every (radius + 1)-th bit, mixing those bits
   with the well-spread luma bits; this part measures the skew that remains. Per band: distinct values and the largest share among the hashes of
   part 1's images; then hashes with uniform random luma bits (0-143) and the other bits of a random one
   of those images, at --skew-sizes: the largest band group and what deciding it costs (time, peak).
4. beam: NearDuplicatePairs (FnApiRunner in-process, pipeline_options()) on --beam-pairs Pairs carrying only
   uid, source, caption and meta[HASH_KEY] (part 2's hashes), at each --beam-buckets, each in a fresh
   process: pairs/s and peak RSS (VmHWM; ru_maxrss too, which a child inherits from its parent's peak);
   baseline in the same run: the same pairs through a
   pass-through pipeline.

Prints tables and writes bench/results/dedup.json.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
from PIL import Image, ImageOps
from report import write_results

from vlcurate.filters import image_hash
from vlcurate.filters.image_probe import decode_draft
from vlcurate.filters.near_dedup import (
    HASH_KEY,
    NearDedup,
    band_keys,
    key_digest,
    losers_in_bucket,
)
from vlcurate.pipelines.group_steps import bucket_of
from vlcurate.pipelines.write import buckets_for_input

IMAGE_BYTES = 50_000  # assumed bytes per input image when choosing the shuffle bucket count (write.py)
COPY_SHARE = 0.05


def hash_fn():
    """(name, function returning bytes, bits) of the hash near-dedup uses."""
    if hasattr(image_hash, "near_dup_hash"):
        return image_hash.NEAR_DUP_HASH_NAME, image_hash.near_dup_hash, image_hash.NEAR_DUP_HASH_BITS
    return "phash64", lambda image: image_hash.phash64(image).to_bytes(8, "big"), 64


# ---------------------------------------------------------------------------------------------- 1. hash


def _image(rng: np.random.Generator, width: int = 512, height: int = 384) -> Image.Image:
    """A synthetic photo-like RGB image: a smooth random colour field (low-resolution noise upscaled) mixed
    around a random mean colour, a linear gradient, sometimes a few rectangles, and fine noise."""
    side = int(rng.integers(3, 40))
    coarse = rng.normal(0, 1, (max(2, side * height // width), side, 3))
    field = np.asarray(
        Image.fromarray(((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    )
    field = (field - 127.5) @ rng.normal(0, 1, (3, 3)) * rng.uniform(0.05, 0.4)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width]
    ramp = (np.cos(angle) * x / width + np.sin(angle) * y / height)[..., None] * rng.uniform(-90, 90, 3)
    pixels = rng.uniform(20, 235, 3) + field + ramp
    for _ in range(int(rng.integers(0, 5))):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        pixels[y0 : y0 + int(rng.integers(10, 200)), x0 : x0 + int(rng.integers(10, 200))] = rng.uniform(
            0, 255, 3
        )
    pixels += rng.normal(0, rng.uniform(0, 12), pixels.shape)
    if rng.random() < 0.1:
        pixels[:] = pixels.mean(axis=2, keepdims=True)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_jpegs(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        _image(rng).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _draft(data: bytes) -> Image.Image:
    """The image decode_draft hashes: the JPEG at 1/8 scale (64 px at least), EXIF-transposed."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (64, 64))
        image.load()
        return ImageOps.exif_transpose(image)


def hash_cost(jpegs: list[bytes], rounds: int = 5) -> tuple[dict, list[bytes]]:
    """µs per image, best and median of `rounds` interleaved rounds; returns the hashes too."""
    name, fn, bits = hash_fn()
    drafts = [_draft(data) for data in jpegs]
    hashes = [fn(image) for image in drafts]
    assert [decode_draft(data) for data in jpegs[:20]] == [h.hex() for h in hashes[:20]]
    phash = lambda image: image_hash.phash64(image).to_bytes(8, "big")  # noqa: E731
    cases = {
        "decode_draft (draft decode + hash)": lambda: [decode_draft(data) for data in jpegs],
        "draft decode alone (image_hash=False)": lambda: [
            decode_draft(data, image_hash=False) for data in jpegs
        ],
        f"{name} alone on the decoded draft": lambda: [fn(image) for image in drafts],
        "phash64 alone on the decoded draft": lambda: [phash(image) for image in drafts],
    }
    times: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            start = time.perf_counter()
            run()
            times[case].append(1e6 * (time.perf_counter() - start) / len(jpegs))
    rows = [{"case": case, "best_us": min(t), "median_us": statistics.median(t)} for case, t in times.items()]
    draft_px = statistics.median(image.width * image.height for image in drafts)
    return {
        "hash": name,
        "bits": bits,
        "images": len(jpegs),
        "image_size": "512x384",
        "jpeg_quality": 90,
        "mean_jpeg_bytes": round(statistics.mean(len(d) for d in jpegs)),
        "median_draft_pixels": draft_px,
        "rounds": rounds,
        "rows": rows,
    }, hashes


# ---------------------------------------------------------------------------------------------- 2. search


def planted_hashes(n: int, bits: int, radius: int, seed: int) -> tuple[list[str], int, np.ndarray]:
    """n hashes as hex: originals first (uniform random bits), then 5% copies of random originals with
    0..radius bits flipped. Returns (hexes, originals, each copy's original)."""
    rng = np.random.default_rng(seed)
    copies = int(n * COPY_SHARE)
    originals = n - copies
    rows = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    owner = rng.integers(0, originals, size=copies)
    rows[originals:] = rows[owner]
    flat = np.unpackbits(rows[originals:], axis=1)
    for j, k in enumerate(rng.integers(0, radius + 1, size=copies)):
        flat[j, rng.choice(bits, size=int(k), replace=False)] ^= 1
    rows[originals:] = np.packbits(flat, axis=1)
    return [row.tobytes().hex() for row in rows], originals, owner


def uid_of(i: int, originals: int) -> str:
    """Originals rank before every copy (uids "o..." < "p..."), so each copy's winner is its original."""
    return f"s/o{i:08d}" if i < originals else f"s/p{i - originals:08d}"


def search(hexes: list[str], uids: list[str], radius: int, buckets: int) -> dict:
    """The band search as near_groups.py runs it, one shuffle bucket after another; timed per phase."""
    entries = [((1, uid), h) for uid, h in zip(uids, hexes)]
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    keys = [band_keys(h, radius) for h in hexes]
    t_keys = time.perf_counter() - start

    start = time.perf_counter()
    shuffle: list[list] = [[] for _ in range(buckets)]
    for entry, pair_keys in zip(entries, keys):
        for key in pair_keys:
            shuffle[bucket_of(key_digest(key), buckets)].append((key, entry))
    t_route = time.perf_counter() - start
    del keys
    # A worker holds one shuffle bucket; this harness holds the whole run's. Frozen, the run's objects stay
    # out of the cyclic collector's full passes, which would otherwise scan them for every bucket.
    gc.collect()
    gc.freeze()

    t_group = t_decide = 0.0
    winner_of: dict[str, tuple] = {}
    sizes = [len(b) for b in shuffle]
    largest_group: list = []
    groups_compared = marks = 0
    for index in range(buckets):
        start = time.perf_counter()
        by_key: dict[str, list] = {}
        for key, entry in shuffle[index]:
            by_key.setdefault(key, []).append(entry)
        t_group += time.perf_counter() - start
        start = time.perf_counter()
        for group in by_key.values():
            if len(group) > 1:
                groups_compared += 1
                for uid, winner in losers_in_bucket(group, radius):
                    marks += 1
                    if uid not in winner_of or winner < winner_of[uid]:
                        winner_of[uid] = winner
                if len(group) > len(largest_group):
                    largest_group = group
        t_decide += time.perf_counter() - start
        if index != int(np.argmax(sizes)):
            shuffle[index] = []
    gc.unfreeze()
    biggest = int(np.argmax(sizes))
    return {
        "marks": marks,
        "times": {"band_keys_s": t_keys, "route_s": t_route, "group_s": t_group, "decide_s": t_decide},
        "winner_of": winner_of,
        "shuffle_bucket_sizes": sizes,
        "largest_shuffle_bucket": (biggest, shuffle[biggest]),
        "largest_group": largest_group,
        "groups_compared": groups_compared,
    }


def traced_peak(fn) -> tuple[float, object]:
    """(tracemalloc peak in MB above the start, fn's result)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 2**20, result


def routed_bytes_per_entry(hexes: list[str], uids: list[str], radius: int) -> float:
    """tracemalloc's bytes per routed (key, entry) of 10k pairs: what the run's shuffle holds per entry."""
    sample = list(zip(uids[:10_000], hexes[:10_000]))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    routed = [(key, ((1, uid), h)) for uid, h in sample for key in band_keys(h, radius)]
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return size / len(routed)


def search_row(n: int, bits: int, radius: int, seed: int) -> dict:
    from vlcurate.pipelines.near_groups import _compare

    hexes, originals, owner = planted_hashes(n, bits, radius, seed)
    uids = [uid_of(i, originals) for i in range(n)]
    buckets = buckets_for_input(n * IMAGE_BYTES)
    result = search(hexes, uids, radius, buckets)
    winner_of = result["winner_of"]
    copy_uids = set(uids[originals:])
    found = sum(uid in winner_of for uid in copy_uids)
    right_winner = sum(
        winner_of.get(uids[originals + j], (None, None))[-1] == uids[o] for j, o in enumerate(owner)
    )
    false_losers = len(winner_of) - found
    times = result["times"]
    total = sum(times.values())
    index, bucket = result["largest_shuffle_bucket"]
    step = NearDedup(radius=radius)
    compare_mb, _ = traced_peak(lambda: list(_compare((index, [bucket]), step, buckets)))
    group = result["largest_group"]
    group_mb, _ = traced_peak(lambda: list(losers_in_bucket(group, radius)))
    per_entry = routed_bytes_per_entry(hexes, uids, radius)
    entries = n * (radius + 1)
    return {
        "pairs": n,
        "bits": bits,
        "radius": radius,
        "bands": radius + 1,
        "planted_copies": len(copy_uids),
        "copies_found": found,
        "copies_with_their_original_as_winner": right_winner,
        "other_losers": false_losers,
        "check_ok": found == len(copy_uids) and right_winner == len(copy_uids) and false_losers == 0,
        **{k: round(v, 3) for k, v in times.items()},
        "total_s": round(total, 3),
        "pairs_per_s": round(n / total),
        "shuffle_buckets": buckets,
        "run_entries": entries,
        "run_entries_mb_est": round(entries * per_entry / 2**20, 1),
        "bytes_per_routed_entry": round(per_entry, 1),
        "largest_shuffle_bucket_entries": len(bucket),
        "decide_largest_shuffle_bucket_peak_mb": round(compare_mb, 2),
        "groups_compared": result["groups_compared"],
        "loser_marks": result["marks"],  # (loser, winner) yielded by all groups: a pair found in k bands, k
        "largest_band_group_entries": len(group),
        "decide_largest_band_group_peak_mb": round(group_mb, 3),
    }


# ---------------------------------------------------------------------------------------------- 3. skew


def band_skew(hashes: list[bytes], radius: int) -> list[dict]:
    """Per band of `radius`: distinct band values among `hashes` and the largest share of one value."""
    bits = len(hashes[0]) * 8
    rows = []
    del bits  # every band takes every (radius + 1)-th bit (band_keys)
    for band in range(radius + 1):
        values = [band_keys(h.hex(), radius)[band] for h in hashes]
        counts: dict[str, int] = {}
        for value in values:
            counts[value] = counts.get(value, 0) + 1
        rows.append(
            {
                "band": band,
                "bits": f"{band}, {band + radius + 1}, ... (every {radius + 1}th)",
                "distinct_values": len(counts),
                "largest_share": max(counts.values()) / len(hashes),
            }
        )
    return rows


def shaped_hashes(real: list[bytes], n: int, luma_bits: int, seed: int) -> list[str]:
    """n hashes: uniform random bits 0..luma_bits-1, the rest of a random one of the `real` hashes."""
    rng = np.random.default_rng(seed)
    rows = np.frombuffer(b"".join(real), dtype=np.uint8).reshape(len(real), -1)
    flat = np.unpackbits(rows[rng.integers(0, len(real), size=n)], axis=1)
    flat[:, :luma_bits] = rng.integers(0, 2, size=(n, luma_bits), dtype=np.uint8)
    return [row.tobytes().hex() for row in np.packbits(flat, axis=1)]


def skew_row(real: list[bytes], n: int, radius: int, seed: int) -> dict:
    hexes = shaped_hashes(real, n, 144, seed)
    groups: dict[str, list] = {}
    for i, h in enumerate(hexes):
        for key in band_keys(h, radius):
            groups.setdefault(key, []).append(((1, f"s/{i:08d}"), h))
    key, group = max(groups.items(), key=lambda item: len(item[1]))
    distinct = len({h for _, h in group})
    start = time.perf_counter()
    losers = sum(1 for _ in losers_in_bucket(group, radius))
    seconds = time.perf_counter() - start
    peak, _ = traced_peak(lambda: sum(1 for _ in losers_in_bucket(group, radius)))
    at_1m = 1_000_000 * len(group) / n  # the group grows with the run: a band value's share stays
    return {
        "pairs": n,
        "radius": radius,
        "extrapolated_to_1m": {
            "group_entries": round(at_1m),
            "decide_peak_gb": round(peak * at_1m / len(group) / 1024, 1),  # one block: _BLOCK x distinct
            "decide_hours": round(seconds * (at_1m / len(group)) ** 2 / 3600, 1),  # all distinct pairs
        },
        "largest_band_group": key.split(":")[0],
        "largest_group_entries": len(group),
        "largest_group_share": round(len(group) / n, 3),
        "distinct_hashes_in_group": distinct,
        "decide_group_s": round(seconds, 3),
        "decide_group_peak_mb": round(peak, 1),
        "losers_in_group": losers,
    }


# ---------------------------------------------------------------------------------------------- 4. beam


def _status_mb(field: str) -> float:
    """A /proc/self/status field in MB (VmHWM: this process's peak RSS, reset at exec; ru_maxrss is not:
    a child started by a big parent reports the parent's peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def beam_child(n: int, buckets: int, mode: str, seed: int) -> dict:
    """Runs in a fresh process: the transform (or the pass-through baseline) on n Pairs."""
    import apache_beam as beam
    import pyarrow.parquet as pq

    from vlcurate.pipelines.near_groups import NearDuplicatePairs
    from vlcurate.pipelines.options import pipeline_options
    from vlcurate.schemas.batch import BATCH_SIZE, PairBatch
    from vlcurate.schemas.record import Pair

    step = NearDedup()
    hexes, originals, _ = planted_hashes(n, hash_fn()[2], step.radius, seed)
    pairs = [
        Pair(uid=uid_of(i, originals), source="s", caption=f"caption {i}", meta={HASH_KEY: h})
        for i, h in enumerate(hexes)
    ]
    batches = [PairBatch(pairs[i : i + BATCH_SIZE]) for i in range(0, n, BATCH_SIZE)]
    del pairs, hexes
    gc.collect()
    rss_before = _status_mb("VmRSS")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        with beam.Pipeline(options=pipeline_options()) as p:
            source = p | beam.Create(batches, reshuffle=False)
            if mode == "transform":
                grouped = source | NearDuplicatePairs({"s": step}, buckets, out)
                kept = grouped["kept"]
            else:
                kept = source | "Pass" >> beam.Map(lambda batch: batch)
            (
                kept
                | beam.Map(len)
                | beam.CombineGlobally(sum)
                | beam.Map(str)
                | beam.io.WriteToText(f"{out}/kept", shard_name_template="")
            )
        seconds = time.perf_counter() - start
        with open(f"{out}/kept") as fh:
            kept_count = int(fh.read())
        files = (
            [os.path.join(out, "rejects", f) for f in sorted(os.listdir(os.path.join(out, "rejects")))]
            if mode == "transform"
            else []
        )
        rejected = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {
        "mode": mode,
        "pairs": n,
        "buckets": buckets if mode == "transform" else None,
        "radius": step.radius,
        "seconds": round(seconds, 2),
        "pairs_per_s": round(n / seconds),
        "kept": kept_count,
        "rejected": rejected,
        "reject_files": len(files),
        "expected_rejected": n - originals,
        "rss_before_mb": round(rss_before),
        "peak_rss_mb": round(_status_mb("VmHWM")),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def beam_row(n: int, buckets: int, mode: str, seed: int) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--beam-child",
        mode,
        str(n),
        str(buckets),
        str(seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"beam child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--radii", type=int, nargs="+", default=None, help="default: NearDedup's, 4, 16, 35")
    parser.add_argument("--beam-pairs", type=int, default=100_000)
    parser.add_argument("--beam-buckets", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skew-sizes", type=int, nargs="+", default=[2_500, 5_000, 10_000])
    parser.add_argument("--all-radii", action="store_true", help="every radius at sizes above 200k too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument("--beam-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.beam_child:
        mode, n, buckets, seed = args.beam_child
        print(json.dumps(beam_child(int(n), int(buckets), mode, int(seed))))
        return 0
    if args.quick:
        args.images, args.sizes, args.beam_pairs, args.skew_sizes = 40, [5_000, 20_000], 5_000, [1_000, 2_000]
    default_radius = NearDedup().radius
    radii = args.radii or list(dict.fromkeys([default_radius, 4, 16, 35]))
    name, _, bits = hash_fn()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} (shared dev machine)"
    started = time.perf_counter()
    print(f"{machine}; hash {name} ({bits} bits); NearDedup default radius {default_radius}")

    jpegs = make_jpegs(args.images, args.seed)
    cost, real_hashes = hash_cost(jpegs)
    print(
        f"\n1. hash cost per image: {cost['images']} JPEGs 512x384 q90 ({cost['mean_jpeg_bytes']} bytes mean), draft "
        f"{cost['median_draft_pixels']} px; best / median of {cost['rounds']} rounds"
    )
    for row in cost["rows"]:
        print(f"  {row['case']:<44} {row['best_us']:>8.1f} us  {row['median_us']:>8.1f} us")

    print("\n2. band search without Beam (uniform random hashes, 5% planted copies within the radius)")
    print(
        "  pairs      r  keys s  route s  group s  decide s  pairs/s  check  buckets  run entries (MB est)  "
        "largest bucket (peak MB)  largest group (peak MB)  marks"
    )
    searches = []
    for n in args.sizes:
        for radius in radii if n <= 200_000 or args.all_radii else radii[:1]:
            row = search_row(n, bits, radius, args.seed)
            searches.append(row)
            gc.collect()
            print(
                f"  {n:>9,} {radius:>2}  {row['band_keys_s']:>6.2f}  {row['route_s']:>7.2f}  {row['group_s']:>7.2f}  "
                f"{row['decide_s']:>8.2f}  {row['pairs_per_s']:>7,}  {'ok' if row['check_ok'] else 'FAIL':>5}  "
                f"{row['shuffle_buckets']:>7}  {row['run_entries']:>11,} ({row['run_entries_mb_est']:>7,.0f})  "
                f"{row['largest_shuffle_bucket_entries']:>14,} ({row['decide_largest_shuffle_bucket_peak_mb']:>6.1f})  "
                f"{row['largest_band_group_entries']:>13,} ({row['decide_largest_band_group_peak_mb']:>6.3f})  "
                f"{row['loser_marks']:>7,}"
            )
            if not row["check_ok"]:
                print(
                    f"    check: {row['copies_found']} of {row['planted_copies']} copies found, "
                    f"{row['copies_with_their_original_as_winner']} beaten by their original, "
                    f"{row['other_losers']} other losers"
                )

    skew = {
        "radius": default_radius,
        "bands": band_skew(real_hashes, default_radius) if bits > 64 else [],
        "by_radius": [],
        "rows": [],
    }
    for radius in radii:
        bands = band_skew(real_hashes, radius)
        worst = max(bands, key=lambda b: b["largest_share"])
        skew["by_radius"].append(
            {
                "radius": radius,
                "bands": len(bands),
                "bands_with_a_value_of_1pct_or_more": sum(b["largest_share"] >= 0.01 for b in bands),
                "worst_band": worst["band"],
                "worst_band_bits": worst["bits"],
                "worst_band_distinct_values": worst["distinct_values"],
                "worst_band_largest_share": worst["largest_share"],
            }
        )
    if bits > 64:
        print(f"\n3. band skew of real hashes ({len(real_hashes)} images of part 1, radius {default_radius})")
        print("  band  bits      distinct values  largest share")
        for row in skew["bands"]:
            print(
                f"  {row['band']:>4}  {row['bits']:<9} {row['distinct_values']:>15}  {row['largest_share']:>13.1%}"
            )
        print("  per radius: bands, bands where one value holds >= 1% of the images, the worst band")
        for row in skew["by_radius"]:
            print(
                f"    r={row['radius']:<3} {row['bands']:>3} bands, {row['bands_with_a_value_of_1pct_or_more']:>2} "
                f"skewed; worst band {row['worst_band']} (bits {row['worst_band_bits']}): "
                f"{row['worst_band_distinct_values']} values, largest share {row['worst_band_largest_share']:.1%}"
            )
        print("  shaped hashes (random luma bits, the rest of a real hash): the largest band group decided")
        print("    pairs  band  entries  share  distinct  decide s  peak MB")
        for n in args.skew_sizes:
            row = skew_row(real_hashes, n, default_radius, args.seed)
            skew["rows"].append(row)
            print(
                f"  {n:>7,}  {row['largest_band_group']:>4}  {row['largest_group_entries']:>7,}  "
                f"{row['largest_group_share']:>5.1%}  {row['distinct_hashes_in_group']:>8,}  "
                f"{row['decide_group_s']:>8.2f}  {row['decide_group_peak_mb']:>7.1f}"
            )
        at_1m = skew["rows"][-1]["extrapolated_to_1m"]
        print(
            f"  extrapolated to 1M pairs (share kept, peak linear and time quadratic in the group): "
            f"{at_1m['group_entries']:,} entries, {at_1m['decide_peak_gb']} GB peak, {at_1m['decide_hours']} h"
        )

    print(
        f"\n4. NearDuplicatePairs through Beam (FnApiRunner in-process), {args.beam_pairs:,} pairs, radius {default_radius}"
    )
    print("  mode          buckets  seconds  pairs/s  kept  rejected (expected)  peak RSS MB (before run)")
    beams = [beam_row(args.beam_pairs, 1, "pass-through", args.seed)]
    beams += [beam_row(args.beam_pairs, b, "transform", args.seed) for b in args.beam_buckets]
    for row in beams:
        print(
            f"  {row['mode']:<13} {row['buckets'] or '':>7}  {row['seconds']:>7.1f}  {row['pairs_per_s']:>7,}  "
            f"{row['kept']:>7,}  {row['rejected']:>6,} ({row['expected_rejected'] if row['buckets'] else 0:,})  "
            f"{row['peak_rss_mb']:>6,} ({row['rss_before_mb']:,})"
        )

    rows = [
        {"part": "hash_cost", **cost},
        *({"part": "search", **row} for row in searches),
        {"part": "skew", **skew},
        *({"part": "beam", **row} for row in beams),
    ]
    print(f"\n{time.perf_counter() - started:.0f} s in all; wrote", write_results("dedup", rows, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
