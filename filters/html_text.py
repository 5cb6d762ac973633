"""Cleaning of the HTML-tagged part of captions (Qwen-VL paper, appendix A.1, step 7).

Alt texts scraped from pages carry markup (`<b>`, `<br />`, whole `<div class=...>` blocks) and entities
(`&amp;`, `&#39;`). Markup is parsed with BeautifulSoup's `html.parser` only when a cheap regex says there
is any: a known HTML element name after `<`, a comment, or an entity. Angle brackets that are not HTML
stay as they are: "3 < 5", "size <10cm", "<3 love", and placeholders like CC12M's "<PERSON>" (that is
`strip_tags`'s business).
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, ParserRejectedMarkup

from vlcurate.filters.base import Cleaner

# Elements of HTML (current and obsolete) that appear in scraped text. Only these count as markup.
_ELEMENT_NAMES = """
a abbr acronym address area article aside audio b base basefont bdi bdo big blink blockquote body br button
canvas caption center cite code col colgroup data datalist dd del details dfn dialog dir div dl dt em embed
fieldset figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i
iframe img input ins kbd label legend li link main map mark marquee menu meta meter nav nobr noframes
noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp script section
select small source span strike strong style sub summary sup svg table tbody td template textarea tfoot th
thead time title tr track tt u ul var video wbr
"""
# Elements whose start and end separate words ("a<br>b" -> "a b", "<td>x</td><td>y</td>" -> "x y").
_SEPARATING_NAMES = """
address area article aside audio blockquote body br button canvas caption center col dd details dialog dir
div dl dt embed fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup
hr html iframe img input legend li main menu nav noframes object ol optgroup option p picture pre section
select summary svg table tbody td textarea tfoot th thead title tr ul video
"""
HTML_ELEMENTS = frozenset(_ELEMENT_NAMES.split())
_SEPARATING = frozenset(_SEPARATING_NAMES.split())
# Elements whose content is never caption text.
_DROPPED = ("script", "style", "template")

_NAMES = "|".join(sorted(HTML_ELEMENTS, key=len, reverse=True))
_ENTITY = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
# Could there be markup? A known element name after "<" or "</", a comment or doctype, an entity.
_MARKUP = re.compile(rf"<(?:/?(?:{_NAMES})(?=[\s/>]|$)|!--|!doctype)|{_ENTITY}", re.IGNORECASE)
# "<" followed by a letter that does not start a known element: escaped so the parser leaves it as text.
_UNKNOWN_TAG = re.compile(rf"<(?!/?(?:{_NAMES})(?=[\s/>]|$))(?=/?[A-Za-z])", re.IGNORECASE)
_SEPARATING_TAG = re.compile(
    rf"</?(?:{'|'.join(sorted(_SEPARATING, key=len, reverse=True))})(?=[\s/>])[^>]*>", re.IGNORECASE
)
# What html.parser leaves as text: a tag cut off at the end of the caption ("... <a href='http://x"),
# a lone "<" there, or a tag broken by an unclosed quote ('<a href="x>text'). It starts where a run of
# whitespace starts: tried from inside one, it ends where it ends from the start (each try was quadratic).
_TRUNCATED_TAG = re.compile(rf"(?<!\s)\s*<(?:/?(?:{_NAMES})(?:\s[^<>]*)?)?$", re.IGNORECASE)
_LEFTOVER_TAG = re.compile(rf"</?(?:{_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE)
# Markup escaped twice ("&amp;amp;", "&lt;i&gt;") shows up after one pass; two passes are enough.
_MAX_PASSES = 2

# html.parser (Python's, before the fix of CVE-2025-6069 in 3.11.13 / 3.12.11 / 3.13.4) reads a "<" that
# opens a tag, comment or declaration never closed by trying to parse it up to the end of the text; it
# fails, hands on the text up to the next "<" unparsed, and tries again there: quadratic in their number
# (16 KB of "<a " took 6.8 s). After the last ">" none can close, so `_escape_unclosed` turns each into
# the text the parser hands on ("<" -> "&lt;", "&" -> "&amp;"), which it reads in one pass. It leaves the
# text alone where its model of the parser might not hold: NUL characters, "<![" after the last ">", an
# element whose content is raw text, or a "&#" that is no character reference (html.parser stops reading
# markup there, or pauses, depending on where it is). Some malformed markup before a ">" stays quadratic
# in such a parser ("<a b='>'" repeated: 4 KB 0.08 s, 16 KB 1.1 s); `max_caption_bytes` (4 KB by default)
# runs first and bounds it.
_OPENS = re.compile(r"<[a-zA-Z/!?]")
_RAW_TEXT = re.compile(
    r"<(?:script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext)", re.I
)
_BAD_CHARREF = re.compile(r"&#(?!(?:[0-9]+|[xX][0-9a-fA-F]+)[^0-9a-fA-F])")
# html.parser's own patterns for what follows "&" (html/parser.py: charref, entityref, incomplete).
_CHARREF = re.compile(r"&#(?:[0-9]+|[xX][0-9a-fA-F]+)[^0-9a-fA-F]")
_ENTITYREF = re.compile(r"&([a-zA-Z][-.a-zA-Z0-9]*)[^a-zA-Z0-9]")
_INCOMPLETE = re.compile(r"&[a-zA-Z#]")


def has_markup(text: str) -> bool:
    """True when `text` may hold HTML markup or entities (the fast path's test)."""
    return ("<" in text or "&" in text) and _MARKUP.search(text) is not None


def strip_html(text: str) -> str:
    """Text content of `text` read as an HTML fragment, whitespace collapsed."""
    for _ in range(_MAX_PASSES):
        if not has_markup(text):
            break
        text = _parse_once(text)
    return text


def _escape_unclosed(text: str) -> str:
    """`text` with each "<" after its last ">" that opens something turned into the text html.parser
    would hand on for it, so that the parser reads them in one pass (see _OPENS above)."""
    start = text.rfind(">") + 1
    if _OPENS.search(text, start) is None:
        return text
    if "\x00" in text or "<![" in text[start:] or _RAW_TEXT.search(text) or _BAD_CHARREF.search(text):
        return text
    out, at = [text[:start]], start
    lt, amp = text.find("<", at), text.find("&", at)  # the next of each from `at` (-1: none)
    while True:
        if 0 <= lt < at:
            lt = text.find("<", at)
        if 0 <= amp < at:
            amp = text.find("&", at)
        p = amp if lt < 0 or 0 <= amp < lt else lt
        if p < 0:
            break
        if p == amp:  # outside a tag: a reference, or the end of what the parser reads as markup
            if not _read_on(text, p):
                break
            out.append(text[at : p + 1])
            at = p + 1
        elif _OPENS.match(text, p):  # handed on up to the next "<"; the last one, only itself
            end = text.find("<", p + 1)
            end = p + 1 if end < 0 else end
            out.append(text[at:p])
            out.append(text[p:end].replace("&", "&amp;").replace("<", "&lt;"))
            at = end
        else:  # "<" before anything else is text
            out.append(text[at : p + 1])
            at = p + 1
    out.append(text[at:])
    return "".join(out)


def _read_on(text: str, at: int) -> bool:
    """Whether html.parser reads on as markup after the "&" at `at` (html/parser.py, goahead): it stops at
    a name that runs to the end (and at a "&#" that is no character reference: none reach here)."""
    if text.startswith("&#", at):
        return _CHARREF.match(text, at) is not None
    if _ENTITYREF.match(text, at):
        return True
    return at + 1 < len(text) and _INCOMPLETE.match(text, at) is None


def _soup(text: str) -> BeautifulSoup:
    """html.parser's tree of `text`. It raises on a "<![" it cannot read ("<![ x"); that one is text."""
    try:
        return BeautifulSoup(text, "html.parser")
    except ParserRejectedMarkup:
        pass
    try:
        return BeautifulSoup(text.replace("<![", "&lt;!["), "html.parser")
    except ParserRejectedMarkup:
        return BeautifulSoup(text.replace("<", "&lt;"), "html.parser")


def _parse_once(text: str) -> str:
    text = _UNKNOWN_TAG.sub("&lt;", text)
    # A tag to space out ends at a ">": none after the last one (each "<div" there scanned to the end).
    head = text.rfind(">") + 1
    text = _SEPARATING_TAG.sub(lambda m: f" {m.group(0)} ", text[:head]) + text[head:]
    soup = _soup(_escape_unclosed(text))
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    text = soup.get_text()
    if "<" in text:
        text = _LEFTOVER_TAG.sub(" ", _TRUNCATED_TAG.sub("", text))
    return " ".join(text.split())


class CleanHtml(Cleaner):
    """Removes HTML tags, unescapes entities and drops script/style; `3 < 5` and `<3` stay as written.

    Parses only when a cheap regex finds markup; see the module docstring. No thresholds: the paper (appendix A.1) names the step, not its rules.
    """

    name = "clean_html"

    def __init__(self) -> None:
        pass  # no parameters; the explicit signature makes the registry refuse any config key

    def clean(self, text: str) -> str:
        return strip_html(text)
