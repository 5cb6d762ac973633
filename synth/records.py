"""A synthetic web image-text dataset carrying every defect the Qwen-VL cleaning steps target.

`write_synthetic_dataset(out_dir, n, seed)` draws n pairs from the shapes domain (model/scenes.py) and
plants exactly one defect in each, in fixed proportions, then writes the SAME records three ways:

    wds/synth-00000.tar ...        WebDataset as img2dataset writes it (<key>.jpg|png|webp, .txt, .json)
    parquet/synth-00000.parquet    columns key, caption, image (bytes; null when missing), url
    jsonl/synth.jsonl + images/    {"key", "caption", "image": "images/<key>.<ext>", "url"}
    ground_truth.jsonl             {"key", "defect", "expected_reason", "expected_reason_with_clip", "lang",
                                    "image_format", "width", "height", "duplicate_of"} (written last)
    clean.yaml                     a `vlcurate clean` config reading wds/*.tar as source `synth`

Keys are 9-digit zero-padded indexes, as img2dataset writes them; shards hold 500 samples.

Defects (one per pair; `percent` of n, rounded by largest remainder so counts sum to n):

    defect             %   expected_reason      what is planted
    none              35   -                    clean English caption, good image
    chinese           12   -                    clean Chinese caption, good image
    exif_rotated       3   -                    JPEG stored rotated with EXIF orientation 6 or 8
    too_small          4   too_small            shorter side 40-180 px
    aspect_ratio       4   aspect_ratio         long/short side 3.5-6, short side >= 200
    image_undecodable  3   image_undecodable    random bytes, an HTML error page, or a JPEG whose header
                                                is overwritten with junk: PIL cannot identify it
    image_truncated    3   image_truncated      JPEG cut at 40-70% of its bytes: header parses, decode fails
    image_missing      3   image_missing        tar: no image member; parquet: null; jsonl: absent file
    html               4   -                    caption wrapped in tags, with entities (&amp; &nbsp; ...)
    irregular_pattern  4   -                    URL, IMG_1234.JPG file name, "stock photo", "!!!" added
    emoji              4   emoji                plain, skin-tone, ZWJ, flag or keycap emoji in the caption
    disallowed_script  4   disallowed_script    Japanese kana, Hangul, Cyrillic or Arabic words added
    too_short          4   too_short            1-2 words ("image", "red circle"; Chinese <= 3 characters)
    too_long           3   too_long             caption + SEO keyword boilerplate, 450-800 characters
    clip_mismatch      4   - (clip_low_score)   caption describes a different scene (other shapes and
                                                background); only a CLIP step can reject it
    duplicate          3   duplicate            same image bytes and caption as an earlier `none` or
                                                `chinese` pair (that smaller key is the one kept)
    caption_empty      3   caption_empty        empty or whitespace-only caption

Every pair carries only its own defect: otherwise a 224-512 px image with aspect <= 2 and a caption of
4-40 English words (<= 250 characters) or 6-46 Chinese ideographs, holding only printable ASCII, CJK
ideographs and CJK punctuation.
`expected_reason_with_clip` equals `expected_reason` except for clip_mismatch ("clip_low_score").
Languages: `none` is English, `chinese` Chinese, every other defect Chinese with probability 1/4 (about
25% Chinese overall). Image formats of generated images: JPEG 70%, PNG 15%, WebP 15% (exif_rotated and
image_truncated are always JPEG; image_undecodable is stored as .jpg). Same n and seed -> identical bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
import warnings
from collections import Counter
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from vlcurate.formatters.webdataset import TarShardWriter
from vlcurate.model.scenes import (
    COLORS_ZH,
    KINDS_ZH,
    Scene,
    caption_en,
    caption_zh,
    random_scene,
    render,
)
from vlcurate.pipelines.progress_lines import CountReporter
from vlcurate.schemas.errors import ConfigError

SOURCE_NAME = "synth"
SAMPLES_PER_SHARD = 500


@dataclasses.dataclass(frozen=True)
class Defect:
    name: str
    percent: int
    expected_reason: str | None
    expected_reason_with_clip: str | None


def _defect(name: str, percent: int, reason: str | None, with_clip: str | None = None) -> Defect:
    return Defect(name, percent, reason, with_clip if with_clip is not None else reason)


DEFECTS: tuple[Defect, ...] = (
    _defect("none", 35, None),
    _defect("chinese", 12, None),
    _defect("exif_rotated", 3, None),
    _defect("too_small", 4, "too_small"),
    _defect("aspect_ratio", 4, "aspect_ratio"),
    _defect("image_undecodable", 3, "image_undecodable"),
    _defect("image_truncated", 3, "image_truncated"),
    _defect("image_missing", 3, "image_missing"),
    _defect("html", 4, None),
    _defect("irregular_pattern", 4, None),
    _defect("emoji", 4, "emoji"),
    _defect("disallowed_script", 4, "disallowed_script"),
    _defect("too_short", 4, "too_short"),
    _defect("too_long", 3, "too_long"),
    _defect("clip_mismatch", 4, None, "clip_low_score"),
    _defect("duplicate", 3, "duplicate"),
    _defect("caption_empty", 3, "caption_empty"),
)
DEFECT_BY_NAME: dict[str, Defect] = {d.name: d for d in DEFECTS}
assert sum(d.percent for d in DEFECTS) == 100

_ZH_PROBABILITY = 0.25
_FORMAT_WEIGHTS = {"JPEG": 70, "PNG": 15, "WEBP": 15}
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_CLEAN_SIDE = (224, 512)
_HOSTS = ("images.example.com", "cdn.example.net", "static.example.org", "photos.example.com")


def defect_counts(n: int) -> dict[str, int]:
    """Exact number of pairs per defect for n pairs: largest remainder, ties broken by table order."""
    quotas = [(d.name, n * d.percent / 100) for d in DEFECTS]
    counts = {name: int(q) for name, q in quotas}
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i][1] - int(quotas[i][1])), i))
    for i in by_remainder[: n - sum(counts.values())]:
        counts[quotas[i][0]] += 1
    return counts


def assign_defects(n: int, seed: int) -> list[str]:
    """The defect of each index: the exact counts, shuffled. A duplicate copies an earlier clean pair, so
    if the first duplicate comes before every clean pair the two swap places (`none` has >= 1 pair)."""
    labels = [name for name, count in defect_counts(n).items() for _ in range(count)]
    random.Random(f"vlcurate-synth-defects:{seed}").shuffle(labels)
    if "duplicate" in labels:
        first_duplicate = labels.index("duplicate")
        first_clean = min(i for i, d in enumerate(labels) if d in ("none", "chinese"))
        if first_clean > first_duplicate:
            labels[first_duplicate], labels[first_clean] = labels[first_clean], labels[first_duplicate]
    return labels


@dataclasses.dataclass
class SynthRecord:
    key: str
    defect: str
    lang: str | None
    caption: str
    url: str
    image: bytes | None
    ext: str  # file extension of the image (also for a missing image: the URL's)
    image_format: str | None  # what the bytes are, as PIL names it; None when undecodable or missing
    width: int | None  # as the size filters see it: after EXIF orientation
    height: int | None
    duplicate_of: str | None = None
    scene: Scene | None = dataclasses.field(default=None, repr=False)  # what the image shows (not written)

    def ground_truth(self) -> dict[str, Any]:
        defect = DEFECT_BY_NAME[self.defect]
        return {
            "key": self.key,
            "defect": self.defect,
            "expected_reason": defect.expected_reason,
            "expected_reason_with_clip": defect.expected_reason_with_clip,
            "lang": self.lang,
            "image_format": self.image_format,
            "width": self.width,
            "height": self.height,
            "duplicate_of": self.duplicate_of,
        }


# ---------------------------------------------------------------------------------------------- images


def _clean_size(rng: random.Random) -> tuple[int, int]:
    while True:
        width, height = rng.randint(*_CLEAN_SIDE), rng.randint(*_CLEAN_SIDE)
        if max(width, height) / min(width, height) <= 2.0:
            return width, height


def _small_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(40, 180)
    long = rng.randint(short, int(short * 2.2))  # aspect stays <= 2.2: only too_small applies
    return (short, long) if rng.random() < 0.5 else (long, short)


def _wide_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(208, 256)
    long = round(short * rng.uniform(3.5, 6.0))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _encode(image: Image.Image, fmt: str, rng: random.Random, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        kwargs: dict[str, Any] = {"quality": rng.randint(80, 90)}
        if orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kwargs["exif"] = exif.tobytes()
        image.save(buffer, "JPEG", **kwargs)
    elif fmt == "PNG":
        image.save(buffer, "PNG", compress_level=1)  # PNG dominates generation time: speed over size
    else:
        image.save(buffer, "WEBP", quality=rng.randint(75, 90), method=0)
    return buffer.getvalue()


def _open_error(data: bytes) -> Exception | None:
    """What PIL raises when opening the header (what the probe step does), or None when it opens."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)):
                return None
    except Exception as exc:
        return exc


def _decodes(data: bytes) -> bool:
    """True when the image decodes fully, plainly or in JPEG draft mode (as decode_check does)."""
    for draft in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    if draft:
                        img.draft("RGB", (64, 64))
                    img.load()
        except Exception:
            continue
        return True
    return False


_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
    "<p>The requested URL /photos/{n}.jpg was not found on this server.</p></body></html>"
)


def _undecodable(jpeg: bytes, rng: random.Random) -> bytes:
    """Bytes PIL cannot identify; rerolled in the rare case that random bytes pass some format check."""
    while True:
        kind = rng.choice(("random", "error_page", "junk_header"))
        if kind == "random":
            data = rng.randbytes(rng.randint(200, 4000))
        elif kind == "error_page":
            data = _ERROR_PAGE.format(n=rng.randrange(10**6)).encode()
        else:
            cut = rng.randint(16, 64)
            data = rng.randbytes(cut) + jpeg[cut:]
        # Only "cannot identify" is planted: another error might map to another reject reason.
        if isinstance(_open_error(data), UnidentifiedImageError):
            return data


def _truncated(jpeg: bytes, rng: random.Random) -> bytes:
    fraction = rng.uniform(0.4, 0.7)
    while fraction > 0.1:
        data = jpeg[: int(len(jpeg) * fraction)]
        if _open_error(data) is None and not _decodes(data):
            return data
        fraction -= 0.05  # not seen in practice: a cut this deep always breaks the entropy-coded data
    raise RuntimeError("could not truncate a JPEG into a header-only file")


# -------------------------------------------------------------------------------------------- captions

_EMOJI = (
    "😀", "😍", "🔥", "👍", "🎉", "🌟", "✨", "📷", "🌈", "❤️",  # plain (❤️ = U+2764 + VS16)
    "👍🏽", "👋🏻", "👏🏿",  # skin tones
    "👨‍👩‍👧", "👩‍💻", "🏳️‍🌈",  # ZWJ sequences
    "🇨🇳", "🇺🇸", "🇫🇷", "🇯🇵",  # flags (regional indicator pairs)
    "1️⃣", "#️⃣", "3️⃣",  # keycaps
)  # fmt: skip
_FOREIGN_WORDS = (
    "かわいい", "シンプル", "写真です", "イラスト",  # Japanese kana (and kanji)
    "사진", "안녕하세요", "디자인",  # Korean Hangul
    "картинка", "фото", "рисунок",  # Cyrillic
    "صورة", "تصميم", "مرحبا",  # Arabic
)  # fmt: skip
_SEO_EN = (
    "free download", "high quality", "best price", "buy now", "vector illustration", "graphic design",
    "abstract background", "modern art print", "home decor", "wall art", "poster", "wallpaper",
    "royalty free", "premium template", "geometric shapes", "minimalist style", "colorful pattern",
    "printable", "gift idea", "trending now", "top rated", "fast shipping", "limited offer",
    "new collection", "digital art", "creative concept", "kids education", "classroom poster",
    "learning shapes", "flat design", "cheap", "sale", "official store", "hd", "4k",
)  # fmt: skip
_SEO_ZH = (
    "高清壁纸", "免费下载", "矢量插画", "设计素材", "背景图片", "几何图形", "简约风格", "海报模板",
    "创意设计", "装饰画", "热门推荐", "正版图库", "儿童教育", "认识形状", "平面设计", "精美图片",
    "包邮", "限时优惠", "新品上市", "卡通图案",
)  # fmt: skip
_HTML_WRAPPERS = (
    "<p>{}</p>",
    '<div class="caption">{}</div>',
    '<span style="font-weight:bold">{}</span>',
    "{}<br/>",
    '<a href="https://www.example.com/gallery/{n}">{}</a>',
    "<p><i>{}</i></p>",
    "<h2>{}</h2>",
    "<td>{}</td>",
)
_EMPTY_CAPTIONS = ("", " ", "   ", "\n", "\t", " \n ", "\u3000", "\xa0 ")


def _html(caption: str, rng: random.Random) -> str:
    """Wraps the caption in a tag, plus entities or an inner tag; stripped of markup it reads as the
    caption again ("&" for one "and")."""
    text = caption
    edits = rng.sample(("amp", "nbsp", "quot", "bold"), rng.randint(1, 2))
    if "amp" in edits:
        text = text.replace(" and ", " &amp; ", 1) if " and " in text else text.replace("，", "，&amp; ", 1)
    if "nbsp" in edits:
        text = text.replace(" ", "&nbsp;", 1) if " " in text else text.replace("，", "，&nbsp;", 1)
    if "quot" in edits and '"' in text:
        text = text.replace('"', "&quot;")
    if "bold" in edits:  # cut between words, so a cleaner that turns tags into spaces splits no word
        gaps = [i for i, c in enumerate(text) if c in " ，"]
        cut = min(gaps, key=lambda i: abs(i - len(text) // 2)) if gaps else len(text)
        text = f"<b>{text[:cut]}</b>{text[cut:]}"
    wrapper = rng.choice(_HTML_WRAPPERS)
    return wrapper.replace("{n}", str(rng.randrange(10**5))).format(text)


def _irregular(caption: str, rng: random.Random) -> str:
    """Adds 1-3 of: a camera file name, a URL, "stock photo", repeated punctuation."""
    kinds = rng.sample(("file", "url", "stock", "punct"), rng.randint(1, 3))
    text = caption
    if "punct" in kinds:
        text = text.rstrip(".。") + rng.choice(("!!!", "!!!!!", "....", "???", "!!!!!!"))
    if "stock" in kinds:
        text = text + rng.choice((" - stock photo", " | Stock Photo", " stock photo", " (stock photo)"))
    if "url" in kinds:
        host, number = rng.choice(_HOSTS), rng.randrange(10**6)
        url = rng.choice((f"https://{host}/images/{number}.html", f"www.{host.split('.', 1)[1]}/p/{number}"))
        text = f"{text} {url}" if rng.random() < 0.7 else f"{url} {text}"
    if "file" in kinds:
        name = rng.choice((f"IMG_{rng.randint(1000, 9999)}.JPG", f"DSC{rng.randint(10000, 99999)}.jpg"))
        text = f"{name} {text}" if rng.random() < 0.7 else f"{text} {name}"
    return text


def _insert_word(caption: str, word: str, rng: random.Random) -> str:
    where = rng.choice(("start", "end", "middle"))
    if where == "start":
        return f"{word} {caption}"
    if where == "end":
        return f"{caption} {word}"
    spaces = [i for i, c in enumerate(caption) if c in " ，"]
    cut = rng.choice(spaces) + 1 if spaces else len(caption) // 2
    return f"{caption[:cut]}{word} {caption[cut:]}"


def _emoji(caption: str, rng: random.Random) -> str:
    emoji = rng.choice(_EMOJI)
    return _insert_word(caption, emoji * rng.choice((1, 1, 2, 3)), rng)


def _disallowed_script(caption: str, rng: random.Random) -> str:
    return _insert_word(caption, rng.choice(_FOREIGN_WORDS), rng)


def _too_short(scene: Scene, lang: str, rng: random.Random) -> str:
    shape = scene.shapes[0]
    if lang == "zh":
        return rng.choice(("图片", "照片", "图", KINDS_ZH[shape.kind], COLORS_ZH[shape.color]))
    return rng.choice(
        ("image", "photo", "picture", "untitled", "img", shape.kind, f"{shape.color} {shape.kind}")
    )


def _too_long(caption: str, lang: str, rng: random.Random) -> str:
    target = rng.randint(450, 800)
    words = _SEO_ZH if lang == "zh" else _SEO_EN
    separator, intro = ("，", " 关键词：") if lang == "zh" else (", ", " Keywords: ")
    tags: list[str] = []
    while len(caption) + len(intro) + len(separator.join(tags)) < target:
        tags.append(rng.choice(words))
    return caption + intro + separator.join(tags)


def _other_scene(scene: Scene, rng: random.Random) -> Scene:
    """A scene sharing no (colour, kind) and not the background, so the caption is plainly wrong."""
    mine = {(s.color, s.kind) for s in scene.shapes}
    while True:
        other = random_scene(rng)
        if other.background != scene.background and not mine & {(s.color, s.kind) for s in other.shapes}:
            return other


# --------------------------------------------------------------------------------------------- records


def _url(rng: random.Random, scene: Scene | None, ext: str) -> str:
    slug = "-".join(f"{s.color}-{s.kind}" for s in scene.shapes) if scene else "image"
    return f"https://{rng.choice(_HOSTS)}/photos/{rng.randrange(10**6):06d}/{slug}.{ext}"


def make_record(index: int, defect: str, seed: int, originals: list[SynthRecord]) -> SynthRecord:
    """One pair with its defect planted. Draws from a generator seeded by (seed, index) alone, so a
    record does not depend on the others (except a duplicate, which copies one of `originals`)."""
    rng = random.Random(f"vlcurate-synth:{seed}:{index}")
    key = f"{index:09d}"
    if defect == "duplicate":
        original = rng.choice(originals)
        return dataclasses.replace(
            original,
            key=key,
            defect=defect,
            url=_url(rng, original.scene, original.ext),  # the same picture re-posted elsewhere
            duplicate_of=original.key,
        )
    lang = {"none": "en", "chinese": "zh"}.get(defect) or ("zh" if rng.random() < _ZH_PROBABILITY else "en")
    scene = random_scene(rng)
    caption = (caption_zh if lang == "zh" else caption_en)(scene, rng)

    size = {"too_small": _small_size, "aspect_ratio": _wide_size}.get(defect, _clean_size)(rng)
    if defect in ("exif_rotated", "image_truncated", "image_undecodable"):
        fmt = "JPEG"
    else:
        fmt = rng.choices(list(_FORMAT_WEIGHTS), weights=list(_FORMAT_WEIGHTS.values()))[0]
    width, height = size
    if defect == "exif_rotated":
        while abs(width - height) < 48:  # a visibly non-square image, so a swap is detectable
            width, height = _clean_size(rng)
        orientation = rng.choice((6, 8))
        # Stored pixels are the displayed image turned back; EXIF 6 means "rotate 90 clockwise to show".
        turn = Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270
        image = _encode(render(scene, width, height).transpose(turn), fmt, rng, orientation)
    else:
        image = _encode(render(scene, width, height), fmt, rng)
    image_format: str | None = fmt

    if defect == "image_undecodable":
        image, image_format, width, height = _undecodable(image, rng), None, None, None
    elif defect == "image_truncated":
        image = _truncated(image, rng)
    elif defect == "image_missing":
        image, image_format, width, height = None, None, None, None

    if defect == "html":
        caption = _html(caption, rng)
    elif defect == "irregular_pattern":
        caption = _irregular(caption, rng)
    elif defect == "emoji":
        caption = _emoji(caption, rng)
    elif defect == "disallowed_script":
        caption = _disallowed_script(caption, rng)
    elif defect == "too_short":
        caption = _too_short(scene, lang, rng)
    elif defect == "too_long":
        caption = _too_long(caption, lang, rng)
    elif defect == "clip_mismatch":
        caption = (caption_zh if lang == "zh" else caption_en)(_other_scene(scene, rng), rng)
    elif defect == "caption_empty":
        caption, lang = rng.choice(_EMPTY_CAPTIONS), None
    return SynthRecord(
        key=key,
        defect=defect,
        lang=lang,
        caption=caption,
        url=_url(rng, scene, _EXT[fmt]),
        image=image,
        ext=_EXT[fmt],
        image_format=image_format,
        width=width,
        height=height,
        scene=scene,
    )


def _make_independent(job: tuple[int, str, int]) -> SynthRecord:
    index, defect, seed = job
    return make_record(index, defect, seed, [])


def default_workers(n: int) -> int:
    """Processes for n records: rendering and PNG encoding dominate, and records are independent. Small
    runs stay in-process (a pool costs more than it saves); pools need fork (cheap, no re-import)."""
    if n < 500 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 8))


def make_records(n: int, seed: int, workers: int = 1, made: CountReporter | None = None) -> list[SynthRecord]:
    """All n records in key order; the same for any number of worker processes. Image bytes are unique
    except for planted duplicates, so an exact dedup step finds exactly the duplicates. `made` counts
    the records as they are made."""
    made = made or CountReporter(SOURCE_NAME, "made", n)
    labels = assign_defects(n, seed)
    jobs = [(i, d, seed) for i, d in enumerate(labels) if d != "duplicate"]
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            chunk = max(1, min(64, len(jobs) // (workers * 8)))  # small enough for live progress
            each = pool.imap(_make_independent, jobs, chunksize=chunk)
        else:
            each = map(_make_independent, jobs)
        by_index = {}
        for job, record in zip(jobs, each):
            by_index[job[0]] = record
            made.add()

    records: list[SynthRecord] = []
    originals: list[SynthRecord] = []
    seen: set[bytes] = set()
    for index, defect in enumerate(labels):
        if defect == "duplicate":
            records.append(make_record(index, defect, seed, originals))
            continue
        record = by_index[index]
        attempt = 0
        while record.image is not None:
            digest = hashlib.blake2b(record.image, digest_size=16).digest()
            if digest not in seen:
                seen.add(digest)
                break
            attempt += 1  # the same scene and size drawn twice: astronomically rare, but reroll
            record = make_record(index, defect, seed + 1_000_003 * attempt, [])
        records.append(record)
        if defect in ("none", "chinese"):
            originals.append(record)
    made.add(n - len(jobs))  # the duplicates, copied in the loop above
    made.done()
    return records


# --------------------------------------------------------------------------------------------- writing

# Everything the generator writes at the top of out_dir; ground_truth.jsonl is written last.
OWNED = ("wds", "parquet", "jsonl", "clean.yaml", "ground_truth.jsonl")
_CLEAN_YAML = """\
# `vlcurate clean --config clean.yaml`: cleans the synthetic WebDataset copy written beside this file.
# Paths are relative to this file. ground_truth.jsonl says which pairs must be kept or rejected, and why.
sources:
  - name: synth
    format: webdataset
    paths:
      - wds/*.tar
steps:
  clip_score:
    models: bundled:tiny-synth-clip   # trained on this synthetic domain (model/train_tiny_clip.py)
  clip_filter:
    # LAION's 0.28 fits OpenAI ViT-B/32, not this model: its matched pairs average 0.86 and mismatched
    # ones 0.0; 0.4 catches 95-98% of planted mismatches at 97-100% precision on held-out synthetic data.
    threshold: 0.4
output:
  dir: clean-out
"""
_PARQUET_SCHEMA = pa.schema(
    [("key", pa.string()), ("caption", pa.string()), ("image", pa.binary()), ("url", pa.string())]
)


def _prepare(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(os.path.join(out_dir, "ground_truth.jsonl")) and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a synthetic dataset (it has ground_truth.jsonl). "
            "Pass --overwrite to replace it, or choose another --out."
        )
    for name in OWNED:  # leftovers of an interrupted run, or the dataset being replaced
        path = os.path.join(out_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    for folder in ("wds", "parquet", os.path.join("jsonl", "images")):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _write_tar(out_dir: str, shard: int, records: list[SynthRecord]) -> str:
    tar_path = os.path.join(out_dir, "wds", f"{SOURCE_NAME}-{shard:05d}.tar")
    with open(tar_path, "wb") as fh, TarShardWriter(fh) as writer:
        for r in records:
            meta = {
                "key": r.key,
                "url": r.url,
                "caption": r.caption,
                "status": "success",
                "width": r.width,
                "height": r.height,
            }
            files = {r.ext: r.image} if r.image is not None else {}
            files.update({"txt": r.caption.encode("utf-8"), "json": _dumps(meta).encode("utf-8")})
            writer.add(r.key, files)
    return tar_path


def _write_parquet(out_dir: str, shard: int, records: list[SynthRecord]) -> str:
    parquet_path = os.path.join(out_dir, "parquet", f"{SOURCE_NAME}-{shard:05d}.parquet")
    table = pa.table(
        {
            "key": [r.key for r in records],
            "caption": [r.caption for r in records],
            "image": [r.image for r in records],
            "url": [r.url for r in records],
        },
        schema=_PARQUET_SCHEMA,
    )
    pq.write_table(table, parquet_path)
    return parquet_path


def _write_jsonl(out_dir: str, records: list[SynthRecord], wrote: CountReporter) -> str:
    folder = os.path.join(out_dir, "jsonl")
    path = os.path.join(folder, f"{SOURCE_NAME}.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for r in records:
            relative = f"images/{r.key}.{r.ext}"
            if r.image is not None:  # image_missing: the line names a file that is never written
                with open(os.path.join(folder, relative), "wb") as img:
                    img.write(r.image)
            fh.write(_dumps({"key": r.key, "caption": r.caption, "image": relative, "url": r.url}) + "\n")
            wrote.add()
    return path


def write_synthetic_dataset(
    out_dir: str,
    n: int,
    seed: int,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: TextIO | None = None,
    interval: float = 2.0,
) -> dict[str, Any]:
    """Writes n synthetic pairs in three formats plus ground truth and a clean config; returns a summary.

    Refuses a directory that already holds a dataset unless `overwrite` (then only the generator's own
    files are replaced; anything else in the directory, such as a `clean-out/`, is left alone).
    `workers` (default: `default_workers(n)`) never changes the output, only the speed. With a
    `progress` stream, how many pairs are made, then written in each format, is printed there every
    `interval` seconds and at the end of each phase.
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}.")
    started = time.monotonic()
    _prepare(out_dir, overwrite)

    def reporter(what: str) -> CountReporter:
        return CountReporter(SOURCE_NAME, what, n, stream=progress, interval=interval, start=started)

    records = make_records(n, seed, default_workers(n) if workers is None else workers, reporter("made"))
    shards = [records[start : start + SAMPLES_PER_SHARD] for start in range(0, n, SAMPLES_PER_SHARD)]
    files: list[str] = []
    for fmt, write in (("webdataset", _write_tar), ("parquet", _write_parquet)):
        wrote = reporter(f"wrote {fmt}")
        for shard, part in enumerate(shards):
            files.append(write(out_dir, shard, part))
            wrote.add(len(part))
        wrote.done()
    wrote = reporter("wrote jsonl")
    files.append(_write_jsonl(out_dir, records, wrote))
    wrote.done()
    config_path = os.path.join(out_dir, "clean.yaml")
    with open(config_path, "w", encoding="utf-8") as fh:
        fh.write(_CLEAN_YAML)
    files.append(config_path)
    truth_path = os.path.join(out_dir, "ground_truth.jsonl")
    with open(truth_path, "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(_dumps(r.ground_truth()) + "\n" for r in records)
    files.append(truth_path)

    reasons = Counter(DEFECT_BY_NAME[r.defect].expected_reason for r in records)
    reasons_with_clip = Counter(DEFECT_BY_NAME[r.defect].expected_reason_with_clip for r in records)
    return {
        "out_dir": out_dir,
        "n": n,
        "seed": seed,
        "defects": {d.name: sum(r.defect == d.name for r in records) for d in DEFECTS},
        "langs": dict(Counter(r.lang for r in records)),
        "formats": dict(Counter(r.image_format for r in records if r.image_format)),
        "expected_kept": reasons.pop(None, 0),
        "expected_rejected": dict(sorted(reasons.items())),
        "expected_kept_with_clip": reasons_with_clip[None],
        "files": [os.path.relpath(f, out_dir) for f in files],
        "seconds": round(time.monotonic() - started, 3),
    }


# ------------------------------------------------------------------------------------------------- CLI


def add_synth_parser(sub: Any) -> None:
    """Adds `synth` to the CLI's subparsers."""
    p = sub.add_parser(
        "synth",
        help="write a synthetic image-text dataset with planted defects and ground truth",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", required=True, help="output directory (local)")
    p.add_argument("--n", type=int, default=2000, help="number of pairs (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--workers", type=int, help="processes (default: CPUs, up to 8; 1 below 500 pairs)")


def cmd_synth(args: argparse.Namespace) -> int:
    summary = write_synthetic_dataset(
        args.out,
        args.n,
        args.seed,
        overwrite=args.overwrite,
        workers=getattr(args, "workers", None),
        progress=sys.stderr,
    )
    rejected = sum(summary["expected_rejected"].values())
    print(
        f"[vlcurate] wrote {summary['n']:,} synthetic pairs in {summary['seconds']:.1f}s to {args.out} "
        f"(expected without CLIP: kept {summary['expected_kept']:,}, rejected {rejected:,}; clean.yaml's CLIP "
        f"filter also targets the planted mismatched captions: kept {summary['expected_kept_with_clip']:,} if "
        "it catches all of them; see ground_truth.jsonl)",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlcurate.pipelines.synth")
    add_synth_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cmd_synth(args)
    except ConfigError as exc:
        print(f"vlcurate synth: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
