"""Near-duplicate images: pairs whose perceptual hashes (filters/image_hash.py, taken by decode_check from
its draft decode) lie within Hamming radius `radius` of each other.

Found without comparing all pairs: each hash's bits are dealt into radius + 1 bands (bit i to band
i mod (radius + 1)), and two hashes within the radius agree exactly on at least one band (pigeonhole: r
differing bits touch at most r bands). Pairs are
bucketed by (band, band value) and only the pairs of one bucket are compared (multi-index hashing, Norouzi,
Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012).

Who loses is defined pair by pair, so no answer depends on buckets, workers or arrival order: a pair is a
near duplicate when another pair within the radius ranks before it (`keep`: the smallest uid, the largest
image or the longest caption, then the smallest uid), and it names the best-ranked such pair in
`meta["near_duplicate_of"]`. In a chain of near duplicates A ~ B ~ C where A and C are farther apart, B
and C both lose (B to A, C to B): every kept pair has no better-ranked near duplicate left beside it.

Caption policies (`captions`):
- `any_caption`: near-duplicate images are duplicates whatever their captions say (the default: the same
  picture under ten captions skews a model as much as ten copies);
- `same_caption`: only when the captions are the same once case, spacing and punctuation are ignored
  (`caption_key`);
- `merge`: as any_caption, and the kept pair collects the distinct captions of the pairs it beat into
  `meta["captions"]` (its own first), for stage 1 or SFT to use.

The same machinery drops training pairs whose image matches an evaluation image (the `decontaminate`
step): evaluation hashes enter the buckets ranked before every pair and never lose.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vlcurate.filters.academic import caption_rank
from vlcurate.filters.base import GroupStep, reject
from vlcurate.filters.image_hash import NEAR_DUP_HASH_BITS, NEAR_DUP_RADIUS
from vlcurate.schemas.encoding import utf8
from vlcurate.schemas.record import Pair

# The record field decode_check writes: the image's perceptual hash as lowercase hex.
HASH_KEY = "image_phash"
CAPTION_POLICIES = ("any_caption", "same_caption", "merge")
KEEP_POLICIES = ("smallest_uid", "largest_image", "longest_caption")
REASON = "near_duplicate"
EVAL_REASON = "eval_overlap"

# An entry of a bucket: (rank, hash hex). A pair's rank is (1, ...policy..., uid); an evaluation image's
# is (0, its id), before every pair. The last element names it (as_key: bytes).
Entry = tuple[tuple, str]
_PAIR, _EVAL = 1, 0


def band_of_bit(bits: int, radius: int) -> np.ndarray:
    """[bits] the band of each bit: bit i belongs to band i mod (radius + 1). Interleaved, not contiguous:
    the hash's colour bits take few values (filters/image_hash.py), and contiguous bands made of them put
    most images into one bucket (bench/dedup.py measured 62% at radius 8); spread over every band, each
    band mixes them with well-spread luma bits."""
    return np.arange(bits) % (radius + 1)


def band_keys(hash_hex: str, radius: int, extra: str = "") -> list[str]:
    """The bucket keys of a hash: one per band, "band:value[:extra]" with the band's bits packed in order
    as hex (`extra`: what else must match, the caption key under same_caption)."""
    flags = np.unpackbits(np.frombuffer(bytes.fromhex(hash_hex), dtype=np.uint8))
    # One gather puts each band's bits in a row (short bands padded with a zero bit), one packbits packs
    # them all: the same bytes as packing each band's bits alone, without a numpy call per band.
    values = np.packbits(np.append(flags, 0)[_band_gather(len(flags), radius)], axis=1)
    text, width = values.tobytes().hex(), 2 * values.shape[1]
    suffix = f":{extra}" if extra else ""
    return [f"{band}:{text[band * width : (band + 1) * width]}{suffix}" for band in range(len(values))]


@functools.cache
def _band_gather(bits: int, radius: int) -> np.ndarray:
    """[bands, longest band] indices into a hash's bits followed by one zero bit: row b lists band b's bits
    in order (band_of_bit), then the zero bit's index where the band is shorter than the longest."""
    bands = radius + 1
    longest = -(-bits // bands)
    gather = np.full((bands, longest), bits, dtype=np.int64)
    for band in range(bands):
        members = np.arange(band, bits, bands)
        gather[band, : len(members)] = members
    return gather


def as_key(text: str) -> bytes:
    """Text (a uid, a caption) as it travels in entries and marks: UTF-8 that keeps lone surrogates, which
    Beam's string coder refuses, and sorts as the text does."""
    return text.encode("utf-8", "surrogatepass")


def from_key(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def key_digest(key: str | bytes) -> str:
    """A bucket key as a hex digest (what pipelines bucket on)."""
    return hashlib.blake2b(key if isinstance(key, bytes) else utf8(key), digest_size=8).hexdigest()


_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def caption_key(caption: str) -> str:
    """What `same_caption` compares: the caption case-folded, without spacing or punctuation, digested."""
    text = _NOT_WORD.sub("", caption.casefold())
    return hashlib.blake2b(utf8(text), digest_size=8).hexdigest()


def _words(hashes: Sequence[str]) -> np.ndarray:
    """[n, words] uint64 of equal-length hex hashes, zero-padded on the right to whole 64-bit words."""
    width = -(-len(hashes[0]) // 16) * 16
    raw = bytes.fromhex("".join(h.ljust(width, "0") for h in hashes))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), width // 16)


# Distance-matrix cells computed at a time (each cell is a hash's words XORed, counted and summed): memory
# stays ~_CELLS x words x 8 bytes x a few arrays, whatever the bucket's size.
_CELLS = 1 << 20
# Up to this many distinct hashes a group is compared pair by pair on Python ints. Per group of random
# 464-bit hashes (2-core dev machine, 2026-12-08): 2 hashes 4.4 us vs numpy's 38.8, 24: 55 vs 97, 128: 880
# vs 955, 1,024: 52 vs 48 ms. At radius 35 a band value holds ~N / 8,192 hashes, so most groups of a run
# are small: bench/dedup.py's decide phase at 50k pairs went from 14.4 s to 3.9 s.
SMALL_GROUP = 128


def losers_in_bucket(entries: Iterable[Entry], radius: int) -> Iterator[tuple[str, tuple]]:
    """(loser's uid, the best-ranked entry within `radius` of it that ranks before it) for every pair of
    one bucket that has such an entry. Entries with one hash are compared once (a bucket of ten thousand
    copies of one logo costs one row); distinct hashes are compared pair by pair when few, else block by
    block."""
    by_hash: dict[str, list[tuple]] = {}
    for rank, hash_hex in entries:
        by_hash.setdefault(hash_hex, []).append(rank)
    hashes = sorted(by_hash)
    for ranks in by_hash.values():
        ranks.sort()
    best = [by_hash[h][0] for h in hashes]
    near = (
        _nearest_few(hashes, best, radius)
        if len(hashes) <= SMALL_GROUP
        else _nearest_many(hashes, best, radius)
    )
    for hash_hex, other in zip(hashes, near):
        ranks = by_hash[hash_hex]
        for rank in ranks:
            if rank[0] == _EVAL:
                continue
            # The hash's own best beats every other entry of the hash; a nearby hash's best may beat all.
            candidates = [r for r in (ranks[0], other) if r is not None and r < rank]
            if candidates:
                yield rank[-1], min(candidates)


def _nearest_few(hashes: list[str], best: list[tuple], radius: int) -> list[tuple | None]:
    """For each hash, the best-ranked entry among the other hashes within `radius` (None if none): every
    pair of hashes compared once, as Python ints."""
    values = [int(h, 16) for h in hashes]
    near: list[tuple | None] = [None] * len(hashes)
    for i, value in enumerate(values):
        for j in range(i + 1, len(values)):
            if (value ^ values[j]).bit_count() <= radius:
                if near[i] is None or best[j] < near[i]:
                    near[i] = best[j]
                if near[j] is None or best[i] < near[j]:
                    near[j] = best[i]
    return near


def _nearest_many(hashes: list[str], best: list[tuple], radius: int) -> list[tuple | None]:
    """_nearest_few's answer, vectorized: distances block by block (_CELLS at a time), and per row the
    best-ranked hash within the radius found as the smallest position in the rank order."""
    order = sorted(range(len(hashes)), key=best.__getitem__)
    position = np.empty(len(hashes), dtype=np.int64)  # each hash's best entry, as its place in `order`
    position[order] = np.arange(len(hashes))
    nearest = np.full(len(hashes), len(hashes), dtype=np.int64)  # the best other hash in the radius
    words = _words(hashes)
    rows = max(1, _CELLS // len(hashes))
    for start in range(0, len(hashes), rows):
        block = words[start : start + rows]
        distance = np.bitwise_count(block[:, None, :] ^ words[None, :, :]).sum(axis=2, dtype=np.int64)
        within = distance <= radius
        within[np.arange(len(block)), np.arange(start, start + len(block))] = False
        nearest[start : start + len(block)] = np.where(within, position[None, :], len(hashes)).min(axis=1)
    return [best[order[k]] if k < len(hashes) else None for k in nearest.tolist()]


class NearDedup(GroupStep):
    """Drops pairs whose image is a near duplicate of a better-ranked pair's (module docstring).

    Reason `near_duplicate`, with the kept pair's uid in meta["near_duplicate_of"]. `radius`: the largest
    Hamming distance between two images' hashes that still makes them duplicates; its default was chosen by
    measuring recall on planted copies against false merges of distinct images (bench/image_hash.py,
    docs/dedup.md). The step compares pairs across sources, so its parameters are set once under `steps:`.
    """

    name = "near_dedup"
    reasons = (REASON,)
    needs_image = True
    needs = {"decode_check": "the perceptual hash it takes of every image"}
    reject_file_prefix = "near-duplicates"
    # Run by pipelines/near_groups.py (bands, then a join by uid), not by key groups.
    compares_hashes = True
    same_params_everywhere = True
    default_sources = {
        "radius": "bench/image_hash.py: the smallest radius catching >= 95% of re-encoded or resized and "
        ">= 85% of 5%-cropped copies with no false merge among 2,000 varied images",
        "captions": "vlcurate default: one picture under many captions would otherwise count many times",
    }

    def __init__(
        self, radius: int = NEAR_DUP_RADIUS, captions: str = "any_caption", keep: str = "smallest_uid"
    ) -> None:
        check_radius(radius, "near_dedup.radius")
        if captions not in CAPTION_POLICIES:
            raise ValueError(
                f"near_dedup.captions must be one of {', '.join(CAPTION_POLICIES)}, not {captions!r}."
            )
        if keep not in KEEP_POLICIES:
            raise ValueError(f"near_dedup.keep must be one of {', '.join(KEEP_POLICIES)}, not {keep!r}.")
        self.radius, self.captions, self.keep = radius, captions, keep

    def entry(self, pair: Pair) -> Entry | None:
        """The pair's bucket entry; None for a pair without a hash (no image), which passes."""
        hash_hex = pair.meta.get(HASH_KEY)
        return None if not hash_hex else (self.rank(pair), hash_hex)

    def bucket_keys(self, pair: Pair) -> list[str]:
        extra = caption_key(pair.caption) if self.captions == "same_caption" else ""
        return band_keys(pair.meta[HASH_KEY], self.radius, extra)

    def rank(self, pair: Pair) -> tuple:
        if self.keep == "largest_image":
            return (_PAIR, -((pair.width or 0) * (pair.height or 0)), as_key(pair.uid))
        if self.keep == "longest_caption":
            length, caption = caption_rank(pair.caption)
            return (_PAIR, length, as_key(caption), as_key(pair.uid))
        return (_PAIR, as_key(pair.uid))

    def loses_to(self, winner: tuple) -> bool:
        """Whether a better-ranked entry takes the pair out: any pair's does."""
        return True

    def mark_loser(self, pair: Pair, winner: str) -> None:
        reject(pair, REASON)
        pair.meta["near_duplicate_of"] = winner


class NearIndex:
    """Hashes added one by one, asked whether a new one lies within `radius` of any added (through the same
    bands, so no scan of all): for data makers that must keep distinct images apart (synth/records.py)."""

    def __init__(self, radius: int = NEAR_DUP_RADIUS) -> None:
        self.radius = radius
        self._bands: dict[str, list[int]] = {}

    def near(self, hash_hex: str) -> bool:
        return bool(self.matches(hash_hex))

    def matches(self, hash_hex: str) -> set[int]:
        """The added hashes (as integers) within `radius` of this one."""
        value = int(hash_hex, 16)
        return {
            other
            for key in band_keys(hash_hex, self.radius)
            for other in self._bands.get(key, ())
            if (value ^ other).bit_count() <= self.radius
        }

    def add(self, hash_hex: str) -> None:
        for key in band_keys(hash_hex, self.radius):
            self._bands.setdefault(key, []).append(int(hash_hex, 16))


def check_radius(radius: object, what: str) -> None:
    """A radius is a whole number of bits, below a quarter of the hash (beyond, unrelated images match)."""
    most = NEAR_DUP_HASH_BITS // 4
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= most:
        raise ValueError(
            f"{what} must be an integer from 0 to {most} (bits of the {NEAR_DUP_HASH_BITS}), not {radius!r}."
        )


def merged_captions(own: str, others: Iterable[str]) -> list[str]:
    """`merge`'s meta["captions"]: the kept pair's caption, then the distinct others, sorted."""
    return [own, *sorted(set(others) - {own})]
