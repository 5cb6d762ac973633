"""The Qwen-VL loss model behind Beam's RunInference, for the model checks of `vlcurate check`.

An example is a `LossBatch` (model/qwenvl_losses.py) that pipelines/check.py formed from the data alone,
so Beam is told to hand over one example per call: batching by timing would make losses depend on it.
The model is loaded once per worker process (GPU when present, bf16 there; fp32 on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from vlcurate.model.qwenvl_losses import LossBatch, LossResult, sample_losses


class QwenVLLossHandler(ModelHandler[LossBatch, list[LossResult], Any]):
    def __init__(self, spec: str, read_image: Callable[[str], bytes], device: str | None = None) -> None:
        super().__init__()
        self._spec, self._read, self._device = spec, read_image, device

    def load_model(self) -> Any:
        from vlcurate.model.qwenvl_weights import load_model

        model, _ = load_model(self._spec, self._device)
        return model

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": 1}  # an example is already a batch

    def run_inference(
        self, batch: Sequence[LossBatch], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[list[LossResult]]:
        return [sample_losses(model, example, self._read) for example in batch]

    def get_metrics_namespace(self) -> str:
        return "vlcurate.check"
