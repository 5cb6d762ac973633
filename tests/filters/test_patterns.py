import pickle

import pytest

from vlcurate.filters.patterns import CleanPatterns

CLEAN = CleanPatterns()

CASES = [
    ("A dog running on the beach", "A dog running on the beach"),
    # URLs and e-mail addresses
    ("Visit https://example.com/a?b=1.", "Visit."),
    (
        "Getting Ready http://www.maharaniweddings.com/gallery/photo/41206 @houseoftalent1",
        "Getting Ready @houseoftalent1",
    ),
    ("Quote - J.K. Rowling. www.HealthyPlace.com", "Quote - J.K. Rowling."),
    ("Nature Tones - https://www.design-seeds.com/in-nature/nature-tones-6", "Nature Tones"),
    ("Reserve through momixbar.com/table-reservation/ today", "Reserve through today"),
    ("mail me: john.doe+x@example.co.uk now", "mail me: now"),
    ("photo by john.smith@gmail.com, 2019", "photo by, 2019"),
    ("Amazon.com gift card", "Amazon.com gift card"),  # a bare domain without a path is a name
    ("Shoes @ Kohl's", "Shoes @ Kohl's"),
    # camera and file names
    ("IMG_1234.JPG", ""),
    ("DSC_0042", ""),
    ("image.png", ""),
    ("Sunset over the bay IMG_1234.JPG", "Sunset over the bay"),
    ("(IMG_1234.JPG) sunset view", "sunset view"),
    ("IMG_3138Billabong Pro Junior", "Billabong Pro Junior"),
    ("a lifetime!-img_2613.jpg", "a lifetime!"),
    ("PXL_20210101_123456789.jpg beach", "beach"),
    ("IMG-20190101-WA0001.jpg from whatsapp", "from whatsapp"),
    ("Name: DSC_0294.jpg", "Name"),
    ("Scorching June 14 for Alabama.jpg", "Scorching June 14 for Alabama"),
    ("Solomon_Islands.png", "Solomon Islands"),
    ("oil-rigs-sunset1.jpeg", "oil-rigs-sunset1"),
    ("Nikon P1000 camera review", "Nikon P1000 camera review"),
    # boilerplate
    ("Image may contain: 2 people, people smiling", "2 people, people smiling"),
    ("Rooster Royalty Free Stock Photos", "Rooster"),
    ("Loving couple caught in bed Royalty-Free Stock Photo", "Loving couple caught in bed"),
    ("Boy blowing out birthday candles — Stock Photo #13233201", "Boy blowing out birthday candles"),
    ("sexy young couple before kiss Stock Photo - 9824382", "sexy young couple before kiss"),
    ("Stock Photo: Girls laying in grass", "Girls laying in grass"),
    ("Bobsled on wheels Stock Footage", "Bobsled on wheels"),
    ("Hardwood floor viewed from above. stock photo", "Hardwood floor viewed from above."),
    (
        "Closeup of bonfire Stock Photo - Royalty-Free, Artist: naumoid",
        "Closeup of bonfire - Artist: naumoid",
    ),
    ("Cat [...] more", "Cat more"),
    ("Click to enlarge", ""),
    ("Livestock photography tips", "Livestock photography tips"),  # word boundaries
    # repeated punctuation and whitespace
    ("Great!!!! Wow.....", "Great! Wow..."),
    ("New !! Wireless camera", "New ! Wireless camera"),
    ("Really???", "Really?"),
    ("Card Show [???] #11", "Card Show [?] #11"),
    ("Dress /// Only 1 Left ///", "Dress / Only 1 Left"),
    ("Sofa :: Leg Finish: Pecan", "Sofa : Leg Finish: Pecan"),
    ("Wait... what", "Wait... what"),
    ("Hello   world", "Hello world"),
    ("C++ programming book", "C++ programming book"),
    # dangling separators at the ends
    (" - Title | ", "Title"),
    ("Title: ", "Title"),
    ("Rubbabu The Micro Car (Turquoise) -", "Rubbabu The Micro Car (Turquoise)"),
    (": Decorative wall clocks", "Decorative wall clocks"),
    ("*It's not just a load", "It's not just a load"),
    ("-10 degrees outside today", "-10 degrees outside today"),
    # Qwen-VL special tokens
    ("<|endoftext|>hi<|im_start|>", "hi"),
    ("a <|extra_12|> b", "a b"),
    ("Caption <|im_end|> injected", "Caption injected"),
    ("<img>x</img><imgpad><ref>r</ref><box>(1,2),(3,4)</box><quad>q</quad>", "xr(1,2),(3,4)q"),
    ("<im<img>g>", ""),
    ("x <|||im_end|> y", "x y"),  # collapsing "|||" must not create a token
    ("<IMG> is not a token, <|EndOfText|> neither", "<IMG> is not a token, <|EndOfText|> neither"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_clean_patterns(raw, expected):
    assert CLEAN.clean(raw) == expected


def test_boilerplate_is_configurable():
    only = CleanPatterns(boilerplate=["as seen on tv"])
    assert only.clean("Blender As Seen On TV stock photo") == "Blender stock photo"
    extra = CleanPatterns(extra_boilerplate=["Shutterstock"])
    assert extra.clean("Mountain lake | Shutterstock stock photo") == "Mountain lake"
    assert extra.params() == {"boilerplate": list(CLEAN.boilerplate), "extra_boilerplate": ["Shutterstock"]}


def test_pickles():
    step = pickle.loads(pickle.dumps(CleanPatterns(extra_boilerplate=["foo bar"])))
    assert step.clean("x foo bar y") == "x y"
