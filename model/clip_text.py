"""CLIP's text tower at lengths that depend on each caption alone (model/clip_handler.py scores with it).

Kept apart from the handler so that each module stays small; clip_handler re-exports encode_captions.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlcurate.model.clip_models import LoadedClip
from vlcurate.model.clip_preprocess import to_device

# Caption lengths the text tower runs at: captions of up to SHORT_TOKENS tokens (start and end included;
# 95% of the 10k real web captions in tests/data that the text steps keep) at that length, all rows of the
# batch; the others at the full context, LONG_ROWS rows per call (padded with empty captions).
SHORT_TOKENS = 32
LONG_ROWS = 32


def encode_captions(model: LoadedClip, captions: Sequence[str]):
    """Normalized float32 text embeddings, computed at lengths that depend on each caption alone.

    For open_clip's CLIP class with end-token pooling, padding after the end token cannot change its
    features (causal mask), so tokens are cut: every row at SHORT_TOKENS, and captions longer than that
    again at the full context length in chunks of LONG_ROWS rows. The text tower's shapes are then the
    same whatever captions share the batch (with a batch padded to a fixed size, as run_inference does),
    and so is a caption's embedding. Cutting after the batch's longest caption, as before, made every
    caption's last bits depend on that one (CPU, tiny CLIP: 61 of 160 scores moved, by up to 1.8e-7), cost
    ~65 of 77 tokens per row with 256 web captions (~32 here), and counted a caption's length by its nonzero
    ids, while "!" before other punctuation ("wow!)))") is id 0: such a caption, alone or beside shorter
    ones, lost its end token (0.138 off on real captions). The end token is the largest id, where the
    pooling looks too. Other models run unchanged.
    """
    import open_clip
    import torch

    tokens = model.tokenizer(list(captions))  # on the CPU
    m = model.model
    context = tokens.shape[1]
    if not (isinstance(m, open_clip.CLIP) and getattr(m, "text_pool_type", "") == "argmax"):
        return torch.nn.functional.normalize(m.encode_text(to_device(tokens, model.device)).float(), dim=-1)
    if context <= SHORT_TOKENS:
        return _text_tower(m, to_device(tokens, model.device))
    long = (tokens.argmax(dim=1) >= SHORT_TOKENS).nonzero().flatten().tolist()  # read on the CPU
    texts = _text_tower(m, to_device(tokens[:, :SHORT_TOKENS].contiguous(), model.device))
    if long:
        empty = model.tokenizer([""])
        for start in range(0, len(long), LONG_ROWS):
            rows = long[start : start + LONG_ROWS]
            chunk = torch.cat([tokens[rows], empty.expand(LONG_ROWS - len(rows), -1)])
            index = to_device(torch.tensor(rows), model.device)
            texts.index_copy_(0, index, _text_tower(m, to_device(chunk, model.device))[: len(rows)])
    return texts


def _text_tower(m, tokens):
    """open_clip's CLIP.encode_text on tokens cut to any length, normalized float32."""
    import torch
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast = m.transformer.get_cast_dtype()
    x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
    x = m.transformer(x, attn_mask=m.attn_mask[:length, :length])
    x = text_global_pool(m.ln_final(x), tokens, m.text_pool_type)
    x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
    return torch.nn.functional.normalize(x.float(), dim=-1)
