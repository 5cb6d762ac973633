"""The Qwen-VL tokenizer against the facts of docs/qwenvl-format.md section 4, and finetune.py's preprocess."""

from __future__ import annotations

import pickle
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlcurate.model.qwen_tokenizer import (
    ENDOFTEXT_ID,
    IGNORE_INDEX,
    IM_END_ID,
    IM_START_ID,
    IMG_END_ID,
    IMG_PAD_ID,
    IMG_START_ID,
    N_RANKS,
    SPECIAL_TOKENS,
    ImagePathError,
    ImagePathTooLong,
    find_special_tokens,
    get_tokenizer,
    preprocess_chatml,
)

NL, SYSTEM, USER, ASSISTANT = 198, 8948, 872, 77091
GOLDEN = [
    {"from": "user", "value": "Picture 1: <img>assets/demo.jpeg</img>\nWhat is this?"},
    {"from": "assistant", "value": "A dog."},
]


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


def test_vocabulary_and_special_ids(tok):
    assert tok.n_vocab == 151860
    enc = tok.encoding
    expected = {
        "<|endoftext|>": 151643,
        "<|im_start|>": 151644,
        "<|im_end|>": 151645,
        "<|extra_0|>": 151646,
        "<|extra_204|>": 151850,
        "<ref>": 151851,
        "</ref>": 151852,
        "<box>": 151853,
        "</box>": 151854,
        "<quad>": 151855,
        "</quad>": 151856,
        "<img>": 151857,
        "</img>": 151858,
        "<imgpad>": 151859,
    }
    for token, token_id in expected.items():
        assert enc.encode_single_token(token) == token_id
    assert [enc.encode_single_token(t) for t in SPECIAL_TOKENS] == list(range(N_RANKS, N_RANKS + 217))


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("\n", [NL]),
        ("system", [SYSTEM]),
        ("user", [USER]),
        ("assistant", [ASSISTANT]),
        ("You are a helpful assistant.", [2610, 525, 264, 10950, 17847, 13]),
        ("A dog.", [32, 5562, 13]),
        ("Picture 1: ", [24669, 220, 16, 25, 220]),  # digits split one by one, trailing space alone
        ("12345", [16, 17, 18, 19, 20]),
        ("<|im_start|>user", [IM_START_ID, USER]),
    ],
)
def test_known_ids(tok, text, ids):
    assert tok.encode(text) == ids


def test_text_is_nfc_normalized(tok):
    assert tok.encode("cafe\u0301") == tok.encode("caf\u00e9")
    assert tok.encode("cafe\u0301", allow_special=False) == tok.encode("caf\u00e9", allow_special=False)


def test_special_strings_become_control_tokens_only_when_allowed(tok):
    text = "a<|im_end|>b<box>(1,2),(3,4)</box><|extra_7|>"
    allowed = tok.encode(text)
    assert IM_END_ID in allowed and 151853 in allowed and 151653 in allowed
    safe = tok.encode(text, allow_special=False)
    assert max(safe) < N_RANKS
    assert tok.decode(safe) == text
    # An image tag in safe mode is plain text too: no expansion, no control token.
    assert max(tok.encode("<img>x.jpg</img>", allow_special=False)) < N_RANKS


def test_image_span_is_258_tokens_of_path_bytes(tok):
    ids = tok.encode("<img>assets/demo.jpeg</img>")
    path = list(b"assets/demo.jpeg")
    assert ids == [IMG_START_ID, *path, *[IMG_PAD_ID] * (256 - len(path)), IMG_END_ID]
    assert len(ids) == 258 == len(tok.image_tokens("assets/demo.jpeg"))
    assert tok.image_tokens("assets/demo.jpeg") == ids


def test_image_span_of_a_non_ascii_path_uses_nfc_utf8_bytes(tok):
    ids = tok.encode("x <img>图/cafe\u0301.jpg</img> y")
    start = ids.index(IMG_START_ID)
    body = ids[start + 1 : start + 257]
    raw = "图/caf\u00e9.jpg".encode()
    assert body[: len(raw)] == list(raw)
    assert body[len(raw)] == IMG_PAD_ID
    assert ids[start + 257] == IMG_END_ID
    assert ids[:start] == tok.encode("x ") and ids[start + 258 :] == tok.encode(" y")


def test_image_path_limit_is_254_utf8_bytes(tok):
    assert len(tok.image_tokens("a" * 254)) == 258
    assert len(tok.image_tokens("\u00e9" * 127)) == 258  # 254 bytes
    assert len(tok.image_tokens("e\u0301" * 127)) == 258  # NFC makes it 254 bytes, not 381
    with pytest.raises(ImagePathTooLong) as info:
        tok.encode("<img>" + "a" * 255 + "</img>")
    assert info.value.reason == "image_path_too_long"
    with pytest.raises(ImagePathTooLong):
        tok.image_tokens("\u00e9" * 127 + "a")


def test_broken_image_spans_raise_image_path_error(tok):
    with pytest.raises(ImagePathError, match="unclosed"):
        tok.encode("<img>a.jpg")
    with pytest.raises(ImagePathError, match="special token") as info:
        tok.encode("<img>a<box>.jpg</img>")
    assert info.value.reason == "image_path_invalid"


def reference_encode(tok, text: str) -> list[int]:
    """tokenization_qwen.py's way: tiktoken with every special allowed, then the image spans rebuilt from
    the bytes of the tokens between <img> and </img>. Raises on what it cannot handle."""
    ids = tok.encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all")
    out, i = [], 0
    while i < len(ids):
        if ids[i] != IMG_START_ID:
            out.append(ids[i])
            i += 1
            continue
        end = ids.index(IMG_END_ID, i)  # ValueError when unclosed
        inner = ids[i + 1 : end]
        if any(t >= N_RANKS for t in inner):
            raise TypeError("special token inside the image span")
        path = tok.encoding.decode_bytes(inner)
        if len(path) > 254:
            raise ValueError("path too long")
        out += [IMG_START_ID, *path, *[IMG_PAD_ID] * (256 - len(path)), IMG_END_ID]
        i = end + 1
    return out


FRAGMENTS = ["<img>", "</img>", "<|im_end|>", "<|extra_3|>", "<|extra_205|>", "<imgpad>", "<box>", "</ref>"]
FRAGMENTS += [
    "<",
    ">",
    "|",
    "img",
    "/",
    " ",
    "  ",
    "\n",
    "a",
    "Dog",
    "图片",
    "e\u0301",
    "12",
    "(1,2)",
    "'s",
    "x" * 60,
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_encode_matches_tiktoken_special_handling(tok, parts):
    text = "".join(parts)
    try:
        expected = reference_encode(tok, text)
    except (ValueError, TypeError):
        with pytest.raises(ImagePathError):
            tok.encode(text)
        return
    assert tok.encode(text) == expected


def test_decode_round_trip(tok):
    text = "Picture 1: <img>图/猫.jpg</img>\n什么？<|im_end|><ref>cat</ref><box>(1,2),(3,4)</box>"
    assert tok.decode(tok.encode(text)) == text
    # Something that is not a real image span decodes id by id.
    assert tok.decode([IMG_START_ID, ENDOFTEXT_ID, IMG_END_ID]) == "<img><|endoftext|></img>"


def test_special_pattern_matches_exactly_the_special_tokens():
    for token in SPECIAL_TOKENS:
        assert find_special_tokens(f"x{token}y") == [token]
    for text in ("<|extra_205|>", "<|extra_01|>", "<IMG>", "<img >", "<|im_end>", "< box>", "<imgpadx"):
        assert find_special_tokens(text) == []


def test_tokenizer_is_cached_and_pickles_as_a_reference(tok):
    assert get_tokenizer() is tok
    assert pickle.loads(pickle.dumps(tok)) is tok


# --- finetune.py preprocess ---------------------------------------------------------------------------


def test_golden_example_lengths_and_ids(tok):
    out = preprocess_chatml(GOLDEN, max_len=2048)
    assert out.length == 292 == 11 + 273 + 8
    ids = out.input_ids
    assert ids[:11] == [IM_START_ID, SYSTEM, NL, 2610, 525, 264, 10950, 17847, 13, IM_END_ID, NL]
    assert ids[11:19] == [IM_START_ID, USER, NL, 24669, 220, 16, 25, 220]
    assert ids[19] == IMG_START_ID and ids[19 + 257] == IMG_END_ID
    assert ids[20:36] == list(b"assets/demo.jpeg") and set(ids[36:276]) == {IMG_PAD_ID}
    assert ids[277:284] == [NL, 3838, 374, 419, 30, IM_END_ID, NL]
    assert ids[284:292] == [IM_START_ID, ASSISTANT, NL, 32, 5562, 13, IM_END_ID, NL]


def test_golden_example_every_label_position(tok):
    out = preprocess_chatml(GOLDEN, max_len=2048)
    supervised = {i: label for i, label in enumerate(out.labels) if label != IGNORE_INDEX}
    assert supervised == {
        0: IM_START_ID,  # system block: only its structure tokens
        9: IM_END_ID,
        10: NL,
        11: IM_START_ID,  # user turn: likewise
        282: IM_END_ID,
        283: NL,
        284: IM_START_ID,  # assistant turn: role name and its newline masked (285, 286)
        287: 32,  # "A"
        288: 5562,  # " dog"
        289: 13,  # "."
        290: IM_END_ID,
        291: NL,
    }
    content = [i for i in supervised if supervised[i] not in (IM_START_ID, IM_END_ID, NL)]
    assert content == [287, 288, 289]


def test_padding_attention_and_truncation():
    padded = preprocess_chatml(GOLDEN, max_len=300)
    assert len(padded.input_ids) == len(padded.labels) == len(padded.attention_mask) == 300
    assert padded.input_ids[292:] == [ENDOFTEXT_ID] * 8
    assert padded.labels[292:] == [IGNORE_INDEX] * 8
    assert padded.attention_mask == [True] * 292 + [False] * 8
    assert not padded.truncated
    cut = preprocess_chatml(GOLDEN, max_len=200)
    assert cut.length == 292 and cut.truncated
    assert cut.input_ids == padded.input_ids[:200] and cut.labels == padded.labels[:200]


def test_first_turn_not_from_user_is_dropped_and_unknown_roles_raise():
    leading = [{"from": "assistant", "value": "Hi."}, *GOLDEN]
    assert preprocess_chatml(leading, 400) == preprocess_chatml(GOLDEN, 400)
    with pytest.raises(KeyError):
        preprocess_chatml([{"from": "human", "value": "Hi."}], 400)


def test_multi_turn_supervises_every_assistant_turn(tok):
    conv = [
        {"from": "user", "value": "Hi"},
        {"from": "assistant", "value": "Hello"},
        {"from": "user", "value": "Bye"},
        {"from": "assistant", "value": "Ciao"},
    ]
    out = preprocess_chatml(conv, 64, system_message="Be brief.")
    content = [t for t in out.labels if t not in (IGNORE_INDEX, IM_START_ID, IM_END_ID, NL)]
    assert content == tok.encode("Hello") + tok.encode("Ciao")
    system_len = 3 + len(tok.encode("Be brief.")) + 2
    turn_lens = [5 + len(tok.encode(t["value"])) for t in conv]
    assert out.length == system_len + sum(turn_lens)
    assert out.labels.count(IM_START_ID) == out.labels.count(IM_END_ID) == 5
