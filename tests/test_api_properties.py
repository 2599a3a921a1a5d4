"""Property-based test of the inference API over shapes, layouts, dtypes and scales: the fused
CPU backend and the NumPy reference agree, and the result has the promised kind and size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srcnn_fast.infer import Upscaler

UPSCALERS = {
    (scale, backend): Upscaler(scale, backend=backend)
    for scale in (2, 3, 4)
    for backend in ("cpu", "reference")
}


@st.composite
def images(draw):
    height = draw(st.integers(1, 13))
    width = draw(st.integers(1, 13))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    shape = (height, width) if channels is None else (height, width, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), scale=st.sampled_from([2, 3, 4]))
def test_cpu_matches_reference_for_any_image(image: np.ndarray, scale: int) -> None:
    got = UPSCALERS[scale, "cpu"](image)
    expected = UPSCALERS[scale, "reference"](image)
    assert got.dtype == image.dtype
    assert got.shape == (image.shape[0] * scale, image.shape[1] * scale, *image.shape[2:])
    if image.dtype == np.float32:
        assert np.all(np.isfinite(got))
        diff = float(np.abs(got - expected).max())
        assert diff <= 1e-4, f"max |diff| {diff:.3g}"
    else:
        # Integer outputs: equal but for values within float32 rounding of a .5 boundary.
        diff = int(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max())
        assert diff <= 1, f"max diff {diff} LSB"


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 5), np.uint8), np.zeros((2, 2), np.int16)])
def test_bad_arrays_are_refused_by_every_backend(bad: np.ndarray) -> None:
    from srcnn_fast.errors import ImageError

    for upscaler in UPSCALERS.values():
        with pytest.raises(ImageError):
            upscaler(bad)
