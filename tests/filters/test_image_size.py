import pytest

from vlcurate.filters.image_size import PIL_MAX_IMAGE_PIXELS, AspectRatio, MaxPixels, MinSide
from vlcurate.schemas.record import Pair


def run(step, width, height, reject=None):
    pair = Pair(uid="s/1", source="s", width=width, height=height, reject=reject)
    step.apply(pair)
    return pair


def test_pil_limit_is_pils_own():
    from PIL import Image

    assert PIL_MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("step", "width", "height", "score", "reason"),
    [
        (MaxPixels(), 9459, 9459, 89_472_681, None),
        (MaxPixels(), 9460, 9460, 89_491_600, "too_many_pixels"),
        (MaxPixels(max_pixels=100), 10, 11, 110, "too_many_pixels"),
        (MinSide(), 200, 200, 200, None),
        (MinSide(), 199, 4000, 199, "too_small"),
        (MinSide(), 4000, 199, 199, "too_small"),
        (MinSide(min_side=100), 150, 150, 150, None),
        (AspectRatio(), 600, 200, 3.0, None),
        (AspectRatio(), 200, 600, 3.0, None),
        (AspectRatio(), 601, 200, 3.005, "aspect_ratio"),
        (AspectRatio(), 200, 601, 3.005, "aspect_ratio"),
        (AspectRatio(max_ratio=4.0), 800, 200, 4.0, None),
    ],
)
def test_image_size(step, width, height, score, reason):
    pair = run(step, width, height)
    (value,) = pair.scores.values()
    assert value == pytest.approx(score)
    assert pair.reject == reason


@pytest.mark.parametrize("step", [MaxPixels(), MinSide(), AspectRatio()])
def test_no_size_does_nothing(step):
    # Probe failed (only seen in audit mode): no score, no extra reason.
    pair = run(step, None, None, reject="image_undecodable")
    assert pair.scores == {} and pair.reject == "image_undecodable" and "audit_reasons" not in pair.meta


def test_audit_mode_collects_extra_reasons():
    pair = run(MinSide(), 10, 10, reject="too_short")
    assert pair.reject == "too_short" and pair.meta["audit_reasons"] == ["too_small"]
