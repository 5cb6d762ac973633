"""Static fp8 linears (precision: fp8): calibration, refusal before it, saturation instead of NaN."""

import pytest
import torch

from vlcurate.model.clip_fast import Fp8Linear, calibrate_fp8


@pytest.fixture
def layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32).to(torch.bfloat16)
    return linear, Fp8Linear(linear, scaling="static")


def test_a_static_layer_refuses_to_run_before_calibration(layer):
    _, fp8 = layer
    with pytest.raises(RuntimeError, match="calibrate_fp8"):
        fp8(torch.ones(2, 64, dtype=torch.bfloat16))


def test_calibration_fixes_the_scale_to_headroom_times_the_largest_activation(layer):
    linear, fp8 = layer
    x = torch.randn(16, 64, dtype=torch.bfloat16)
    assert calibrate_fp8(fp8, lambda: fp8(x), headroom=2.0) == 1
    assert fp8.x_scale.item() == pytest.approx(2.0 * x.abs().max().item() / 448.0)
    error = (fp8(x).float() - linear(x).float()).abs().max().item()
    assert error < 0.05 * linear(x).abs().max().item()


def test_inputs_beyond_the_calibrated_range_saturate_rather_than_become_nan(layer):
    _, fp8 = layer
    x = torch.randn(16, 64, dtype=torch.bfloat16)
    calibrate_fp8(fp8, lambda: fp8(x))
    out = fp8(x * 1000)
    assert torch.isfinite(out.float()).all()


def test_random_weights_are_the_same_on_every_load():
    from vlcurate.model.clip_models import load_clip

    first = load_clip("ViT-B-32@random").model.visual.conv1.weight
    second = load_clip("ViT-B-32@random").model.visual.conv1.weight
    assert torch.equal(first, second)
