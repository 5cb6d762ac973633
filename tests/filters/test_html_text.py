import pytest

from vlcurate.filters.html_text import CleanHtml, has_markup, strip_html
from vlcurate.schemas.record import Pair

CASES = [
    # plain text and text that merely contains "<" or "&" stays exactly as it is
    ("A dog on the beach", "A dog on the beach"),
    ("3 < 5", "3 < 5"),
    ("size <10cm", "size <10cm"),
    ("<3 love", "<3 love"),
    ("triple high helix <3", "triple high helix <3"),
    ("Asymptomatisk CD4 < 350 CD4 tall < 350", "Asymptomatisk CD4 < 350 CD4 tall < 350"),
    ("AT&T and Q&A", "AT&T and Q&A"),
    ("rock & roll", "rock & roll"),
    ("<完売>セール", "<完売>セール"),
    ("<PERSON> at the <b>premiere</b>", "<PERSON> at the premiere"),
    # tags
    ("a <b>bold</b> word", "a bold word"),
    ("<i>Transformers: Age of Extinction</i>", "Transformers: Age of Extinction"),
    ("<IMG SRC=x>Photo of a cat", "Photo of a cat"),
    ("<b>bold <i>both</b> italic</i>", "bold both italic"),
    ("<div><span><b>deep</b></span></div> nesting", "deep nesting"),
    ("Fred Perry Black Stewart Tartan Scarf<p>Black", "Fred Perry Black Stewart Tartan Scarf Black"),
    # block tags separate words instead of gluing them
    ("Orchid Jungle<br>Hawaiian Dresses<br>100% Rayon<br>", "Orchid Jungle Hawaiian Dresses 100% Rayon"),
    ("line<br/>break", "line break"),
    ("<p>one</p><p>two</p>", "one two"),
    ("<ul><li>one</li><li>two</li></ul>", "one two"),
    ("<td>a</td><td>b</td>", "a b"),
    ("a<wbr>b", "ab"),
    # script, style, template content and comments are dropped
    ("a<script>var x = '<b>';</script>b", "ab"),
    ("<style>p{color:red}</style>Red car", "Red car"),
    ("<template>hidden</template>shown", "shown"),
    ("<!--020111101037766-->Hip Hop Flash Drive", "Hip Hop Flash Drive"),
    # entities
    ("Tom &amp; Jerry", "Tom & Jerry"),
    ("&quot;Keep Calm&quot; - Blue Canvas", '"Keep Calm" - Blue Canvas'),
    ("Finally Hip FH Baseball Team - A&#39;s Colorway", "Finally Hip FH Baseball Team - A's Colorway"),
    ("Hiland&#x27;s Megan Beachy", "Hiland's Megan Beachy"),
    ("Mother&rsquo;s Day card", "Mother’s Day card"),
    ("caf&eacute; au lait", "café au lait"),
    ("x &nbsp; y", "x y"),
    ("3 &lt; 5", "3 < 5"),
    # markup escaped twice: two passes
    ("front &amp;amp; back", "front & back"),
    ("&lt;b&gt;bold&lt;/b&gt; text", "bold text"),
    ("skulls (&lt;i&gt;Truong Son ... / &copy;: WWF-UK", "skulls ( Truong Son ... / ©: WWF-UK"),
    # broken markup: cut-off tags at the end, unclosed quotes
    ("unclosed <a href='http://example.com/x", "unclosed"),
    ('x <div class="a"><', "x"),
    ('<a href="foo>text</a> more', "text more"),
    ("Raw Air photos. <b", "Raw Air photos."),
    (
        "Stephan - <strong>Ceus</strong> (2011<strong style = 'color:#635a27'></strong>)<bR /> print",
        "Stephan - Ceus (2011) print",
    ),
    (
        "<a gi-track='x' href=/galleries/search?phrase=Martin+Freeman&family=editorial>Martin Freeman</a> and Amanda",
        "Martin Freeman and Amanda",
    ),
    # Qwen-VL tags that are also HTML (<img>) go here; the others are clean_patterns' job
    ("<img>path</img> and <ref>x</ref>", "path and <ref>x</ref>"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_strip_html(raw, expected):
    assert strip_html(raw) == expected


@pytest.mark.parametrize(
    ("text", "markup"),
    [
        ("plain", False),
        ("3 < 5", False),
        ("<3", False),
        ("<PERSON>", False),
        ("a&b", False),
        ("<b>x", True),
        ("</p>", True),
        ("&amp;", True),
        ("&#39;", True),
        ("<!-- c -->", True),
        ("<br", True),
    ],
)
def test_has_markup_fast_path(text, markup):
    assert has_markup(text) is markup


def test_unchanged_text_is_the_same_object():
    text = "No markup here, just 3 < 5"
    assert CleanHtml().clean(text) is text


def test_step_rewrites_caption():
    pair = Pair(uid="s/1", source="s", caption="<b>Hi</b> there")
    CleanHtml().apply(pair)
    assert pair.caption == "Hi there" and pair.reject is None
