"""Removal of unregular patterns from captions (Qwen-VL paper, appendix A.1, step 8).

What goes, in this order:
1. Qwen-VL special-token strings (docs/qwenvl-format.md section 4): finetune.py encodes with every special
   token allowed, so a literal `<|im_end|>` or `<box>` in a caption would become a control token.
2. URLs (with a scheme, `www.`, or a bare domain followed by a path), e-mail addresses, camera file names
   (IMG_1234.JPG, DSC_0042, PXL_20210101_...), generic image file names (image.png, photo-2.jpg) and a
   documented list of boilerplate phrases (DEFAULT_BOILERPLATE). Other file names keep their words:
   "Sunset at Alabama.jpg" -> "Sunset at Alabama", "wrapping_paper.jpg" -> "wrapping paper".
3. Brackets left empty, runs of repeated punctuation ("!!!!" -> "!", "....." -> "..."), whitespace runs,
   and separators dangling at either end (" - ", "|", ":").
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Cleaner, string_list
from vlcurate.filters.registry import register

# --- special tokens ---------------------------------------------------------------------------------
# Exactly the strings the Qwen-VL tokenizer turns into special tokens (case-sensitive, like tiktoken).
_SPECIAL_TOKENS = regex.compile(
    r"<\|(?:endoftext|im_start|im_end|extra_\d+)\|>|</?(?:img|ref|box|quad)>|<imgpad>"
)


def scrub_special_tokens(text: str) -> str:
    """Removes every Qwen-VL special-token string from `text`.

    Repeats until none is left, because removing one can join the pieces of another
    ("<im<img>g>" -> "<img>").
    """
    if "<" not in text:
        return text
    while True:
        cleaned = _SPECIAL_TOKENS.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def has_special_tokens(text: str) -> bool:
    """True when `text` holds a string the Qwen-VL tokenizer would read as a special token."""
    return "<" in text and _SPECIAL_TOKENS.search(text) is not None


# --- removals ----------------------------------------------------------------------------------------
# Boilerplate that carries nothing about the image: stock-site and gallery furniture, and the automatic
# alt text prefix of Facebook. Matched case-insensitively at word boundaries; spaces and hyphens are
# interchangeable ("royalty-free"), a phrase ending in a letter also matches its plural ("stock photos"),
# and a picture id right after a phrase goes with it ("Stock Photo #13233201").
DEFAULT_BOILERPLATE: tuple[str, ...] = (
    "image may contain:",
    "royalty free",
    "stock photo",
    "stock photography",
    "stock image",
    "stock picture",
    "stock vector",
    "stock illustration",
    "stock footage",
    "click to enlarge",
    "click here to enlarge",
    "click image to enlarge",
    "click to view larger image",
    "click for larger image",
    "click to zoom",
    "view larger image",
    "view full size",
    "view on flickr",
    "no description available",
    "no image available",
    "image not available",
    "image not found",
    "[...]",
    "[…]",
    "(...)",
    "(…)",
)

_IMAGE_EXT = r"(?:jpe?g|png|gif|webp|bmp|tiff?|heic|svg)"
_URL = regex.compile(
    r"(?:\b(?i:https?|ftp)://|\b(?i:www)\.)[^\s<>\"]*[^\s<>\".,;:!?)\]}']"
    r"|\b(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,6}/[^\s<>\"]*[^\s<>\".,;:!?)\]}']?"
)
_EMAIL = regex.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Camera and phone naming schemes; the digits end the name even when words follow unspaced
# ("IMG_3138Billabong" -> "Billabong").
_CAMERA = regex.compile(
    r"\b(?i:(?:IMG|DSC[FN]?|_DSC|_MG|GOPR|DCIM)[_-]?\d{3,}|(?:PXL|MVIMG|VID|DJI|SAM|CIMG|PICT|WP)_\d{3,})"
    rf"(?:[_-][A-Za-z]*\d+)*(?i:\.{_IMAGE_EXT}\b)?"
)
# Image file names: those whose stem says nothing go whole, the others lose only the extension (group
# "stem" keeps their words).
_FILE = regex.compile(
    rf"\b(?i:(?:image|img|photo|picture|pic|untitled|unnamed|file|thumb|thumbnail|download|screenshot)"
    rf"[_-]?\d*\.{_IMAGE_EXT})\b"
    rf"|(?P<stem>\b[\w-]*\w)(?i:\.{_IMAGE_EXT})\b"
)
# Cheap tests (on the case-folded caption) that must hold for the pattern after them to match at all:
# each pattern only runs on the few captions that pass; most captions pass none.
_CAMERA_HINTS = ("_", "img", "dsc", "gopr", "dcim")  # every name above holds one of these
_FILE_HINTS = (".jp", ".png", ".gif", ".webp", ".bmp", ".tif", ".heic", ".svg")


def _holds_any(text: str, parts: tuple[str, ...]) -> bool:
    # A plain loop, not any() over a generator (ruff's SIM110): the generator costs ~0.07 us per part,
    # which made these tests half of clean_patterns' time on captions that match nothing.
    for part in parts:  # noqa: SIM110
        if part in text:
            return True
    return False


def _phrase_pattern(phrase: str) -> str:
    words = [regex.escape(w) for w in regex.split(r"[\s-]+", phrase.strip()) if w]
    pattern = r"[\s-]+".join(words)
    if phrase[-1:].isalpha():
        pattern += "s?"
    if phrase[:1].isalnum():
        pattern = r"\b" + pattern
    if phrase[-1:].isalnum():
        pattern += r"\b"
    # Stock sites follow the phrase with the picture's id: "Stock Photo - 9824382", "Stock Photo #13233201".
    return pattern + r"(?:\s*[-–—:]?\s*#?\d{5,}\b)?"


def _boilerplate_pattern(phrases: list[str]) -> tuple[regex.Pattern | None, tuple[str, ...]]:
    """The phrases' pattern, and anchors: words such that every phrase holds one, so a caption holding
    none cannot match. Few anchors make a cheap test: picked greedily, most phrases covered first."""
    phrases = sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True)
    if not phrases:
        return None, ()
    pattern = regex.compile("(?i:" + "|".join(_phrase_pattern(p) for p in phrases) + ")")
    uncovered = [set(regex.split(r"[\s-]+", p.casefold())) - {""} for p in phrases]
    anchors = []
    while uncovered:
        words = {w for ws in uncovered for w in ws}
        best = max(sorted(words), key=lambda w: (sum(w in ws for ws in uncovered), len(w)))
        anchors.append(best)
        uncovered = [ws for ws in uncovered if best not in ws]
    return pattern, tuple(anchors)


def _replace_file(match: regex.Match) -> str:
    stem = match.group("stem")
    return " " if stem is None else stem.replace("_", " ")


# --- tidying -------------------------------------------------------------------------------------------
_EMPTY_BRACKETS = regex.compile(r"\(\s*\)|\[\s*\]|\{\s*\}")
# Runs of one punctuation mark; dots keep an ellipsis, other marks collapse to one.
_PUNCT_RUN = regex.compile(r"([!?,;:])\1+|\.{4,}|…{2,}|([-_=*~#+/\\|])\2{2,}")
# After a removal, separators can pile up ("bonfire - , Artist"): keep the first of the pile.
_SEPARATOR_PILE = regex.compile(r"\s*([-–—|,;:/])(?:\s*[-–—|,;:/])+(?=\s|$)")
# ... and punctuation that followed the removed text is left after a space ("Visit <url>." -> "Visit .").
_SPACE_BEFORE_PUNCT = regex.compile(r"\s+(?=[.,;:!?](?:\s|$))")
# Separators dangling at either end; a leading dash before a digit is a minus sign and stays.
_EDGES = regex.compile(r"^(?:[\s|:;,/·•~_=*]|[-–—](?!\d))+|[\s\-–—|:;,/·•~_=*]+$")
_EDGE_CHARS = frozenset(" -–—|:;,/·•~_=*")


def _punct_run(match: regex.Match) -> str:
    run = match.group(0)
    return "..." if run[0] == "." else run[0]


def _tidy_pile(match: regex.Match) -> str:
    first = match.group(1)
    return first if first in ",;:" else " " + first


@register
class CleanPatterns(Cleaner):
    """Removes special-token strings, URLs, e-mail addresses, camera/file names and boilerplate, then
    tidies punctuation and whitespace (see the module docstring for the exact rules).

    `boilerplate`: phrases to remove (default DEFAULT_BOILERPLATE, chosen from what stock sites, galleries
    and social networks put in alt text); `extra_boilerplate` adds phrases to that list for one source.
    """

    name = "clean_patterns"

    def __init__(
        self, boilerplate: list[str] | None = None, extra_boilerplate: list[str] | None = None
    ) -> None:
        self.boilerplate = string_list(
            DEFAULT_BOILERPLATE if boilerplate is None else boilerplate, "boilerplate"
        )
        self.extra_boilerplate = string_list(extra_boilerplate or [], "extra_boilerplate")
        self._boilerplate, self._anchors = _boilerplate_pattern(self.boilerplate + self.extra_boilerplate)

    def clean(self, text: str) -> str:
        text = scrub_special_tokens(text)
        cleaned = self._remove(text)
        removed = cleaned != text
        text = cleaned
        if removed:
            text = _EMPTY_BRACKETS.sub("", text)
            text = _SEPARATOR_PILE.sub(_tidy_pile, text)
            text = _SPACE_BEFORE_PUNCT.sub("", text)
        text = _PUNCT_RUN.sub(_punct_run, text)
        if "  " in text or removed:
            text = " ".join(text.split())
        if text and (text[0] in _EDGE_CHARS or text[-1] in _EDGE_CHARS):
            text = _EDGES.sub("", text)
        if has_special_tokens(text):  # tidying can join one ("<|||im_end|>" -> "<|im_end|>"): again
            return self.clean(text)
        return text

    def _remove(self, text: str) -> str:
        # In this order: a URL may hold an e-mail-like or file-like part, which goes with it.
        folded = text.casefold()
        if "/" in text or "www." in folded:
            text = _URL.sub(" ", text)
        if "@" in text:
            text = _EMAIL.sub(" ", text)
        if _holds_any(folded, _CAMERA_HINTS):
            text = _CAMERA.sub(" ", text)
        if "." in text and _holds_any(folded, _FILE_HINTS):
            text = _FILE.sub(_replace_file, text)
        if self._boilerplate is not None and _holds_any(folded, self._anchors):
            text = self._boilerplate.sub(" ", text)
        return text
