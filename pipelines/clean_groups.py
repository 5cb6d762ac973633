"""The group steps of `vlcurate clean` (keep_longest, decontaminate, dedup, near_dedup, semantic_dedup), in
chain order, each with the Beam wrapper its kind needs, and which pairs carry CLIP image embeddings.

Embeddings (`pair.embedding`, about a kilobyte a pair) are computed only for the sources that need them:
semantic_dedup is on, or output.embeddings stores them. They travel with the pairs through the group
steps and are dropped before the shard writer's shuffle unless the writer stores them; rejects never
carry them (steps.as_rejects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apache_beam as beam

from vlcurate.filters.chain import Chain
from vlcurate.pipelines.eval_sets import load_eval_embeddings, load_eval_entries, write_eval_embeddings
from vlcurate.pipelines.group_steps import GroupPairs
from vlcurate.pipelines.near_groups import NearDuplicatePairs
from vlcurate.pipelines.steps import STATS
from vlcurate.pipelines.write import REJECT_FILES
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.config import CleanConfig
from vlcurate.schemas.errors import ConfigError


def image_digests_needed(chain: Chain) -> bool:
    """Whether a group step compares images (it reads the digest their detached spans keep)."""
    return any(next(iter(g.values())).needs_image_digest for g in chain.active_groups().values())


def compares_embeddings(steps: dict[str, Any]) -> bool:
    """Whether the group step clusters embeddings (semantic_dedup: run by pipelines/semantic_groups.py)."""
    return next(iter(steps.values())).compares_embeddings


def reads_embeddings(steps: dict[str, Any]) -> bool:
    """Whether the group step reads its pairs' embeddings at all (semantic_dedup, decontaminate.cosine)."""
    return any(step.reads_embeddings() for step in steps.values())


def embedding_sources(config: CleanConfig, chain: Chain) -> list[str]:
    """The sources whose pairs get their image's CLIP embedding: those CLIP scores (the chain refuses a
    config that asks without it: chain.check_embeddings_taken) where a step compares embeddings or
    output.embeddings stores them. Empty: no model batch computes one."""
    _, model, _ = chain.split()
    wanted = set(model) if config.output.embeddings else set()
    for steps in chain.active_groups().values():
        wanted |= {source for source, step in steps.items() if step.reads_embeddings() and source in model}
    return sorted(wanted)


def check_embeddings_computed(config: CleanConfig, chain: Chain, scores_from: str | None) -> None:
    """Start-up checks of a run whose pairs need embeddings: they must all come from one CLIP model (two
    models' vectors share no space, even where their sizes agree), stored scores (`vlcurate retune`) hold
    none, and semantic_dedup needs faiss."""
    sources = embedding_sources(config, chain)
    if not sources:
        return
    _, model, _ = chain.split()
    specs = sorted({spec for source in sources for spec in model[source].specs()})
    if len(specs) > 1:
        wanted = ", ".join(_readers(chain)) or "output.embeddings"
        raise ConfigError(
            f"{wanted} needs the image embeddings of one CLIP model, but clip_score uses {', '.join(specs)}: "
            f"name one model in steps.clip_score.models for every language and source, or turn {wanted} off"
        )
    if scores_from:
        wanted = " or ".join([*_readers(chain), *(["output.embeddings"] if config.output.embeddings else [])])
        raise ConfigError(
            "vlcurate retune reuses stored CLIP scores, which hold no image embeddings, so it cannot run "
            f"{wanted}: rerun vlcurate clean with the new thresholds instead"
        )
    if _compares_anywhere(chain):
        from vlcurate.filters.semantic_dedup import require_faiss

        require_faiss()


def _compares_anywhere(chain: Chain) -> bool:
    return any(compares_embeddings(steps) for steps in chain.active_groups().values())


def _readers(chain: Chain) -> list[str]:
    """The group steps reading embeddings, as a message names them."""
    return [
        f"{name}.cosine" if not compares_embeddings(steps) else name
        for name, steps in chain.active_groups().items()
        if reads_embeddings(steps)
    ]


def load_eval_vectors(chain: Chain) -> dict[str, tuple[list[str], Any, str]]:
    """{group step: (ids, vectors, CLIP model)} of the evaluation embeddings a step compares pairs with
    (decontaminate.cosine), read or computed on the launcher before any input is read. Call after
    check_embeddings_computed (one model)."""
    _, model, _ = chain.split()
    found = {}
    for name, steps in chain.active_groups().items():
        step = next(iter(steps.values()))
        specs = sorted(
            {
                spec
                for src, s in steps.items()
                if s.reads_embeddings() and src in model
                for spec in model[src].specs()
            }
        )
        if hasattr(step, "eval_entry") and specs:
            found[name] = (*load_eval_embeddings(step, specs[0]), specs[0])
    return found


def write_eval_vectors(chain: Chain, directory: str, found: dict[str, tuple[list[str], Any, str]]) -> None:
    """Writes load_eval_vectors' embeddings into the run's output, where the workers read them."""
    for name, (ids, vectors, spec) in found.items():
        write_eval_embeddings(directory, list(chain.active_groups()[name].values()), ids, vectors, spec)


def _drop_embeddings(batch: PairBatch) -> PairBatch:
    for pair in batch:
        pair.embedding = None
    return batch


def run_group_steps(
    kept,
    config: CleanConfig,
    chain: Chain,
    buckets: int,
    out: str,
    progress_folder: str | None,
    score_names: Sequence[str],
    eval_entries: dict[str, list] | None = None,
):
    """Every active group step over the kept pairs, in chain order. Returns (kept, [reject file manifests],
    [stats partials]): each step writes and counts its losers itself (pipelines/group_steps.py)."""
    reject_files, partials = [], []
    for name, steps in chain.active_groups().items():
        step = next(iter(steps.values()))
        if getattr(step, "compares_hashes", False):
            extra = eval_entries.get(name, []) if eval_entries is not None else load_eval_entries(step)
            group = NearDuplicatePairs(steps, buckets, out, progress_folder, score_names, extra_entries=extra)
        elif compares_embeddings(steps):
            from vlcurate.pipelines.semantic_groups import SemanticDuplicatePairs  # numpy-heavy, rarely on

            group = SemanticDuplicatePairs(steps, buckets, out, progress_folder, score_names)
        else:
            group = GroupPairs(steps, buckets, out, progress_folder, score_names)
        grouped = kept | f"Group[{name}]" >> group
        kept = grouped["kept"]
        reject_files.append(grouped[REJECT_FILES])
        partials.append(grouped[STATS])
    if embedding_sources(config, chain) and not config.output.embeddings:
        kept = kept | "DropEmbeddings" >> beam.Map(_drop_embeddings).with_output_types(PairBatch)
    return kept, reject_files, partials
