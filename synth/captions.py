"""Caption planters of the synthetic dataset: each turns a clean caption (model/scenes.py) into one with
a single text defect (markup, URLs and file names, emoji, another script, too short, too long, empty, or
a caption of another scene)."""

from __future__ import annotations

import random

from vlcurate.model.scenes import COLORS_ZH, KINDS_ZH, Scene, random_scene

HOSTS = ("images.example.com", "cdn.example.net", "static.example.org", "photos.example.com")

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


def html(caption: str, rng: random.Random) -> str:
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


def irregular(caption: str, rng: random.Random) -> str:
    """Adds 1-3 of: a camera file name, a URL, "stock photo", repeated punctuation."""
    kinds = rng.sample(("file", "url", "stock", "punct"), rng.randint(1, 3))
    text = caption
    if "punct" in kinds:
        text = text.rstrip(".。") + rng.choice(("!!!", "!!!!!", "....", "???", "!!!!!!"))
    if "stock" in kinds:
        text = text + rng.choice((" - stock photo", " | Stock Photo", " stock photo", " (stock photo)"))
    if "url" in kinds:
        host, number = rng.choice(HOSTS), rng.randrange(10**6)
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


def emoji(caption: str, rng: random.Random) -> str:
    emoji = rng.choice(_EMOJI)
    return _insert_word(caption, emoji * rng.choice((1, 1, 2, 3)), rng)


def disallowed_script(caption: str, rng: random.Random) -> str:
    return _insert_word(caption, rng.choice(_FOREIGN_WORDS), rng)


def too_short(scene: Scene, lang: str, rng: random.Random) -> str:
    shape = scene.shapes[0]
    if lang == "zh":
        return rng.choice(("图片", "照片", "图", KINDS_ZH[shape.kind], COLORS_ZH[shape.color]))
    return rng.choice(
        ("image", "photo", "picture", "untitled", "img", shape.kind, f"{shape.color} {shape.kind}")
    )


def too_long(caption: str, lang: str, rng: random.Random) -> str:
    target = rng.randint(450, 800)
    words = _SEO_ZH if lang == "zh" else _SEO_EN
    separator, intro = ("，", " 关键词：") if lang == "zh" else (", ", " Keywords: ")
    tags: list[str] = []
    while len(caption) + len(intro) + len(separator.join(tags)) < target:
        tags.append(rng.choice(words))
    return caption + intro + separator.join(tags)


def other_scene(scene: Scene, rng: random.Random) -> Scene:
    """A scene sharing no (colour, kind) and not the background, so the caption is plainly wrong."""
    mine = {(s.color, s.kind) for s in scene.shapes}
    while True:
        other = random_scene(rng)
        if other.background != scene.background and not mine & {(s.color, s.kind) for s in other.shapes}:
            return other


def empty(rng: random.Random) -> str:
    """An empty or whitespace-only caption."""
    return rng.choice(_EMPTY_CAPTIONS)
