"""The Qwen-VL loss model behind Beam's RunInference, for the model checks of `vlcurate check`.

An example is a `LossBatch` (model/qwenvl_losses.py) that pipelines/check.py formed from the data alone;
each is one forward of its own, so Beam may hand over several per call (as its timing decides) without
changing a loss: the call runs them in turn, the next one's images decoding while one runs.
The model is loaded once per worker process (GPU when present, bf16 there; fp32 on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from vlcurate.model.qwenvl_losses import LossBatch, LossResult, losses_in_order

EXAMPLES_PER_CALL = 8  # model batches per call: enough for the decode threads to stay one batch ahead


class QwenVLLossHandler(ModelHandler[LossBatch, list[LossResult], Any]):
    def __init__(self, spec: str, read_image: Callable[[str], bytes], device: str | None = None) -> None:
        super().__init__()
        self._spec, self._read, self._device = spec, read_image, device

    def load_model(self) -> Any:
        from vlcurate.model.qwenvl_weights import load_model

        model, _ = load_model(self._spec, self._device)
        return model

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": EXAMPLES_PER_CALL}

    def run_inference(
        self, batch: Sequence[LossBatch], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[list[LossResult]]:
        return list(losses_in_order(model, batch, self._read))

    def get_metrics_namespace(self) -> str:
        return "vlcurate.check"
