"""Per-pair cost of each part of a `vlcurate clean` chain, without Beam: `bench/clip_gpu.py e2e --breakdown`.

Reads the e2e's WebDataset tars as the pipeline does (pipelines/read.py: read_file in batches, then
load_images), then runs the chain's parts the way clean's DoFns run them, in this process, timing each
over every batch:
- the per-pair steps before and after CLIP through RunSteps (pipelines/steps.py: the step engine, the
  segment's near-threshold galleries, reject thumbnails); each step's own time is read off the step engine
  (StepRunner._run_step), the rest of RunSteps is a part of its own;
- clip_score as the pipeline runs it: PrepareClipInput (PIL decode + resize in its threads when the model
  is on the CPU; JPEGs stay encoded for nvjpeg on a GPU), FixedSizeGroups, the model handler's
  run_inference and the scores attached (decoding on the GPU then counts as the model's);
- the what-if curves (CountWhatIf over the kept pairs and every reject), DetachImages (with dedup on, it
  hashes every kept image) and each group step as GroupPairs runs it: bucket split by group key, the
  shuffle's encode and decode with the coder Beam picks, _MarkBucket.
Reading the tars is timed too (the same in every chain); writing shards and rejects and Beam's own
transport are not, so a chain's sum is below its end-to-end time per pair. Each part gets its wall time
and this process's CPU time (every thread: PIL's decode threads, torch's), each the best of `repeats`
passes (a shared machine only ever slows a pass down; a single-threaded part's CPU time moves less with
the machine's load than its wall time, while torch's threads may spin as they wait and count). Every pass
reads the pairs afresh, since steps change them in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator

import apache_beam as beam

READ = "read tars (pipelines/read.py)"
RUN_AFTER = "RunSteps after CLIP: galleries, reject thumbnails, stats"
# Parts that do the same work in every chain of the e2e (the same pairs, the same steps), so a
# difference between chains there is the timing's noise: reading, probing, CLIP and its filter.
SAME_WORK = (READ, "probe_image", "clip_score:", "clip_filter", RUN_AFTER)


def same_work(part: str) -> bool:
    return part.startswith(SAME_WORK)


def chain_config(
    tars: str, out: str, spec: str, batch: int, clip_params: dict, disable: list[str], workers: int = 1
):
    """The CleanConfig bench/clip_gpu.py's e2e runs for one chain (`disable`: the steps it turns off)."""
    from vlcurate.schemas.config import CleanConfig, OutputConfig, SourceConfig

    clip_params = dict(clip_params)
    reread = clip_params.pop("reread_images")
    return CleanConfig(
        sources=[SourceConfig(name="bench", format="webdataset", paths=[os.path.join(tars, "*.tar")])],
        output=OutputConfig(dir=out, overwrite=True, pairs_per_shard=5000, reread_images=reread),
        steps={
            "clip_score": {"models": spec, "batch_size": batch, **clip_params},
            # Below every score: the filter keeps each real score, so a reject there means a NaN score.
            "clip_filter": {"threshold": -2.0},
        },
        disable=disable,
        workers=workers,
    )


def _source(tars: str):
    from vlcurate.schemas.config import SourceConfig

    return SourceConfig(name="bench", format="webdataset", paths=[os.path.join(tars, "*.tar")])


def input_bytes(tars: str) -> int:
    """The input's bytes, which size the group steps' buckets (write.buckets_for_input)."""
    from vlcurate.pipelines.read import match_files

    return sum(match_files(_source(tars)).values())


def read_batches(tars: str, limit: int) -> list:
    """The first `limit` pairs of the tars as the pipeline's batches (one file's pairs per batch)."""
    from vlcurate.pipelines.load_images import load_images
    from vlcurate.pipelines.read import match_files, read_file
    from vlcurate.schemas.batch import BATCH_SIZE, batched

    source = _source(tars)
    batches, count = [], 0
    for path in sorted(match_files(source)):
        for batch in batched(read_file(source, path), min(BATCH_SIZE, limit - count)):
            batches.append(load_images(batch, source.max_image_bytes))
            count += len(batch)
            if count >= limit:
                return batches
    return batches


def _run_dofn(dofn, batches) -> tuple[list, list]:
    """A RunSteps-like DoFn over batches: (kept batches, reject batches)."""
    from vlcurate.pipelines.steps import REJECTED

    kept, rejects = [], []
    for batch in batches:
        for out in dofn.process(batch):
            if isinstance(out, beam.pvalue.TaggedOutput):
                assert out.tag == REJECTED, out.tag
                rejects.append(out.value)
            else:
                kept.append(out)
    return kept, rejects


class Spent:
    """Wall and CPU seconds (this process, every thread) per part, and the pairs each part saw."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.seen: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def part(self, name: str, pairs: int) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - wall
            self.cpu[name] += time.process_time() - cpu
            self.seen[name] += pairs


def _timed_steps(dofn, spent: Spent) -> None:
    """Times each step of a set-up RunSteps where the step engine calls it (StepRunner._run_step)."""
    runner = dofn._runner
    inner = runner._run_step

    def run_step(step, source, pairs) -> None:
        with spent.part(step.name, len(pairs)):
            inner(step, source, pairs)

    runner._run_step = run_step


class ChainCosts:
    """One chain's parts, set up once (the model loaded once, as a worker does), timed per pass."""

    def __init__(self, config, spec: str, device: str, input_bytes: int) -> None:
        from vlcurate.filters.chain import build_chain
        from vlcurate.model.clip_handler import ClipModelHandler
        from vlcurate.model.clip_models import image_size_of
        from vlcurate.pipelines.write import buckets_for_input

        self.config = config
        self.chain = build_chain(config)
        self.before, self.model, self.after = self.chain.split()
        self.buckets = buckets_for_input(input_bytes)
        self.image_sizes = {spec: image_size_of(spec)}
        self.handler = self.loaded = None
        if self.model:
            step = next(iter(self.model.values()))
            self.handler = ClipModelHandler(
                spec,
                batch_size=step.batch_size,
                device=device,
                compile=step.compile,
                precision=step.precision,
                share=False,
            )
            self.loaded = self.handler.load_model()

    def one_pass(self, batches: list, out: str) -> tuple[Spent, dict[str, int]]:
        """The pass's time per part, and its pair counts (read, kept, rejected)."""
        from vlcurate.pipelines.clean import image_digests_needed
        from vlcurate.pipelines.clip import FixedSizeGroups, PrepareClipInput, _attach_scores
        from vlcurate.pipelines.group_steps import _UNGROUPED, _MarkBucket, _split_by_bucket
        from vlcurate.pipelines.image_spans import detach_images
        from vlcurate.pipelines.steps import REJECTED, RunSteps
        from vlcurate.pipelines.whatif import CountWhatIf, curves_for
        from vlcurate.schemas.batch import PairBatch

        spent = Spent()
        read = sum(len(b) for b in batches)
        rejects: list = []

        def count(batches: list) -> int:
            return sum(len(b) for b in batches)

        def segment(label: str, steps: dict, batches: list, count_read: bool = False) -> list:
            dofn = RunSteps(steps, audit=False, count_read=count_read)
            dofn.setup()
            dofn.start_bundle()
            inside, rest = Spent(), f"RunSteps {label}: galleries, reject thumbnails, stats"
            _timed_steps(dofn, inside)
            with spent.part(rest, count(batches)):
                kept, rejected = _run_dofn(dofn, batches)
            for clock in ("wall", "cpu"):  # each step's own time; RunSteps' rest is the remainder
                mine, steps_own = getattr(spent, clock), getattr(inside, clock)
                remainder = mine.pop(rest) - sum(steps_own.values())
                mine.update(steps_own)
                mine[rest] = remainder  # listed after its steps
            spent.seen.update(inside.seen)
            rejects.extend(rejected)
            return kept

        kept = segment("before CLIP", self.before, batches, count_read=True)
        if self.model:
            prepare = PrepareClipInput(self.model, self.image_sizes)
            prepare.setup()
            groups = []
            with spent.part("clip_score: decode + resize (PrepareClipInput)", count(kept)):
                for batch in kept:
                    for out_ in prepare.process(batch):
                        (rejects if out_.tag == REJECTED else groups).append(out_.value)
            prepare.teardown()
            regroup = FixedSizeGroups(self.handler.batch_size)
            regroup.start_bundle()
            kept = []
            with spent.part(
                "clip_score: model (tokenize, image + text towers, scores attached)", count(groups)
            ):
                full = [g for group in groups for g in regroup.process(group)]
                full += [w.value for w in regroup.finish_bundle()]
                for group in full:
                    kept.extend(_attach_scores(p) for p in self.handler.run_inference([group], self.loaded))
        if any(self.after.values()):
            kept = segment("after CLIP", self.after, kept)
        curves = curves_for(
            {
                src: [self.before[src], [self.model[src]] if src in self.model else [], self.after[src]]
                for src in self.before
            },
            audit=False,
        )
        if any(curves.values()):
            combine = CountWhatIf(curves)
            streams = [*kept, *rejects]
            with spent.part("what-if curves (CountWhatIf)", count(streams)):
                acc = combine.create_accumulator()
                for batch in streams:
                    acc = combine.add_input(acc, batch)
                combine.extract_output(acc)
        if self.config.output.reread_images:
            with_digest = image_digests_needed(self.chain)
            with spent.part("DetachImages (hashes each image where dedup is on)", count(kept)):
                kept = [detach_images(b, with_digest) for b in kept]
        score_names = self.chain.score_names()
        coder = beam.coders.registry.get_coder(
            beam.typehints.KV[int, beam.typehints.Tuple[beam.typehints.List[str], PairBatch]]
        )
        for name, steps in self.chain.groups.items():
            mark = _MarkBucket(steps, out, self.buckets, None, score_names)
            mark.setup()
            mark.start_bundle()
            buckets: dict[int, list] = defaultdict(list)
            stayed = []
            label = f"{name}: group keys, shuffle encode + decode, marking (GroupPairs)"
            with spent.part(label, count(kept)):
                for batch in kept:
                    for out_ in _split_by_bucket(batch, steps, self.buckets):
                        if isinstance(out_, beam.pvalue.TaggedOutput):
                            assert out_.tag == _UNGROUPED, out_.tag
                            stayed.append(out_.value)
                        else:  # what the shuffle does to each element: encoded, then decoded
                            index, part = coder.decode(coder.encode(out_))
                            buckets[index].append(part)
                for index, parts in buckets.items():
                    for out_ in mark.process((index, parts)):
                        if not isinstance(out_, beam.pvalue.TaggedOutput):
                            stayed.append(out_)
            kept = stayed
        kept_count = count(kept)
        return spent, {"read": read, "kept": kept_count, "rejected": read - kept_count}


def breakdown(
    tars: str,
    chains: dict[str, list[str]],
    spec: str,
    device: str,
    batch: int,
    clip_params: dict,
    limit: int,
    repeats: int,
) -> list[dict]:
    """Rows per chain and part: wall microseconds per pair the part saw and per pair read, and CPU
    microseconds per pair read (each the best of `repeats` passes). `chains`: {name: the steps it
    disables}."""
    from vlcurate.pipelines.options import in_process_tuning

    rows = []
    with tempfile.TemporaryDirectory() as out, in_process_tuning():  # as clean runs in-process
        start = time.perf_counter()
        size = input_bytes(tars)
        costs = {
            name: ChainCosts(chain_config(tars, out, spec, batch, clip_params, disable), spec, device, size)
            for name, disable in chains.items()
        }
        warm = read_batches(tars, 64)
        for cost in costs.values():  # first calls (the language model's load, the model's) stay out
            cost.one_pass(warm, out)
        print(f"breakdown: set up in {time.perf_counter() - start:.1f}s", flush=True)
        best: dict[str, dict[str, dict[str, float]]] = {name: {"wall": {}, "cpu": {}} for name in chains}
        seen_of: dict[str, dict[str, int]] = {}
        counts_of: dict[str, dict[str, int]] = {}
        for _ in range(repeats):
            for name, cost in costs.items():  # chains alternate: machine noise hits both
                reading = Spent()
                with reading.part(READ, 0):
                    batches = read_batches(tars, limit)
                spent, counts = cost.one_pass(batches, out)
                for clock in ("wall", "cpu"):
                    times = {**getattr(spent, clock), READ: getattr(reading, clock)[READ]}
                    for part, seconds in times.items():
                        best[name][clock][part] = min(seconds, best[name][clock].get(part, seconds))
                seen_of[name] = {**spent.seen, READ: counts["read"]}
                counts_of[name] = counts
        for name in chains:
            read = counts_of[name]["read"]
            for part, seconds in best[name]["wall"].items():
                seen, cpu = seen_of[name][part], best[name]["cpu"][part]
                rows.append(
                    {
                        "kind": "step_cost",
                        "chain": name,
                        "part": part,
                        "pairs_seen": seen,
                        "us_per_pair_seen": round(seconds / seen * 1e6, 2) if seen else None,
                        "us_per_pair_read": round(seconds / read * 1e6, 2),
                        "cpu_us_per_pair_read": round(cpu / read * 1e6, 2),
                        **{f"pass_{k}": v for k, v in counts_of[name].items()},
                        "repeats": repeats,
                    }
                )
    return rows
