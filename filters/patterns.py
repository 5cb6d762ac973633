"""Removal of unregular patterns from captions (Qwen-VL paper, appendix A.1, step 8).

What goes, in this order:
1. Qwen-VL special-token strings (docs/qwenvl-format.md section 4): finetune.py encodes with every special
   token allowed, so a literal `<|im_end|>` or `<box>` in a caption would become a control token. Which
   strings, and how they are removed: model/token_scrub.py (the formatters scrub with it too).
2. URLs (with a scheme, `www.`, or a bare domain followed by a path), e-mail addresses, camera file names
   (IMG_1234.JPG, DSC_0042, PXL_20210101_...), generic image file names (image.png, photo-2.jpg) and a
   documented list of boilerplate phrases (DEFAULT_BOILERPLATE). Other file names keep their words:
   "Sunset at Alabama.jpg" -> "Sunset at Alabama", "wrapping_paper.jpg" -> "wrapping paper".
3. Brackets left empty, runs of repeated punctuation ("!!!!" -> "!", "....." -> "..."), whitespace runs,
   and separators dangling at either end (" - ", "|", ":").

Time is linear in the caption's length, also on long runs of what it removes (tests/hostile/test_text.py):
the patterns are written so that no match is tried from every position of a run.
"""

from __future__ import annotations

import regex

from vlcurate.filters.base import Cleaner, string_list
from vlcurate.model.token_scrub import has_special_tokens, scrub_special_tokens

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
# A URL is one with a scheme or `www.` (_URL_SCHEME) or a bare domain followed by a path (_URL_BARE),
# whichever starts first (the scheme form when both start at one place): `_remove_urls`.
_URL_SCHEME = regex.compile(r"(?:\b(?i:https?|ftp)://|\b(?i:www)\.)[^\s<>\"]*[^\s<>\".,;:!?)\]}']")
# Possessive: a label never gives characters back (it must end at a "."), nor the group of labels one
# (the last 2-6 letters end at the "/", not at a "."); backtracking over them was quadratic on "a.a.a...".
_URL_BARE = regex.compile(r"\b(?:[A-Za-z0-9-]++\.)++[A-Za-z]{2,6}/[^\s<>\"]*[^\s<>\".,;:!?)\]}']?")
# The run of domain characters that ends where the match is made (`(?r)`: matched from its end), and
# where a bare domain in it can start.
_DOMAIN_RUN = regex.compile(r"(?r)[A-Za-z0-9.-]+")
_BARE_START = regex.compile(r"\b[A-Za-z0-9-]")
_BARE_DOMAIN = regex.compile(r"\b(?:[A-Za-z0-9-]++\.)++[A-Za-z]{2,6}/")
# A match starting later in the same run of [\w.+-] would end where one from an earlier start in it
# ends, so the address starts only where no word character of the run since the last match (\G) comes
# before it, and takes the run possessively (it ends at the "@"): trying every start made "a.a.a.a... @"
# quadratic.
_EMAIL = regex.compile(r"\b(?<!\w(?!\G)(?:[.+-](?!\G))*)[\w.+-]++@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Camera and phone naming schemes; the digits end the name even when words follow unspaced
# ("IMG_3138Billabong" -> "Billabong").
_CAMERA = regex.compile(
    r"\b(?i:(?:IMG|DSC[FN]?|_DSC|_MG|GOPR|DCIM)[_-]?\d{3,}|(?:PXL|MVIMG|VID|DJI|SAM|CIMG|PICT|WP)_\d{3,})"
    rf"(?:[_-][A-Za-z]*\d+)*(?i:\.{_IMAGE_EXT}\b)?"
)
# Image file names: those whose stem says nothing go whole, the others lose only the extension (group
# "stem" keeps their words).
# A stem starting later in the same run of [\w-] would end where one from an earlier start in it ends
# ("a-b-c.jpg" is one stem), so a stem starts only where no word character of the run since the last
# match (\G) comes before it, and takes the run possessively (it must end at the "."; a run ending in
# "-" cannot): trying every start, and every end, made "a-a-a-a..." quadratic.
_FILE = regex.compile(
    rf"\b(?i:(?:image|img|photo|picture|pic|untitled|unnamed|file|thumb|thumbnail|download|screenshot)"
    rf"[_-]?\d*\.{_IMAGE_EXT})\b"
    rf"|(?P<stem>\b(?<!\w(?!\G)(?:-(?!\G))*)(?:-*+\w++)++)(?i:\.{_IMAGE_EXT})\b"
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
    # Possessive: "\s*[-–—:]?\s*" tried every split of a whitespace run, quadratic in its length.
    return pattern + r"(?:\s*+(?:[-–—:]\s*+)?#?\d{5,}\b)?"


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
# Removals leave whitespace runs, and the patterns below start only where a run (of whitespace, or of
# whitespace and separators) starts: a match from inside one would end where the match from its start
# ends, and trying every start in it made clean_patterns quadratic in what it removed.
_SEPARATOR_PILE = regex.compile(r"(?<![\s\-–—|,;:/])\s*([-–—|,;:/])(?:\s*[-–—|,;:/])+(?=\s|$)")
# ... and punctuation that followed the removed text is left after a space ("Visit <url>." -> "Visit .").
_SPACE_BEFORE_PUNCT = regex.compile(r"(?<!\s)\s+(?=[.,;:!?](?:\s|$))")
# Separators dangling at either end; a leading dash before a digit is a minus sign and stays. The end's
# run is found from the end (`(?r)`): `[...]+$` tried from every position of every run in the text.
_LEADING_EDGE = regex.compile(r"(?:[\s|:;,/·•~_=*]|[-–—](?!\d))+")
_TRAILING_EDGE = regex.compile(r"(?r)[\s\-–—|:;,/·•~_=*]+$")
_EDGE_CHARS = frozenset(" -–—|:;,/·•~_=*")
# Rounds of clean_patterns while tidying leaves a token (each of the 10k real captions needs one); a
# caption built to need more loses its "<" after these.
_MAX_ROUNDS = 8


def _trim_edges(text: str) -> str:
    lead = _LEADING_EDGE.match(text)
    start = lead.end() if lead else 0
    trail = _TRAILING_EDGE.search(text, start)
    return text[start : trail.start() if trail else len(text)]


def _bare_url(text: str, slash: int) -> regex.Match | None:
    """The match of _URL_BARE that _URL_BARE.sub would make in the run of domain characters before the
    "/" at `slash`, if any. Only the run's first start after its last ".." is tried: a later one needs the
    same ending (2-6 letters, then this "/"), so it fails where that one fails; trying every start made a
    run like "a.a.a.a..." quadratic. The domain is checked up to the "/" first (the whole pattern, tried
    where it fails, scans the rest of the text for a "." it needs)."""
    run = _DOMAIN_RUN.match(text, 0, slash)
    if run is None:
        return None
    empty = text.rfind("..", run.start(), slash)
    first = _BARE_START.search(text, run.start() if empty < 0 else empty + 2, slash)
    if first is None or _BARE_DOMAIN.match(text, first.start(), slash + 1) is None:
        return None
    return _URL_BARE.match(text, first.start())


def _remove_urls(text: str) -> str:
    """Each URL replaced by a space, as the one pattern `scheme|bare` would do it, in linear time."""
    out: list[str] = []
    pos = 0
    scheme = _URL_SCHEME.search(text)
    bare, slash = None, -1  # the next bare URL, and the "/" it ends at (-2: there is none after pos)
    while True:
        if scheme is not None and scheme.start() < pos:
            scheme = _URL_SCHEME.search(text, pos)
        if slash != -2 and (bare is None or bare.start() < pos):
            bare = None
            slash = text.find("/", max(slash + 1, pos))
            while slash >= 0 and (bare := _bare_url(text, slash)) is None:
                slash = text.find("/", slash + 1)
            if bare is None:
                slash = -2
        if scheme is None and bare is None:
            break
        match = scheme if bare is None or (scheme is not None and scheme.start() <= bare.start()) else bare
        out.append(text[pos : match.start()])
        out.append(" ")
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _punct_run(match: regex.Match) -> str:
    run = match.group(0)
    return "..." if run[0] == "." else run[0]


def _tidy_pile(match: regex.Match) -> str:
    first = match.group(1)
    return first if first in ",;:" else " " + first


class CleanPatterns(Cleaner):
    """Removes special-token strings, URLs, e-mails, camera/file names and boilerplate; tidies punctuation.

    Punctuation runs, empty brackets, dangling separators and whitespace are tidied after a removal (see
    the module docstring for the exact rules).

    `boilerplate`: phrases to remove (default DEFAULT_BOILERPLATE, chosen from what stock sites, galleries
    and social networks put in alt text); `extra_boilerplate` adds phrases to that list for one source.
    """

    name = "clean_patterns"
    default_sources = {
        "boilerplate": "vlcurate default; null is DEFAULT_BOILERPLATE: phrases that stock sites, galleries "
        "and social networks put in alt text",
    }

    def __init__(
        self, boilerplate: list[str] | None = None, extra_boilerplate: list[str] | None = None
    ) -> None:
        self.boilerplate = string_list(
            DEFAULT_BOILERPLATE if boilerplate is None else boilerplate, "boilerplate"
        )
        self.extra_boilerplate = string_list(extra_boilerplate or [], "extra_boilerplate")
        self._boilerplate, self._anchors = _boilerplate_pattern(self.boilerplate + self.extra_boilerplate)

    def clean(self, text: str) -> str:
        for _ in range(_MAX_ROUNDS):
            text = self._clean_once(text)
            if not has_special_tokens(text):
                return text
        # Built so that every round's tidying joins another token: without "<", none can form.
        return self._clean_once(text.replace("<", " "))

    def _clean_once(self, text: str) -> str:
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
            text = _trim_edges(text)
        return text  # tidying can join a token ("<|||im_end|>" -> "<|im_end|>"): clean() goes again

    def _remove(self, text: str) -> str:
        # In this order: a URL may hold an e-mail-like or file-like part, which goes with it.
        folded = text.casefold()
        if "/" in text or "www." in folded:
            text = _remove_urls(text)
        if "@" in text:
            text = _EMAIL.sub(" ", text)
        if _holds_any(folded, _CAMERA_HINTS):
            text = _CAMERA.sub(" ", text)
        if "." in text and _holds_any(folded, _FILE_HINTS):
            text = _FILE.sub(_replace_file, text)
        if self._boilerplate is not None and _holds_any(folded, self._anchors):
            text = self._boilerplate.sub(" ", text)
        return text
