"""The synthetic dataset: determinism, exact proportions, every defect really planted and only that one,
and the three formats read back by vlcurate's own readers as the same records.

`synth_dir` / `ground_truth` (tests/conftest.py) are one shared dataset of 400 pairs."""

import collections
import html
import io
import json
import os
import random
import tarfile

import emoji
import pytest
import regex
from PIL import Image, ImageOps, UnidentifiedImageError

from vlcurate.filters.image_hash import NEAR_DUP_RADIUS
from vlcurate.filters.image_probe import DecodeCheck, ProbeImage, decode_draft, header_size
from vlcurate.model.scenes import COLORS_ZH, KINDS_ZH, render
from vlcurate.pipelines.load_images import load_image_bytes
from vlcurate.pipelines.read import read_file
from vlcurate.schemas.config import SourceConfig, load_clean_config
from vlcurate.schemas.errors import ConfigError
from vlcurate.schemas.record import Pair
from vlcurate.synth import captions, dataset, defects, images, records
from vlcurate.synth.dataset import write_synthetic_dataset
from vlcurate.tests.conftest import SYNTH_SEED
from vlcurate.tests.pipelines.helpers import tree_files

CJK = regex.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Printable ASCII, ideographs, CJK punctuation: what a caption may hold when it has no text defect.
ALLOWED = regex.compile(r"[\x20-\x7e\u3400-\u4dbf\u4e00-\u9fff，。、：]*")
FOREIGN = regex.compile(r"[\p{Hiragana}\p{Katakana}\p{Hangul}\p{Cyrillic}\p{Arabic}]")
# What the irregular_pattern defect adds (the test's own list, independent of the cleaning step).
IRREGULAR = regex.compile(
    r"https?://\S+|www\.\S+|IMG_\d{4}\.JPG|DSC\d{5}\.jpg|\s*[-|]?\s*\(?stock photo\)?|[!?]{2,}|\.{3,}",
    regex.IGNORECASE,
)
FORMATS = {"webdataset": "wds", "parquet": "parquet", "jsonl": "jsonl"}


def good_caption(text: str, lang: str) -> bool:
    """Passes every text filter as the chain's defaults are documented: allowed characters, no emoji,
    4-40 English words (<= 300 chars) or 6-46 Chinese ideographs."""
    if not ALLOWED.fullmatch(text) or emoji.emoji_count(text):
        return False
    if lang == "zh":
        return 6 <= len(CJK.findall(text)) <= 46
    return 4 <= len(text.split()) <= 40 and 6 <= len(text) <= 300


@pytest.fixture(scope="module")
def rows(synth_dir):
    with open(synth_dir / "jsonl" / "synth.jsonl", encoding="utf-8") as fh:
        return {row["key"]: row for row in map(json.loads, fh)}


@pytest.fixture(scope="module")
def truth(ground_truth):
    return {g["key"]: g for g in ground_truth}


def image_bytes(synth_dir, row) -> bytes | None:
    path = synth_dir / "jsonl" / row["image"]
    return path.read_bytes() if path.exists() else None


# --- determinism and proportions ---------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    write_synthetic_dataset(str(tmp_path / "a"), n=60, seed=11)
    write_synthetic_dataset(str(tmp_path / "b"), n=60, seed=11)
    write_synthetic_dataset(str(tmp_path / "c"), n=60, seed=12)
    a, b, c = (tree_files(tmp_path / name) for name in "abc")
    assert sorted(a) == sorted(b) and all(a[name] == b[name] for name in a)
    for name in (
        "wds/synth-00000.tar",
        "parquet/synth-00000.parquet",
        "jsonl/synth.jsonl",
        "ground_truth.jsonl",
    ):
        assert a[name] != c[name], name


def test_worker_processes_do_not_change_the_records():
    one, two = records.make_records(48, 5, workers=1), records.make_records(48, 5, workers=2)
    assert [(r.key, r.caption, r.image, r.url, r.width) for r in one] == [
        (r.key, r.caption, r.image, r.url, r.width) for r in two
    ]


@pytest.mark.parametrize("n", [1, 2, 7, 33, 100, 401, 600, 2000])
def test_counts_follow_the_table_exactly(n):
    counts = defects.defect_counts(n)
    assert list(counts) == [d.name for d in defects.DEFECTS]
    assert sum(counts.values()) == n
    for d in defects.DEFECTS:
        assert abs(counts[d.name] - n * d.percent / 100) < 1
    if n == 100:
        assert counts == {d.name: d.percent for d in defects.DEFECTS}
    if n >= 600:
        assert min(counts.values()) >= 18  # several of each


def test_ground_truth_covers_every_key_with_the_documented_reasons(ground_truth, rows):
    n = len(ground_truth)
    assert [g["key"] for g in ground_truth] == [f"{i:09d}" for i in range(n)] == list(rows)
    assert collections.Counter(g["defect"] for g in ground_truth) == {
        k: v for k, v in defects.defect_counts(n).items() if v
    }
    for g in ground_truth:
        defect = defects.DEFECT_BY_NAME[g["defect"]]
        assert g["expected_reason"] == defect.expected_reason
        expected_with_clip = "clip_low_score" if g["defect"] == "clip_mismatch" else g["expected_reason"]
        assert g["expected_reason_with_clip"] == expected_with_clip
    for d in defects.DEFECTS:  # the docstring table is the documentation: keep it in sync
        assert d.name in defects.__doc__ and (
            d.expected_reason is None or d.expected_reason in defects.__doc__
        )


def test_languages_and_formats_are_mixed_as_documented(ground_truth):
    langs = collections.Counter(g["lang"] for g in ground_truth)
    assert 0.18 < langs["zh"] / len(ground_truth) < 0.32
    assert {g["lang"] for g in ground_truth if g["defect"] == "none"} == {"en"}
    assert {g["lang"] for g in ground_truth if g["defect"] == "chinese"} == {"zh"}
    formats = collections.Counter(g["image_format"] for g in ground_truth if g["image_format"])
    total = sum(formats.values())
    assert (
        0.6 < formats["JPEG"] / total < 0.85
        and formats["PNG"] > 0.08 * total
        and formats["WEBP"] > 0.08 * total
    )


# --- every defect is planted, and only its own ------------------------------------------------------


def test_images_have_the_planted_size_and_no_other_image_defect(synth_dir, rows, truth):
    for key, g in truth.items():
        data = image_bytes(synth_dir, rows[key])
        if g["defect"] in ("image_missing", "image_undecodable"):
            continue
        fmt, width, height = header_size(data)  # the probe step's own reading: after EXIF orientation
        assert (fmt, width, height) == (g["image_format"], g["width"], g["height"]), key
        short, ratio = min(width, height), max(width, height) / min(width, height)
        if g["defect"] == "too_small":
            assert 40 <= short <= 180 and ratio <= 2.5
        elif g["defect"] == "aspect_ratio":
            assert short >= 200 and 3.5 <= ratio <= 6.0
        else:
            assert short >= 224 and max(width, height) <= 512 and ratio <= 2.0
        assert rows[key]["image"].endswith(images.EXT[fmt])


def test_exif_rotated_jpegs_store_the_turned_image(synth_dir, rows, truth):
    rotated = [k for k, g in truth.items() if g["defect"] == "exif_rotated"]
    assert rotated
    for key in rotated:
        with Image.open(io.BytesIO(image_bytes(synth_dir, rows[key]))) as img:
            assert img.format == "JPEG" and img.getexif().get(0x0112) in (6, 8)
            assert img.size == (truth[key]["height"], truth[key]["width"])  # stored with sides swapped
    # Upright again after exif_transpose: compare with the scene rendered directly.
    record = records.make_record(int(rotated[0]), "exif_rotated", SYNTH_SEED, [])
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(record.image))).convert("RGB")
    expected = render(record.scene, record.width, record.height)
    diff = sum(abs(a - b) for a, b in zip(upright.tobytes(), expected.tobytes())) / len(expected.tobytes())
    assert upright.size == expected.size and diff < 4


def test_broken_images_break_the_way_their_defect_says(synth_dir, rows, truth):
    seen = collections.Counter()
    for key, g in truth.items():
        data = image_bytes(synth_dir, rows[key])
        pair = Pair(uid=key, source="synth", image=data)
        ProbeImage().apply(pair)
        if pair.reject is None:
            DecodeCheck().apply(pair)
        expected = g["defect"] if g["defect"].startswith("image_") else None
        assert pair.reject == expected, key
        if g["defect"] == "image_undecodable":
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(data))
        elif g["defect"] == "image_truncated":
            with Image.open(io.BytesIO(data)) as img:  # the header parses ...
                assert img.format == "JPEG" and img.size == (g["width"], g["height"])
                with pytest.raises(OSError):  # ... the pixels do not
                    img.load()
        elif g["defect"] == "image_missing":
            assert data is None
        seen[g["defect"]] += 1
    assert min(seen[d] for d in ("image_undecodable", "image_truncated", "image_missing")) >= 1


def test_captions_carry_their_defect_and_nothing_else(rows, truth):
    for key, g in truth.items():
        caption, lang, defect = rows[key]["caption"], g["lang"], g["defect"]
        if defect == "caption_empty":
            assert caption.strip() == "" and lang is None
        elif defect == "too_short":
            assert 1 <= len(caption.split()) <= 2 and (lang == "en" or len(caption) <= 3), caption
        elif defect == "too_long":
            head = regex.split(r" Keywords: | 关键词：", caption)[0]
            assert len(caption) > 400 and good_caption(head, lang) and ALLOWED.fullmatch(caption)
        elif defect == "html":
            assert regex.search(r"<[a-z0-9]+[ >/]", caption)
            text = " ".join(html.unescape(regex.sub(r"<[^>]+>", "", caption)).split())
            assert good_caption(text, lang), caption
        elif defect == "irregular_pattern":
            assert IRREGULAR.search(caption) and ALLOWED.fullmatch(caption)
            assert good_caption(" ".join(IRREGULAR.sub(" ", caption).split()), lang), caption
        elif defect == "emoji":
            assert emoji.emoji_count(caption) >= 1
            assert good_caption(" ".join(emoji.replace_emoji(caption, "").split()), lang), caption
        elif defect == "disallowed_script":
            assert FOREIGN.search(caption)
            assert good_caption(" ".join(FOREIGN.sub("", caption).split()), lang), caption
        else:
            assert good_caption(caption, lang), (defect, caption)


def test_planted_emoji_and_scripts_cover_the_hard_cases():
    rng = random.Random(0)
    emojis = "".join(captions.emoji("A red circle on the left.", rng) for _ in range(300))
    assert "\u200d" in emojis  # ZWJ sequences
    assert regex.search(r"\p{Regional_Indicator}{2}", emojis)  # flags
    assert regex.search(r"\p{Emoji_Modifier}", emojis)  # skin tones
    assert "\u20e3" in emojis  # keycaps
    foreign = "".join(captions.disallowed_script("A red circle on the left.", rng) for _ in range(300))
    for script in ("Hiragana", "Katakana", "Hangul", "Cyrillic", "Arabic"):
        assert regex.search(rf"\p{{{script}}}", foreign), script


def test_clip_mismatch_captions_describe_another_scene(rows, truth):
    keys = [k for k, g in truth.items() if g["defect"] == "clip_mismatch"]
    assert keys
    for key in keys[:4]:
        record = records.make_record(int(key), "clip_mismatch", SYNTH_SEED, [])
        assert record.caption == rows[key]["caption"]
        for shape in record.scene.shapes:
            assert f"{shape.color} {shape.kind}" not in record.caption
            assert f"{COLORS_ZH[shape.color]}的{KINDS_ZH[shape.kind]}" not in record.caption
            assert f"{COLORS_ZH[shape.color]}{KINDS_ZH[shape.kind]}" not in record.caption


def test_duplicates_copy_an_earlier_clean_pair_and_nothing_else_repeats(synth_dir, rows, truth):
    by_image = collections.defaultdict(list)
    for key, row in rows.items():
        data = image_bytes(synth_dir, row)
        if data is not None:
            by_image[data].append(key)
    same_bytes_near = 0
    for keys in by_image.values():
        if len(keys) > 1:
            original, *copies = sorted(keys)
            assert truth[original]["defect"] in ("none", "chinese")
            captions = {rows[k]["caption"] for k in keys if truth[k]["defect"] != "duplicate"}
            # Exact dedup takes only the duplicates: the near duplicates' captions are all different.
            assert len(captions) == 1 + sum(truth[k]["defect"] == "near_duplicate" for k in copies)
            for copy in copies:
                assert truth[copy]["defect"] in ("duplicate", "near_duplicate"), copy
                assert truth[copy]["duplicate_of"] == original
                assert rows[copy]["url"] != rows[original]["url"]
                if truth[copy]["defect"] == "duplicate":
                    assert rows[copy]["caption"] == rows[original]["caption"]
                same_bytes_near += truth[copy]["defect"] == "near_duplicate"
    duplicates = [k for k, g in truth.items() if g["defect"] == "duplicate"]
    assert duplicates and all(len(by_image[image_bytes(synth_dir, rows[k])]) > 1 for k in duplicates)
    assert same_bytes_near  # the seed's 12 near duplicates include re-captioned ones


def test_near_duplicates_lie_within_the_radius_of_their_original_alone(synth_dir, rows, truth):
    # near_dedup (default radius, smallest uid kept) must reject each copy as a near duplicate of its
    # original, and nothing else: the copy is near its original and far from every other image that
    # reaches near_dedup (the pairs to keep, and the other originals' copies).
    reach = [k for k, g in truth.items() if g["expected_reason"] is None or g["defect"] == "near_duplicate"]
    hashes = {k: int(decode_draft(image_bytes(synth_dir, rows[k])), 16) for k in reach}
    copies = [k for k in reach if truth[k]["defect"] == "near_duplicate"]
    assert len(copies) == defects.defect_counts(len(truth))["near_duplicate"]
    kinds = collections.Counter()
    for copy in copies:
        original = truth[copy]["duplicate_of"]
        assert original < copy and truth[original]["defect"] in ("none", "chinese")
        assert (hashes[copy] ^ hashes[original]).bit_count() <= NEAR_DUP_RADIUS
        for other in reach:
            if other not in (copy, original) and truth[other]["duplicate_of"] != original:
                assert (hashes[copy] ^ hashes[other]).bit_count() > NEAR_DUP_RADIUS, (copy, other)
        assert truth[copy]["lang"] == truth[original]["lang"]
        assert rows[copy]["caption"] != rows[original]["caption"]
        assert good_caption(rows[copy]["caption"], truth[copy]["lang"])
        data, original_data = image_bytes(synth_dir, rows[copy]), image_bytes(synth_dir, rows[original])
        same_size = (truth[copy]["width"], truth[copy]["height"]) == (
            truth[original]["width"],
            truth[original]["height"],
        )
        kinds[
            "same bytes" if data == original_data else "re-encoded" if same_size else "resized or cropped"
        ] += 1
    assert len(kinds) == 3, kinds  # every kind of copy is planted


def test_a_near_duplicate_is_made_only_beside_the_others():
    with pytest.raises(ValueError, match="make_records"):
        records.make_record(5, "near_duplicate", 0, [])


# --- formats, config, CLI ----------------------------------------------------------------------------


def read_all(synth_dir, fmt) -> dict[str, Pair]:
    folder = synth_dir / FORMATS[fmt]
    source = SourceConfig(name="synth", format=fmt, paths=[str(folder / "*")])
    pairs = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            for pair in read_file(source, str(path)):
                load_image_bytes(pair)
                pairs[pair.uid] = pair
    return pairs


def test_vlcurate_reads_the_same_records_from_every_format(synth_dir, rows, truth):
    read = {fmt: read_all(synth_dir, fmt) for fmt in FORMATS}
    uids = [f"synth/{k}" for k in rows]
    for fmt, pairs in read.items():
        assert sorted(pairs) == uids, fmt
        for uid, pair in pairs.items():
            key = pair.key
            assert pair.caption == rows[key]["caption"], (fmt, key)
            assert pair.image == image_bytes(synth_dir, rows[key]), (fmt, key)
            if truth[key]["defect"] == "image_missing":
                assert pair.image is None
                assert pair.reject == ("image_missing" if fmt == "jsonl" else None)  # jsonl: file absent
            else:
                assert pair.reject is None, (fmt, uid, pair.reject)


def test_tar_members_are_as_img2dataset_writes_them(synth_dir, truth, rows):
    with tarfile.open(synth_dir / "wds" / "synth-00000.tar") as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile("000000000.json"))
    assert len([n for n in names if n.endswith(".txt")]) == len(rows)  # 400 pairs: one shard
    assert names[:3] == [
        "000000000." + rows["000000000"]["image"].rsplit(".", 1)[1],
        "000000000.txt",
        "000000000.json",
    ]
    assert set(meta) == {"key", "url", "caption", "status", "width", "height"}
    assert meta["status"] == "success" and meta["key"] == "000000000" and meta["url"].startswith("https://")
    missing = next(
        k for k, g in truth.items() if g["defect"] == "image_missing" and int(k) < dataset.SAMPLES_PER_SHARD
    )
    assert not [n for n in names if n.startswith(missing) and not n.endswith((".txt", ".json"))]
    assert sorted(os.listdir(synth_dir / "wds")) == ["synth-00000.tar"]


def test_large_datasets_are_sharded(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "SAMPLES_PER_SHARD", 20)
    write_synthetic_dataset(str(tmp_path), n=45, seed=4)
    assert sorted(os.listdir(tmp_path / "wds")) == [f"synth-0000{i}.tar" for i in range(3)]
    assert sorted(os.listdir(tmp_path / "parquet")) == [f"synth-0000{i}.parquet" for i in range(3)]
    for fmt in ("webdataset", "parquet"):
        assert list(read_all(tmp_path, fmt)) == [f"synth/{i:09d}" for i in range(45)]


def test_clean_yaml_is_a_valid_config_for_the_wds_copy(synth_dir):
    config = load_clean_config(str(synth_dir / "clean.yaml"))
    (source,) = config.sources
    assert (source.name, source.format) == ("synth", "webdataset")
    assert source.paths == [str(synth_dir / "wds" / "*.tar")]
    assert config.output.dir == str(synth_dir / "clean-out")


def test_an_existing_dataset_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "d"
    summary = write_synthetic_dataset(str(out), n=5, seed=1)
    assert summary["n"] == 5 and sum(summary["defects"].values()) == 5
    (out / "clean-out").mkdir()
    with pytest.raises(ConfigError, match="already holds a synthetic dataset"):
        write_synthetic_dataset(str(out), n=5, seed=1)
    write_synthetic_dataset(str(out), n=3, seed=2, overwrite=True)
    assert (out / "clean-out").is_dir()
    assert len((out / "ground_truth.jsonl").read_text().splitlines()) == 3
    assert len(os.listdir(out / "jsonl" / "images")) <= 3  # the old dataset's images are gone


def test_cli_entry_point(tmp_path, capsys):
    from vlcurate.cli import main  # here: the CLI imports Beam, which nothing else in this file needs

    assert main(["synth", "--out", str(tmp_path / "x"), "--n", "4", "--seed", "3"]) == 0
    assert "wrote 4 synthetic pairs" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "x"), "--n", "4"]) == 2  # exists: refused, not a traceback
    assert len((tmp_path / "x" / "ground_truth.jsonl").read_text().splitlines()) == 4


def test_summary_gives_the_expected_kept_count_with_and_without_clip(tmp_path):
    # At n=100 each defect's count is its percent: 55 clean pairs, plus 4 clip mismatches that only the
    # CLIP filter rejects (clean.yaml enables it).
    summary = write_synthetic_dataset(str(tmp_path), n=100, seed=0)
    assert summary["expected_kept"] == 59
    assert summary["expected_kept_with_clip"] == 55
    assert summary["expected_kept"] + sum(summary["expected_rejected"].values()) == 100
