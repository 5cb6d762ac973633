"""`vlcurate clean`: read every source -> run the step chain -> write shards, rejects, stats, COMPLETED."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from vlcurate.filters.chain import Chain, build_chain
from vlcurate.formatters.report import render_report
from vlcurate.pipelines import clean_groups, provenance
from vlcurate.pipelines.batch_coder import of_batches
from vlcurate.pipelines.clean_groups import image_digests_needed
from vlcurate.pipelines.eval_sets import load_eval_entries
from vlcurate.pipelines.image_spans import detach_images
from vlcurate.pipelines.input_size import Total, estimate_records, sum_totals
from vlcurate.pipelines.job import Job, JobProgress, finish_output
from vlcurate.pipelines.outcome import assess, warning_block
from vlcurate.pipelines.output import COMPLETED, join, read_json, run_last
from vlcurate.pipelines.progress import tap
from vlcurate.pipelines.read import ReadSource, carried_scores, match_files
from vlcurate.pipelines.steps import REJECTED, STATS, CountFinal, MergeStats, RunSteps
from vlcurate.pipelines.thresholds import applied_thresholds
from vlcurate.pipelines.whatif import count_whatif, curves_for
from vlcurate.pipelines.write import REJECT_FILES, WriteKeptShards, WriteRejects, buckets_for_input
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig, absolute_path
from vlcurate.schemas.encoding import utf8
from vlcurate.schemas.errors import RunFailedError
from vlcurate.schemas.stats import RunStats, dumps_stats


class PairsLostError(RuntimeError):
    """The written output does not account for every pair read."""


def check_accounting(totals: dict[str, int], shards: list[dict], rejects: list[dict]) -> None:
    """input == kept + rejects, and the files hold exactly the pairs counted; raises PairsLostError."""
    in_shards = sum(s["pairs"] for s in shards)
    in_rejects = sum(r["pairs"] for r in rejects)
    read, kept, rejected = totals["read"], totals["kept"], totals["rejected"]
    if read == kept + rejected == in_shards + in_rejects and kept == in_shards:
        return
    raise PairsLostError(
        f"pairs unaccounted for: read {read:,}, counted kept {kept:,} + rejected {rejected:,}, "
        f"written {in_shards:,} to shards + {in_rejects:,} to rejects. The output is incomplete (no "
        "COMPLETED); rerun it, and please report this with the runner and worker count."
    )


def finalize(
    _: Any,
    shards: list[dict],
    rejects: list[dict],
    stats: RunStats,
    computed_thresholds: dict[str, Any],
    directory: str,
    info: dict[str, Any],
    clip_filters: dict[str, Any] | None = None,
    whatif: dict[str, Any] | None = None,
    max_reject_share: float | None = None,
    raise_on_failure: bool = False,
    publish_to: str | None = None,
) -> None:
    """Writes stats.json, info.json and report.html, checks that every pair read is accounted for, then
    writes COMPLETED last, unless a step rejected more than `max_reject_share` of the pairs that reached
    it. Such a failure raises with `raise_on_failure` (remote runners: the job fails where its user looks);
    a local run leaves it to run_clean, which says it in one line. With `publish_to`, `directory` is the
    run's staging directory, moved there at the end (pipelines/output.py, publish)."""
    summary = stats.to_json()
    if clip_filters:  # every threshold applied, absolute or computed from a keep_fraction
        summary["thresholds"] = {"clip_filter": applied_thresholds(clip_filters, computed_thresholds)}
    if whatif:
        summary["whatif"] = whatif
    outcome = assess(summary, info.get("steps", ()), max_reject_share)
    info = {
        **info,
        **({"thresholds": summary["thresholds"]} if "thresholds" in summary else {}),
        "counts": summary["totals"],
        "shards": sorted(shards, key=lambda s: s["shard"]),
        "rejects": sorted(rejects, key=lambda r: r["file"]),
        "warnings": outcome.warnings,
        "failure": outcome.failure,
    }
    where = finish_output(
        directory,
        info,
        {"stats.json": utf8(dumps_stats(summary))},
        from_info=lambda done: {"report.html": utf8(render_report(summary, done, stats.sample_thumbnails()))},
        verify=lambda: check_accounting(summary["totals"], shards, rejects),
        completed=outcome.failure is None,
        publish_to=publish_to,
    )
    if outcome.failure is not None and raise_on_failure:
        raise RunFailedError(failure_message(outcome.failure, where, publish_to))


def failure_message(failure: str, directory: str, output: str | None = None) -> str:
    """`directory`: where the failed run's files are; `output`, when they are not there, still holds the
    completed run it had (a run without COMPLETED never replaces one)."""
    message = f"{failure}; {directory} has no {COMPLETED} marker (see its report.html)"
    if output is not None and output != directory:
        message += f"; {output} keeps its completed run"
    return message


def _model_scores(kept, model: dict, scores_from: str | None = None, embed: Sequence[str] = ()):
    """CLIP scoring through RunInference, with image embeddings for the pairs of `embed` sources (with
    `scores_from`: the scores that completed run stored, pipelines/stored_scores.py). Returns (kept, rejects)."""
    if model and scores_from:
        from vlcurate.pipelines.stored_scores import AttachStoredScores

        names = sorted({n for step in model.values() for n in step.score_names})
        return kept | "StoredScores" >> AttachStoredScores(scores_from, names), []
    if model:  # imported here: the CLIP modules load torch, which text-only runs never need
        from vlcurate.pipelines.clip import ScoreWithClip

        scored = kept | "ClipScore" >> ScoreWithClip(model, embed)
        return scored["kept"], [scored[REJECTED]]
    return kept, []


def _steps_after_model(kept, after: dict, filters: dict, audit: bool):
    """The steps after the model (the threshold filter: `filters`, clip_filters' {source: step}), which
    receive per-source thresholds as a side input when a source keeps a fraction. Returns (kept, rejects,
    stats partials, computed thresholds or None)."""
    from vlcurate.pipelines.thresholds import keep_fraction_thresholds

    side, thresholds = {}, None
    if any(f.needs_computed_threshold() for f in filters.values()):
        thresholds = keep_fraction_thresholds(kept, filters)
        side["computed_thresholds"] = beam.pvalue.AsSingleton(thresholds)
    post = kept | "StepsAfterClip" >> beam.ParDo(RunSteps(after, audit=audit), **side).with_outputs(
        REJECTED, STATS, main="kept"
    )
    of_batches(post.kept, post[REJECTED])
    return post.kept, [post[REJECTED]], [post[STATS]], thresholds


def counter(progress_folder: str | None):
    """Taps a PCollection for the progress lines (under `stage`); returns what to go on with."""

    def counted(pcoll, stage: str, label: str = ""):
        tapped = tap(pcoll, progress_folder, stage, label)
        return pcoll if tapped is pcoll else of_batches(tapped)

    return counted


def score_pairs(
    p: beam.Pipeline,
    config: CleanConfig,
    chain: Chain,
    readers: list[ReadSource],
    progress_folder: str | None,
    scores_from: str | None = None,
):
    """The per-pair part of the job up to the model's scores: read every source, run the steps before the
    model, score. Returns (kept, [rejects], [stats partials]). `clean --resume` stores this part's output
    per chunk of input files (pipelines/resume.py)."""
    counted = counter(progress_folder)
    pairs = [p | reader for reader in readers] | "AllSources" >> beam.Flatten()
    before, model, _ = chain.split()
    stepped = counted(pairs, "read") | "Steps" >> beam.ParDo(
        RunSteps(before, audit=config.audit, count_read=True)
    ).with_outputs(REJECTED, STATS, main="kept")
    kept = of_batches(stepped.kept, stepped[REJECTED])
    kept, model_rejects = _model_scores(
        kept, model, scores_from, clean_groups.embedding_sources(config, chain)
    )
    return kept, [stepped[REJECTED], *model_rejects], [stepped[STATS]]


def build_pipeline(
    p: beam.Pipeline,
    config: CleanConfig,
    chain: Chain,
    readers: list[ReadSource],
    progress_folder: str | None,
    remote: bool = False,
    staging: str | None = None,
    scores_from: str | None = None,
    scored: Any = None,
    eval_entries: dict[str, list] | None = None,
) -> None:
    """`staging`: the directory to write into (prepare_output_dir), published to the output at the end;
    None writes straight into the output. `scores_from`: a completed clean output of the same inputs whose
    stored model scores stand in for the model step (`vlcurate retune`). `scored`: (kept, rejects,
    partials) made elsewhere in place of score_pairs (`clean --resume` reads what its chunks stored).
    `eval_entries`: {step: the evaluation hashes' entries} loaded before (load_eval_entries); None loads
    them here."""
    counted = counter(progress_folder)
    if scored is None:
        scored = score_pairs(p, config, chain, readers, progress_folder, scores_from)
    kept, rejects, partials = scored
    rejects, partials = list(rejects), list(partials)
    before, model, after = chain.split()
    buckets = buckets_for_input(sum(reader.input_bytes for reader in readers))
    thresholds = None
    if model or any(after.values()):
        kept, more_rejects, more_partials, thresholds = _steps_after_model(
            kept, after, clip_filters(chain), config.audit
        )
        rejects += more_rejects
        partials += more_partials
    if thresholds is None:
        thresholds = p | "NoComputedThresholds" >> beam.Create([{}])
    curves = curves_for(
        {src: [before[src], [model[src]] if src in model else [], after[src]] for src in before}, config.audit
    )
    if any(curves.values()):  # the pairs that passed every per-pair step (before dedup) and every reject
        whatif = count_whatif([kept, *rejects], curves)
    else:
        whatif = p | "NoWhatIf" >> beam.Create([{}])
    if config.output.reread_images:  # every step that looks at pixels has run: see image_spans.py
        digests = image_digests_needed(chain)
        kept = kept | "DetachImages" >> beam.Map(detach_images, digests).with_output_types(PairBatch)
    out = staging or config.output.dir
    score_names = chain.score_names()  # one scores struct for every Parquet file of the output
    kept, duplicate_files, group_partials = clean_groups.run_group_steps(
        kept, config, chain, buckets, out, progress_folder, score_names, eval_entries
    )
    partials += group_partials
    # Rejects leave several steps; each part is tapped, counted and bucketed where it is made, so the
    # parts meet only in the rejects' shuffle (a Flatten first would store and re-read them all).
    kept = counted(kept, "kept")
    rejects = [counted(part, "rejected", f"/{i}") for i, part in enumerate(rejects)]
    for i, part in enumerate(rejects):  # the shard writer counts kept pairs (and duplicate uids)
        partials.append(part | f"CountFinal/{i}" >> beam.ParDo(CountFinal()))
    written = kept | "WriteShards" >> WriteKeptShards(
        out, config.output.pairs_per_shard, score_names, config.output.image_format, config.output.embeddings
    )
    shards = written.shards
    duplicate_files.append(written[REJECT_FILES])
    partials.append(written[STATS])
    stats = partials | "StatsPartials" >> beam.Flatten() | "MergeStats" >> beam.CombineGlobally(MergeStats())
    reject_files = [
        tuple(rejects) | "WriteRejects" >> WriteRejects(out, buckets, score_names),
        *duplicate_files,
    ]
    reject_files = reject_files | "AllRejectFiles" >> beam.Flatten()
    info = {
        "kind": "vlcurate.clean",
        "config": config.to_dict(),
        "steps": chain.names + chain.group_steps,
        "step_params": chain.params(),
        **provenance.started(clip_specs(chain)),
        **({"scores_from": scores_from} if scores_from else {}),
    }
    run_last(
        p,
        finalize,
        beam.pvalue.AsList(shards),
        beam.pvalue.AsList(reject_files),
        beam.pvalue.AsSingleton(stats),
        beam.pvalue.AsSingleton(thresholds),
        directory=out,
        info=info,
        clip_filters=clip_filters(chain),
        whatif=beam.pvalue.AsSingleton(whatif),
        max_reject_share=config.max_reject_share,
        raise_on_failure=remote,
        publish_to=config.output.dir if staging else None,
    )


def clip_filters(chain: Chain) -> dict[str, Any]:
    """{source: its clip_filter}, for the thresholds applied (none when the step is off)."""
    from vlcurate.filters.clip_filter import ClipFilter

    return {src: s for src, steps in chain.by_source.items() for s in steps if isinstance(s, ClipFilter)}


def clip_specs(chain: Chain) -> list[str]:
    """Every CLIP model the run scores with (none when the CLIP step is off)."""
    _, model, _ = chain.split()
    return sorted({spec for step in model.values() for spec in step.specs()})


def warn_about_bundled_clip(chain: Chain) -> None:
    """The bundled tiny CLIP only knows the synthetic scenes; on real pairs its scores mean nothing."""
    bundled = [spec for spec in clip_specs(chain) if spec.startswith("bundled:")]
    if bundled:
        print(
            f"[vlcurate] note: CLIP scores come from {', '.join(bundled)}, trained on synthetic scenes only; "
            "for real data name a model in steps.clip_score.models (e.g. ViT-L-14@openai) or disable "
            "clip_score,clip_filter.",
            file=sys.stderr,
        )


def run_clean(
    config: CleanConfig,
    beam_args: list[str] | None = None,
    progress: bool = True,
    cli_disable: Collection[str] = (),
    scores_from: str | None = None,
    resume: bool = False,
    chunk_files: int | None = None,
) -> dict:
    """Runs the clean pipeline to completion and returns stats.json's content. Config errors raise
    before any data is read. `cli_disable`: the steps --disable named (messages show that form);
    `scores_from`: as in build_pipeline. `resume`: in chunks of `chunk_files` input files, going on from
    the chunks a killed run finished (pipelines/resume.py); the output is the same."""
    make_paths_absolute(config)
    scores_from = absolute_path(scores_from) if scores_from else scores_from
    job = Job(config.workers, beam_args, config_paths(config))
    chain = build_chain(config, carried=carried_scores, cli_disable=cli_disable)
    clean_groups.check_embeddings_computed(config, chain, scores_from)
    readers = [ReadSource(source) for source in config.sources]  # matches files, checks columns
    eval_entries = {  # evaluation sets are read, hashed and embedded before any input is
        name: load_eval_entries(next(iter(steps.values())))
        for name, steps in chain.active_groups().items()
        if hasattr(next(iter(steps.values())), "eval_entry")
    }
    eval_vectors = clean_groups.load_eval_vectors(chain)
    staging = job.stage(config.output.dir, config.output.overwrite)
    clean_groups.write_eval_vectors(chain, staging, eval_vectors)
    if not scores_from:
        warn_about_bundled_clip(chain)  # after every check: a failing run prints its error alone
    lines = JobProgress(
        "clean", total=functools.partial(count_input, config.sources), worker_log="vlcurate-workers"
    )

    def run(stored: Callable[[beam.Pipeline, str | None], Any] | None = None) -> None:
        job.run(
            lambda p, folder: build_pipeline(
                p,
                config,
                chain,
                readers,
                folder,
                remote=not job.local,
                staging=staging,
                scores_from=scores_from,
                scored=stored(p, folder) if stored else None,
                eval_entries=eval_entries,
            ),
            lines,
            show_progress=progress,
        )

    if resume:
        from vlcurate.pipelines.resume import run_resumable

        run_resumable(config, beam_args, progress, chain, readers, chunk_files, run)
    else:
        run()
    out = config.output.dir
    # A failed run stays in its staging directory when the output holds a completed run.
    where = staging if FileSystems.exists(join(staging, "stats.json")) else out
    if not job.local and not FileSystems.exists(join(where, "stats.json")):
        return {}  # a remote job that wrote nothing yet (e.g. a template was made)
    stats = read_json(join(where, "stats.json"))
    totals = stats["totals"]
    job.say_done(
        "", f"read {totals['read']:,}, kept {totals['kept']:,}, rejected {totals['rejected']:,}", out
    )
    outcome = assess(stats, chain.names + chain.group_steps, config.max_reject_share)
    if outcome.warnings:
        print(warning_block(outcome.warnings, join(where, "report.html")), file=sys.stderr, flush=True)
    if outcome.failure is not None:
        raise RunFailedError(failure_message(outcome.failure, where, out))
    return stats


def count_input(sources: list[SourceConfig]) -> Total | None:
    """Records in every source's files (pipelines/input_size.py), for the progress lines."""
    return sum_totals([estimate_records(s.format, match_files(s)) for s in sources])


def config_paths(config: CleanConfig) -> list[str]:
    """Every path a config names: input patterns, image roots and the output directory."""
    sources = config.sources
    return [
        *(p for s in sources for p in s.paths),
        *(s.image_root for s in sources if s.image_root),
        config.output.dir,
    ]


def make_paths_absolute(config: CleanConfig) -> None:
    """Every local path of `config` made absolute against the launcher's working directory, in place:
    workers (other processes, other machines) have their own."""
    for source in config.sources:
        source.paths = [absolute_path(p) for p in source.paths]
        if source.image_root:
            source.image_root = absolute_path(source.image_root)
    config.output.dir = absolute_path(config.output.dir)


def default_config(inputs: list[str], output: str, input_format: str) -> CleanConfig:
    """A config for `--input` without `--config`: one source named `input`, every default."""
    source = SourceConfig(name="input", format=input_format, paths=inputs)
    return CleanConfig(sources=[source], output=OutputConfig(dir=output))
