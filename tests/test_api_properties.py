"""Property-based tests of the inference API over shapes, layouts, dtypes, memory layouts and
scales (1 to 4: shipped weights for 2, 3, 4; random weights for every scale, 1 included, and
for a second architecture): the fused CPU backend and the NumPy reference agree, the result has
the promised kind and size, and every array the API cannot take is refused with one line.

Tolerances: float32 outputs within 1e-4 max-abs of the reference (test_cpu_backend.py's bound:
the fused kernel folds bicubic into conv1 and sums in another order); integer outputs equal or
1 LSB apart (a value within float32 rounding of a .5 boundary). Both print the max difference.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srcnn_fast.errors import ImageError
from srcnn_fast.infer import SHIPPED_SCALES, Upscaler
from srcnn_fast.model import Architecture, SRCNNWeights

ATOL = 1e-4
SMALL = Architecture(f1=5, n1=8, f2=1, n2=8, f3=3)

#: (weights, scale) -> the weights; the CPU and reference upscalers are built from each.
WEIGHTS = {("shipped", s): None for s in SHIPPED_SCALES}
WEIGHTS |= {("random 9-1-5", s): SRCNNWeights.random(scale=s, seed=s) for s in (1, 2, 3, 4)}
WEIGHTS |= {("random 5-1-3", s): SRCNNWeights.random(SMALL, scale=s, seed=10 + s) for s in (1, 3)}
UPSCALERS = {
    (key, backend): Upscaler(key[1], weights, backend=backend)
    for key, weights in WEIGHTS.items()
    for backend in ("cpu", "reference")
}


@st.composite
def images(draw) -> np.ndarray:
    """Any valid image: 1-13 pixels a side, every layout and dtype, random or flat content,
    and not always a plain C-contiguous native array (views, reversed, Fortran, big-endian)."""
    height = draw(st.integers(1, 13))
    width = draw(st.integers(1, 13))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint16, np.float32])))
    shape = (height, width) if channels is None else (height, width, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    top = 1.0 if dtype != np.float32 else 1.25
    low = 0.0 if dtype != np.float32 else -0.25  # floats outside [0, 1] pass through too
    content = draw(st.sampled_from(["random", "low", "top"]))
    if content == "random":
        raw = low + (top - low) * rng.random(shape)
    else:
        raw = np.full(shape, low if content == "low" else top)
    image = (
        raw.astype(np.float32)
        if dtype == np.float32
        else np.rint(raw * np.iinfo(dtype).max).astype(dtype)
    )
    layout = draw(st.sampled_from(["contiguous", "reversed", "strided", "fortran", "swapped"]))
    if layout == "reversed":
        image = np.ascontiguousarray(image[::-1, ::-1])[::-1, ::-1]
    elif layout == "strided":
        padded = np.zeros((height, 2 * width, *shape[2:]), dtype)
        padded[:, ::2] = image
        image = padded[:, ::2]
    elif layout == "fortran":
        image = np.asfortranarray(image)
    elif layout == "swapped":
        image = image.astype(dtype.newbyteorder(">"))
    return image


def _max_diff(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), key=st.sampled_from(sorted(WEIGHTS)))
def test_cpu_matches_reference_for_any_image(image: np.ndarray, key: tuple[str, int]) -> None:
    scale = key[1]
    native = np.ascontiguousarray(image, image.dtype.newbyteorder("="))
    got = UPSCALERS[key, "cpu"](image)
    expected = UPSCALERS[key, "reference"](native)
    assert got.dtype == native.dtype and got.dtype.isnative
    assert got.shape == (image.shape[0] * scale, image.shape[1] * scale, *image.shape[2:])
    # The memory layout is not the image: the same values give the same result, bit for bit.
    np.testing.assert_array_equal(got, UPSCALERS[key, "cpu"](native))
    diff = _max_diff(got, expected)
    if image.dtype == np.float32:
        assert np.all(np.isfinite(got))
        assert diff <= ATOL, f"{key} {image.shape}: max |diff| {diff:.3g} > {ATOL}"
    else:
        assert diff <= 1, f"{key} {image.shape} {image.dtype}: max diff {diff:g} LSB"


@st.composite
def bad_arrays(draw) -> tuple[np.ndarray, str]:
    """An array with a dtype, a number of dimensions, a channel count or a size the API
    cannot take, or float samples that are not finite; and the message's start."""
    kind = draw(st.sampled_from(["dtype", "ndim", "channels", "empty", "non-finite"]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if kind == "dtype":
        dtype = draw(
            st.sampled_from(
                [
                    *(np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64),
                    *(np.float16, np.float64, np.complex64, np.bool_),
                ]
            )
        )
        return np.zeros((h, w), dtype), f"unsupported dtype {np.dtype(dtype)}"
    if kind == "ndim":
        shape = draw(st.sampled_from([(), (h,), (1, h, w, 3), (2, h, w, 1, 1)]))
        return np.zeros(shape, np.uint8), "unsupported shape"
    if kind == "channels":
        c = draw(st.sampled_from([0, 5, 6, 64]))
        return np.zeros((h, w, c), np.uint16), "unsupported shape"
    if kind == "empty":
        shape = draw(st.sampled_from([(0, w), (h, 0), (0, 0, 3), (0, w, 4)]))
        return np.zeros(shape, np.float32), "image has zero size"
    image = np.zeros((h, w, 3), np.float32)
    image[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1)), 1] = draw(
        st.sampled_from([np.nan, np.inf, -np.inf])
    )
    return image, "image contains NaN or infinity"


@settings(max_examples=60, deadline=None)
@given(case=bad_arrays(), backend=st.sampled_from(["cpu", "reference"]))
def test_bad_arrays_are_refused_with_one_line(case: tuple[np.ndarray, str], backend: str) -> None:
    image, start = case
    with pytest.raises(ImageError) as info:
        UPSCALERS[("random 9-1-5", 2), backend](image)
    message = str(info.value)
    assert message.startswith(start) and "\n" not in message, message
