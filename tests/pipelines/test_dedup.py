import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from vlcurate.pipelines.dedup import Deduplicate
from vlcurate.pipelines.options import pipeline_options
from vlcurate.pipelines.steps import REJECTED, STATS
from vlcurate.schemas.batch import PairBatch
from vlcurate.schemas.record import Pair


def pairs() -> list[PairBatch]:
    # Captions repeat every 7 records; the image repeats every 2: a pair is a duplicate of the first
    # record with the same (image, caption), i.e. the same i mod 14.
    records = [
        Pair(uid=f"s/{i:03d}", source="s", caption=f"caption {i % 7}", image=bytes([i % 2]))
        for i in range(40)
    ]
    return [PairBatch(records[:13]), PairBatch(records[13:30]), PairBatch(records[30:])]


@pytest.mark.parametrize("buckets", [1, 5])
def test_duplicates_name_the_smallest_uid_for_any_bucket_count(buckets):
    expected_rejects = [(f"s/{i:03d}", f"s/{i % 14:03d}") for i in range(14, 40)]
    with beam.Pipeline(options=pipeline_options()) as p:
        out = p | beam.Create(pairs()) | Deduplicate(buckets)
        kept = out.kept | "KeptUids" >> beam.FlatMap(lambda b: [x.uid for x in b])
        rejects = out[REJECTED] | "Rejects" >> beam.FlatMap(
            lambda b: [(x.uid, x.meta["duplicate_of"]) for x in b if x.reject == "duplicate"]
        )
        dropped = out[STATS] | "Dropped" >> beam.Map(lambda s: sum(s.step_dropped.values()))
        assert_that(kept, equal_to([f"s/{i:03d}" for i in range(14)]), label="kept")
        assert_that(rejects, equal_to(expected_rejects), label="rejects")
        assert_that(dropped | beam.CombineGlobally(sum), equal_to([len(expected_rejects)]), label="counted")
