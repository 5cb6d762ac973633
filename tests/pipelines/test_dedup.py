import json

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from vlcurate.filters.dedup import Dedup, content_key
from vlcurate.pipelines.group_steps import REJECT_FILES, GroupPairs, bucket_of
from vlcurate.pipelines.options import pipeline_options
from vlcurate.pipelines.steps import STATS, MergeStats
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
def test_duplicates_name_the_smallest_uid_for_any_bucket_count(buckets, tmp_path):
    expected_rejects = [(f"s/{i:03d}", f"s/{i % 14:03d}") for i in range(14, 40)]
    with beam.Pipeline(options=pipeline_options()) as p:
        out = p | beam.Create(pairs()) | GroupPairs({"s": Dedup()}, buckets, str(tmp_path))
        kept = out["kept"] | "KeptUids" >> beam.FlatMap(lambda b: [x.uid for x in b])
        stats = out[STATS] | beam.CombineGlobally(MergeStats())
        counted = stats | "Counted" >> beam.Map(
            lambda s: (sum(s.step_dropped.values()), dict(s.rejected), sum(s.step_seen.values()))
        )
        written = out[REJECT_FILES] | "Pairs" >> beam.Map(lambda row: row["pairs"])
        assert_that(kept, equal_to([f"s/{i:03d}" for i in range(14)]), label="kept")
        assert_that(counted, equal_to([(26, {("s", "duplicate"): 26}, 40)]), label="counted")
        assert_that(written | beam.CombineGlobally(sum), equal_to([26]), label="manifest")
    files = sorted(tmp_path.glob("rejects/*.parquet"))
    # Each bucket with duplicates writes its own file, named by the bucket: the content hash mod buckets.
    records = {p.uid: p for batch in pairs() for p in batch}
    buckets_with_duplicates = {bucket_of(content_key(records[uid]), buckets) for uid, _ in expected_rejects}
    assert [f.name for f in files] == [f"duplicates-{b:05d}.parquet" for b in sorted(buckets_with_duplicates)]
    rows = pq.read_table(files).to_pylist()
    assert sorted((r["uid"], json.loads(r["meta"])["duplicate_of"]) for r in rows) == expected_rejects
    assert {r["reason"] for r in rows} == {"duplicate"}
