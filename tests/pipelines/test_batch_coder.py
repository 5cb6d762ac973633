import apache_beam as beam

from vlcurate.pipelines.batch_coder import PairBatchCoder
from vlcurate.pipelines.steps import as_rejects
from vlcurate.schemas.arrow import kept_table, reject_table
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


def test_embedding_survives_the_coder_and_stays_out_of_written_rows():
    coder = beam.coders.registry.get_coder(PairBatch)
    vector = bytes(range(16)) * 64  # 512 float16 values' worth of bytes
    batch = PairBatch([Pair(uid="s/0", source="s", caption="ab", caption_raw="ab", embedding=vector)])
    (decoded,) = coder.decode(coder.encode(batch))
    assert decoded.embedding == vector
    assert coder.estimate_size(batch) == 200 + 1024 + 2 + 2
    names = set(reject_table(batch, []).column_names) | set(
        kept_table(batch, ["k"], [], ["JPEG"]).column_names
    )
    assert "embedding" not in names
    assert "embedding" not in kept_table(batch, ["k"], [], ["JPEG"]).column("meta")[0].as_py()
    (rejected,) = as_rejects(batch)
    assert rejected.embedding is None and rejected.uid == "s/0"
