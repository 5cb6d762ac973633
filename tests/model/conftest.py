"""Fixtures of the model tests."""

import pytest

from vlcurate.model.clip_models import load_clip_cached
from vlcurate.schemas.model_spec import DEFAULT_BUNDLED


@pytest.fixture(scope="module")
def tiny():
    """The bundled tiny CLIP on the CPU (loaded once per process)."""
    return load_clip_cached(DEFAULT_BUNDLED)
