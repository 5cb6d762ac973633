from pathlib import Path

import open_clip
import pyarrow.parquet as pq
import pytest
import torch

from vlcurate.model.clip_tokens import FastClipTokenizer

WEB_CAPTIONS = Path(__file__).resolve().parents[1] / "data" / "web_captions_10k.parquet"
EDGE_CASES = [
    "",
    "   A Dog   ON the  grass  ",
    "Tom &amp; Jerry &lt;3",
    "fish &amp;amp; chips",
    "tab\tseparated\nlines\r\nand\x0bcontrol\x07chars",
    "escape \x1b[31mred\x1b[0m text",
    "CafÃ© mojibake and café",
    "“curly quotes” and ligature ﬁsh",
    "一只猫坐在沙发上，看着窗外。",
    "ＦＵＬＬ-width ｔｅｘｔ 123",
    "emoji 🐶 and zwj 👩‍👩‍👧",
    " ".join(["word"] * 75),  # 75 words: exactly fills the 77-token context with start and end
    " ".join(["word"] * 76),  # one too many: truncated, end token last
    " ".join(f"w{i}" for i in range(300)),
    # "!" before other punctuation in one word is id 0, the value of the padding after the end token
    "wow!)))",
    "Angry Birds Go!</em>",
    "$#!+ happens",
    "a !+ b",
    'Jeopardy!""',
    "wow!amazing",
    "Yahoo!Japan",
    "!!!",
    "a!b!c",
    "!",
    "Sale! 50% off!",
    " ".join(["wow!)))"] * 30),  # truncated: the end token still last
]


@pytest.fixture(scope="module")
def tokenizers():
    return open_clip.get_tokenizer("ViT-B-32"), FastClipTokenizer(open_clip.get_tokenizer("ViT-B-32"))


def test_same_ids_as_open_clip_on_edge_cases(tokenizers):
    reference, fast = tokenizers
    assert fast.fast
    for text in EDGE_CASES:
        assert torch.equal(fast([text]), reference([text])), text


def test_same_ids_as_open_clip_on_real_captions_twice(tokenizers):
    # Twice: the second call is served from the word cache.
    reference, fast = tokenizers
    texts = pq.read_table(WEB_CAPTIONS, columns=["TEXT"]).column("TEXT").to_pylist()
    expected = reference(texts)
    assert torch.equal(fast(texts), expected)
    assert torch.equal(fast(texts), expected)


def test_truncation_keeps_the_end_token_last(tokenizers):
    _, fast = tokenizers
    ids = fast([" ".join(f"w{i}" for i in range(300))])[0]
    assert ids.shape == (77,) and int(ids[-1]) == 49407 and int(ids[0]) == 49406


def test_exclamation_marks_are_id_0_and_the_end_token_follows(tokenizers):
    reference, fast = tokenizers
    ids = fast(["wow!)))", "a !+ b"])
    assert torch.equal(ids, reference(["wow!)))", "a !+ b"]))
    for row in ids:
        end = int(row.argmax())  # the end token: the largest id, where the text tower pools
        assert int(row[end]) == 49407 and 0 in row[1:end].tolist() and not row[end + 1 :].any()


def test_other_tokenizers_are_called_unchanged():
    calls = []

    def other(texts, context_length=None):
        calls.append((texts, context_length))
        return torch.ones(len(texts), 4, dtype=torch.long)

    wrapped = FastClipTokenizer(other)
    assert not wrapped.fast
    assert wrapped(("a", "b")).shape == (2, 4)
    assert calls == [(["a", "b"], None)]
