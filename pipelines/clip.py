"""CLIP scoring in the pipeline: prepare images, RunInference per model, thresholds per source.

Pairs are partitioned by the model their source and caption language call for; each model gets its own
RunInference (loaded once per worker). Decoding happens before batching, so a bad image is a reject, not
a failed batch. `keep_fraction` thresholds come from a second pass over the scores (a side input).
Pairs of the sources that need them (semantic dedup, the embedding store) also get their image's
normalized CLIP embedding (`pair.embedding`); the model batches of other sources compute none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import RunInference
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from vlcurate.filters.base import reject
from vlcurate.filters.clip_filter import ClipScore
from vlcurate.model.clip_handler import ClipGroup, ClipInput, ClipModelHandler, ClipPrediction
from vlcurate.model.clip_models import image_size_of
from vlcurate.model.clip_preprocess import pil_pixels
from vlcurate.pipelines.batch_coder import SampledPickleCoder, of_batches
from vlcurate.pipelines.steps import REJECTED, as_rejects
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.embedding import vector_bytes
from vlcurate.schemas.record import Pair


class PrepareClipInput(beam.DoFn):
    """A batch of pairs -> one group of ClipInputs per model (tagged with the model's spec). JPEGs stay
    encoded for nvjpeg when the model runs on a GPU; the rest is decoded and resized here with PIL. An
    image PIL cannot decode becomes an `image_undecodable` reject (a batch on REJECTED)."""

    def __init__(self, steps: dict[str, ClipScore], image_sizes: dict[str, int]) -> None:
        self.steps, self.image_sizes = steps, image_sizes

    def setup(self) -> None:
        import torch

        self.gpu = torch.cuda.is_available()
        threads = max(step.threads() for step in self.steps.values())
        # PIL decodes and resizes without holding the GIL, so threads use the cores of one worker.
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown()

    def process(self, batch: PairBatch) -> Iterator:
        specs = [self.steps[pair.source].model_for(pair) for pair in batch]
        decode = [i for i, pair in enumerate(batch) if not self._to_gpu(pair)]
        jobs = [(batch[i], specs[i]) for i in decode]
        decoded = dict(
            zip(decode, self._pool.map(self._decode, jobs) if self._pool else map(self._decode, jobs))
        )
        groups: dict[str, ClipGroup] = {}
        rejected = PairBatch()
        for i, (pair, spec) in enumerate(zip(batch, specs)):
            if i not in decoded:
                groups.setdefault(spec, ClipGroup()).append(ClipInput(pair, jpeg=pair.image))
            elif decoded[i] is None:  # undecodable data is a property of the record
                reject(pair, "image_undecodable")
                rejected.append(pair)
            else:
                groups.setdefault(spec, ClipGroup()).append(ClipInput(pair, pixels=decoded[i]))
        for spec, group in groups.items():
            yield beam.pvalue.TaggedOutput(spec, group)
        if rejected:
            yield beam.pvalue.TaggedOutput(REJECTED, as_rejects(rejected))

    def _to_gpu(self, pair: Pair) -> bool:
        """JPEGs stay encoded for nvjpeg when the pair's model runs on the GPU with gpu_decode on."""
        step = self.steps[pair.source]
        return self.gpu and step.device != "cpu" and step.gpu_decode and pair.image_format == "JPEG"

    def _decode(self, job: tuple[Pair, str]) -> np.ndarray | None:
        pair, spec = job
        try:
            return pil_pixels(pair.image, self.image_sizes[spec], draft=self.steps[pair.source].draft)
        except Exception:
            return None


_PER_INPUT = 300  # a ClipInput's fixed fields and pickle framing: an estimate, used only for metrics


def _input_size(e: ClipInput) -> int:
    return (
        _PER_INPUT
        + len(e.jpeg or b"")
        + (e.pixels.nbytes if e.pixels is not None else 0)
        + len(e.pair.caption)
    )


# Beam estimates the size of sampled elements of every PCollection, for its metrics, by encoding them:
# that would copy a group's images once more, and for a prediction wait for the GPU to finish its scores
# (undoing clip_score.overlap). These coders estimate from byte lengths instead.
class ClipGroupCoder(SampledPickleCoder):
    def item_size(self, e: ClipInput) -> int:
        return _input_size(e)

    def to_type_hint(self):
        return ClipGroup


class ClipPredictionCoder(SampledPickleCoder):
    def items(self, prediction: ClipPrediction) -> list[ClipInput]:
        return prediction.example

    def item_size(self, e: ClipInput) -> int:
        return _input_size(e) + 8  # and its score

    def to_type_hint(self):
        return ClipPrediction


beam.coders.registry.register_coder(ClipGroup, ClipGroupCoder)
beam.coders.registry.register_coder(ClipPrediction, ClipPredictionCoder)


class FixedSizeGroups(beam.DoFn):
    """ClipGroups in, ClipGroups of exactly `size` inputs out, the bundle's last one aside. RunInference
    then gets one full model batch per group: every model call is padded to `size` rows
    (model/clip_handler.py), and regrouping here leaves only the bundle's last one with padding to
    compute, where pooling whole groups would leave a partial chunk in most batches."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)

    def start_bundle(self) -> None:
        self._pending = ClipGroup()

    def process(self, group: ClipGroup) -> Iterator[ClipGroup]:
        self._pending.extend(group)
        if len(self._pending) < self.size:
            return
        full = len(self._pending) // self.size * self.size
        for start in range(0, full, self.size):
            yield ClipGroup(self._pending[start : start + self.size])
        self._pending = ClipGroup(self._pending[full:])

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._pending:
            yield GlobalWindows.windowed_value(self._pending)
        self._pending = ClipGroup()


def _attach_scores(result: ClipPrediction, embed: frozenset[str] = frozenset()) -> PairBatch:
    """The group's pairs with their scores; those of an `embed` source with their image's embedding too
    (none for an image that failed GPU decoding: its NaN score gets it rejected as clip_no_score)."""
    batch = PairBatch()
    vectors = result.inference.vectors() if embed else None
    for i, (example, score) in enumerate(zip(result.example, result.inference, strict=True)):
        example.pair.scores["clip"] = float(score)  # never drop a pair
        if vectors is not None and vectors[i] is not None and example.pair.source in embed:
            example.pair.embedding = vector_bytes(vectors[i])
        batch.append(example.pair)
    return batch


class AttachScores(beam.DoFn):
    """ClipPredictions -> batches of pairs with scores["clip"].

    With `hold` (clip_score.overlap), the groups of one model batch wait here until the next model batch
    has been queued on the GPU (or the bundle ends), so the GPU computes while this worker's CPU moves the
    previous batch on and reads the next: Beam runs a worker's fused steps one element at a time, and
    reading the scores at once would leave the GPU idle whenever the CPU works. `embed`: the sources whose
    pairs get their image's embedding.
    """

    def __init__(self, hold: bool = True, embed: Collection[str] = ()) -> None:
        self.hold, self.embed = hold, frozenset(embed)

    def start_bundle(self) -> None:
        self._held: list[ClipPrediction] = []

    def process(self, result: ClipPrediction) -> Iterator[PairBatch]:
        if not self.hold:
            yield _attach_scores(result, self.embed)
            return
        if self._held and self._held[-1].inference.pending is not result.inference.pending:
            yield from self._release()
        self._held.append(result)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for batch in self._release():
            yield GlobalWindows.windowed_value(batch)

    def _release(self) -> list[PairBatch]:
        held, self._held = self._held, []
        return [_attach_scores(result, self.embed) for result in held]


class ScoreWithClip(beam.PTransform):
    """Batches of pairs in; batches with scores["clip"] out (main), undecodable images on REJECTED.
    `embed`: the sources whose pairs also get `pair.embedding` (only their models compute embeddings)."""

    def __init__(self, steps: dict[str, ClipScore], embed: Collection[str] = ()) -> None:
        super().__init__()
        self.steps, self.embed = steps, sorted(embed)
        # Read from the model configs now: a model that cannot be had fails before any data is read.
        self.image_sizes = {spec: image_size_of(spec) for spec in self.specs()}

    def specs(self) -> list[str]:
        return sorted({spec for step in self.steps.values() for spec in step.specs()})

    def expand(self, pairs):
        specs = self.specs()
        prepared = pairs | "Prepare" >> beam.ParDo(
            PrepareClipInput(self.steps, self.image_sizes)
        ).with_outputs(REJECTED, *specs)
        scored = []
        for spec in specs:
            prepared[spec].element_type = ClipGroup  # tagged outputs: Beam cannot infer their type
            step = next(s for s in self.steps.values() if spec in s.specs())
            handler = ClipModelHandler(
                spec,
                batch_size=step.batch_size,
                device=step.device,
                compile=step.compile,
                precision=step.precision,
                share=step.share_model,
                embeddings=any(spec in self.steps[src].specs() for src in self.embed if src in self.steps),
            )
            groups = prepared[spec] | f"Regroup[{spec}]" >> beam.ParDo(
                FixedSizeGroups(step.batch_size)
            ).with_output_types(ClipGroup)
            predictions = groups | f"RunInference[{spec}]" >> RunInference(handler)
            predictions.element_type = ClipPrediction
            scored.append(
                predictions
                | f"Attach[{spec}]"
                >> beam.ParDo(
                    AttachScores(step.overlap and not step.share_model, self.embed)
                ).with_output_types(PairBatch)
            )
        return {
            "kept": of_batches(scored | "AllScored" >> beam.Flatten(pipeline=pairs.pipeline)),
            REJECTED: of_batches(prepared[REJECTED]),
        }
