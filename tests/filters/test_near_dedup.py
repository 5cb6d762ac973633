"""filters/near_dedup.py: bands that cannot miss a pair within the radius, who loses in a bucket, the
policies' ranks, and parameter errors."""

from __future__ import annotations

import random

import pytest

from vlcurate.filters import near_dedup
from vlcurate.filters.near_dedup import (
    HASH_KEY,
    NearDedup,
    NearIndex,
    band_keys,
    caption_key,
    losers_in_bucket,
    merged_captions,
)
from vlcurate.schemas.record import Pair


def _hex(value: int, bits: int = 64) -> str:
    return f"{value:0{bits // 4}x}"


def _flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def test_bands_deal_the_bits_in_turn():
    # 64 bits into 4 bands: band b holds bits b, b+4, ...; 0xff00... puts 2 of every band's 8 high bits on.
    assert band_keys("ff" + "00" * 7, 3) == ["0:c000", "1:c000", "2:c000", "3:c000"]
    assert band_keys("80" + "00" * 7, 1) == ["0:80000000", "1:00000000"]
    assert band_keys("40" + "00" * 7, 1, "k") == ["0:00000000:k", "1:80000000:k"]
    assert band_keys("00" * 8, 0) == ["0:0000000000000000"]
    assert len(band_keys("ab" * 58, 35)) == 36


@pytest.mark.parametrize("radius, bits", [(2, 64), (8, 64), (35, 464)])
def test_two_hashes_within_the_radius_share_a_band(radius, bits):
    rng = random.Random(radius)
    for _ in range(300):
        a = rng.getrandbits(bits)
        b = _flip(a, rng.sample(range(bits), rng.randint(0, radius)))
        assert set(band_keys(_hex(a, bits), radius)) & set(band_keys(_hex(b, bits), radius))
    # radius + 1 bits, one in each band (bits 0..radius, high end first): no band left in common
    c = _flip(a, [bits - 1 - i for i in range(radius + 1)])
    assert not set(band_keys(_hex(a, bits), radius)) & set(band_keys(_hex(c, bits), radius))


def test_the_index_finds_every_added_hash_within_the_radius():
    rng = random.Random(3)
    added = [rng.getrandbits(64) for _ in range(50)]
    index = NearIndex(radius=8)
    for value in added:
        index.add(_hex(value))
    for _ in range(100):
        query = _flip(rng.choice(added), rng.sample(range(64), rng.randint(0, 12)))
        within = {value for value in added if (value ^ query).bit_count() <= 8}
        assert index.matches(_hex(query)) == within
        assert index.near(_hex(query)) == bool(within)


def _brute_force(entries, radius):
    """The definition: each pair's best-ranked other entry within the radius, if it ranks before it."""
    out = {}
    for rank, h in entries:
        if rank[0] == 0:
            continue
        near = [r for r, g in entries if r != rank and (int(h, 16) ^ int(g, 16)).bit_count() <= radius]
        better = [r for r in near if r < rank]
        if better:
            out[rank[-1]] = min(better)
    return out


@pytest.mark.parametrize("small_group", [0, 1000], ids=["vectorized", "pairwise"])
def test_losers_match_the_definition_on_random_clusters(small_group, monkeypatch):
    # Both ways of comparing a group's hashes (filters/near_dedup.py SMALL_GROUP) give the definition.
    monkeypatch.setattr(near_dedup, "SMALL_GROUP", small_group)
    rng = random.Random(7)
    entries = []
    for cluster in range(40):
        centre = rng.getrandbits(64)
        for copy in range(rng.randint(1, 5)):
            value = _flip(centre, rng.sample(range(64), rng.randint(0, 6)))
            entries.append(((1, f"s/{cluster:02d}-{copy}"), _hex(value)))
    entries.append(((1, "s/same-a"), entries[0][1]))  # an exact copy of another pair's hash
    entries.append(((0, "eval-1"), entries[5][1]))  # an evaluation image equal to a pair's
    got = dict(losers_in_bucket(entries, 4))
    assert got == _brute_force(entries, 4)
    assert got[entries[5][0][1]] == (0, "eval-1")
    assert "eval-1" not in got


def test_a_chain_loses_link_by_link():
    a = 0
    b = _flip(a, [0, 1, 2, 3])
    c = _flip(b, [10, 11, 12, 13])  # 8 bits from a: outside radius 4
    got = dict(losers_in_bucket([((1, "a"), _hex(a)), ((1, "b"), _hex(b)), ((1, "c"), _hex(c))], 4))
    assert got == {"b": (1, "a"), "c": (1, "b")}


def test_many_copies_of_one_hash_lose_to_the_smallest():
    entries = [((1, f"u{i:05d}"), "00ff00ff00ff00ff") for i in range(5000)]
    got = dict(losers_in_bucket(entries, 6))
    assert len(got) == 4999 and set(got.values()) == {(1, "u00000")}


def _pair(uid, phash, caption="a red circle", width=100, height=100):
    return Pair(uid=uid, source="s", caption=caption, width=width, height=height, meta={HASH_KEY: phash})


def test_policy_ranks():
    small = _pair("s/b", "00" * 8, "short", 50, 50)
    large = _pair("s/a", "00" * 8, "a much longer caption", 400, 300)
    assert NearDedup().rank(large) < NearDedup().rank(small)  # smallest uid
    assert NearDedup(keep="largest_image").rank(large) < NearDedup(keep="largest_image").rank(small)
    assert NearDedup(keep="longest_caption").rank(large) < NearDedup(keep="longest_caption").rank(small)
    tall = _pair("s/0", "00" * 8, "x", 10, 10)
    assert NearDedup(keep="largest_image").rank(small) < NearDedup(keep="largest_image").rank(tall)


def test_same_caption_buckets_by_caption_too():
    step = NearDedup(radius=2, captions="same_caption")
    a = _pair("s/a", "f0" * 8, "A red circle.")
    b = _pair("s/b", "f0" * 8, "a  red CIRCLE")
    c = _pair("s/c", "f0" * 8, "a blue circle")
    assert step.bucket_keys(a) == step.bucket_keys(b) != step.bucket_keys(c)
    assert caption_key("Hello, world!") == caption_key("hello world")
    assert NearDedup(radius=2).bucket_keys(a) == NearDedup(radius=2).bucket_keys(c)


def test_unhashed_pairs_pass():
    assert NearDedup().entry(Pair(uid="s/x", source="s")) is None
    assert NearDedup().entry(_pair("s/x", "ab" * 8)) == ((1, b"s/x"), "ab" * 8)


def test_loser_names_its_winner():
    pair = _pair("s/b", "00" * 8)
    NearDedup().mark_loser(pair, "s/a")
    assert pair.reject == "near_duplicate" and pair.meta["near_duplicate_of"] == "s/a"


def test_merged_captions_own_first_then_sorted_distinct():
    assert merged_captions("b", ["c", "a", "b", "c"]) == ["b", "a", "c"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"radius": -1}, "radius must be an integer from 0 to 116"),
        ({"radius": 117}, "radius must be an integer from 0 to 116"),
        ({"radius": 2.5}, "radius must be an integer"),
        ({"radius": True}, "radius must be an integer"),
        ({"captions": "some"}, "captions must be one of any_caption, same_caption, merge"),
        ({"keep": "first"}, "keep must be one of smallest_uid, largest_image, longest_caption"),
    ],
)
def test_bad_parameters_name_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NearDedup(**kwargs)
