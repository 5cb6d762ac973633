"""Pipeline options and the tuning around in-process runs."""

import gc

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory

from vlcurate.pipelines.options import in_process_tuning, pipeline_options, short_state_sampling


def _period() -> int:
    return statesampler.StateSampler("test", CounterFactory()).sampling_period_ms


def test_state_samplers_made_during_the_block_sample_every_20_ms_and_beams_default_returns_after():
    assert _period() == 200
    with short_state_sampling():
        assert _period() == 20
        # An explicit longer period is capped too; a shorter one is kept.
        assert (
            statesampler.StateSampler("t", CounterFactory(), sampling_period_ms=500).sampling_period_ms == 20
        )
        assert statesampler.StateSampler("t", CounterFactory(), sampling_period_ms=5).sampling_period_ms == 5
    assert _period() == 200


def test_in_process_tuning_restores_the_gc_thresholds():
    before = gc.get_threshold()
    with in_process_tuning():
        assert gc.get_threshold()[0] == 70_000
        assert _period() == 20
    assert gc.get_threshold() == before


def test_workers_select_local_multi_processing():
    options = pipeline_options(workers=3).view_as(DirectOptions)
    assert options.direct_num_workers == 3
    assert options.direct_running_mode == "multi_processing"
