"""Cleaning of the HTML-tagged part of captions (Qwen-VL paper, appendix A.1, step 7).

Alt texts scraped from pages carry markup (`<b>`, `<br />`, whole `<div class=...>` blocks) and entities
(`&amp;`, `&#39;`). Markup is parsed with BeautifulSoup's `html.parser` only when a cheap regex says there
is any: a known HTML element name after `<`, a comment, or an entity. Angle brackets that are not HTML
stay as they are: "3 < 5", "size <10cm", "<3 love", and placeholders like CC12M's "<PERSON>" (that is
`strip_tags`'s business).
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup

from vlcurate.filters.base import Cleaner
from vlcurate.filters.registry import register

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
# a lone "<" there, or a tag broken by an unclosed quote ('<a href="x>text').
_TRUNCATED_TAG = re.compile(rf"\s*<(?:/?(?:{_NAMES})(?:\s[^<>]*)?)?$", re.IGNORECASE)
_LEFTOVER_TAG = re.compile(rf"</?(?:{_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE)
# Markup escaped twice ("&amp;amp;", "&lt;i&gt;") shows up after one pass; two passes are enough.
_MAX_PASSES = 2


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


def _parse_once(text: str) -> str:
    text = _UNKNOWN_TAG.sub("&lt;", text)
    text = _SEPARATING_TAG.sub(lambda m: f" {m.group(0)} ", text)
    soup = BeautifulSoup(text, "html.parser")
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    text = soup.get_text()
    if "<" in text:
        text = _LEFTOVER_TAG.sub(" ", _TRUNCATED_TAG.sub("", text))
    return " ".join(text.split())


@register
class CleanHtml(Cleaner):
    """Removes HTML tags, unescapes entities and drops script/style content; see the module docstring.

    No thresholds: the paper (appendix A.1) names the step, not its rules.
    """

    name = "clean_html"

    def __init__(self) -> None:
        pass  # no parameters; the explicit signature makes the registry refuse any config key

    def clean(self, text: str) -> str:
        return strip_html(text)
