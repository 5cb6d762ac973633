import apache_beam as beam

from vlcurate.pipelines.batch_coder import PairBatchCoder
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair


def test_registered_coder_round_trips_and_estimates_without_encoding():
    coder = beam.coders.registry.get_coder(PairBatch)
    assert isinstance(coder, PairBatchCoder)
    batch = PairBatch(
        Pair(uid=f"s/{i}", source="s", caption="a dog", caption_raw="a dog", image=b"x" * 1000)
        for i in range(20)
    )
    assert coder.decode(coder.encode(batch)) == batch
    assert coder.estimate_size(batch) == 20 * (200 + 1000 + 5 + 5)
    assert coder.estimate_size(PairBatch()) == 0
