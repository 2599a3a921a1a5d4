"""The cpu backend's fused pixel kernels (srcnn_fast/backends/cpu_pixels.py) against imageops.

Tolerances. With the same luma function on both sides, the kernels compute imageops' values in
its order (bicubic taps summed left to right in float32, no fused multiply-add; the 3x3 colour
products with FMAs in channel order, as OpenBLAS runs NumPy's float32 matrix product): on this
machine every sample is equal. Another BLAS may sum the three colour products in another order,
a few float32 ULPs (~1e-7) apart, so the bound stated is what that can do: float32 within 1e-6;
8-bit equal or 1 LSB apart on < 0.1% of samples (a value within 1e-7 of a .5 tie); 16-bit,
where 1e-7 is ~0.007 LSB, 1 LSB apart on < 1% of samples. Against the reference *backend* the
network itself differs by float32 rounding (test_cpu_backend.py: within 1e-4, ~7e-7 seen), as
for the CUDA pack (tests/test_cuda_kernels.py): 8-bit 1 LSB on < 0.1%, 16-bit on < 5%, float32
within 1e-4 times the largest colour gain (1.6: YCbCr -> RGB's largest row sum of magnitudes).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

from srcnn_fast import imageops
from srcnn_fast.backends.cpu_pixels import upscale_pixels
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.errors import ImageError
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import Architecture, SRCNNWeights

SHAPES = [(1, 1), (7, 5), (13, 18)]
CHANNELS = [0, 1, 2, 3, 4]  # 0: an (H, W) plane
DTYPES = [np.uint8, np.uint16, np.float32]
#: The network's own difference between backends (test_cpu_backend.ATOL), through the
#: largest gain of a luma change on an RGB sample.
NETWORK_ATOL = 1e-4 * float(np.abs(imageops.YCBCR_TO_RGB).sum(axis=1).max())


def tiny_weights(scale: int) -> SRCNNWeights:
    return SRCNNWeights.random(Architecture(f1=3, n1=8, n2=8, f3=3), scale=scale, seed=scale)


def make_image(shape: tuple[int, int], channels: int, dtype, seed: int) -> np.ndarray:
    full_shape = shape if channels == 0 else (*shape, channels)
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random(full_shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, full_shape).astype(dtype)


def assert_pixels_match(got: np.ndarray, expected: np.ndarray, what: str, network: bool) -> None:
    """The module docstring's bounds; ``network``: the two sides ran different networks."""
    assert got.dtype == expected.dtype and got.shape == expected.shape, (
        f"{what}: {got.dtype}{got.shape} != {expected.dtype}{expected.shape}"
    )
    if got.dtype == np.float32:
        assert_close(got, expected, NETWORK_ATOL if network else 1e-6, what)
        return
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    share = 1e-3 if got.dtype == np.uint8 else (5e-2 if network else 1e-2)
    worst, differ = int(diff.max()), float(np.mean(diff > 0))
    assert worst <= 1 and differ < share, (
        f"{what}: max |diff| {worst} LSB, {differ:.3%} of samples differ (bound 1, {share:.1%})"
    )


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_kernels_equal_upscale_image_with_the_same_luma(scale: int, dtype) -> None:
    """Every layout, odd sizes and 1x1, through the same (reference) network on both sides."""
    luma = ReferenceBackend(tiny_weights(scale)).upscale_luma
    for channels in CHANNELS:
        for i, shape in enumerate(SHAPES):
            image = make_image(shape, channels, dtype, seed=10 * channels + i)
            got = upscale_pixels(image, scale, luma)
            expected = imageops.upscale_image(image, scale, luma)
            what = f"x{scale} {np.dtype(dtype)} {image.shape}"
            assert_pixels_match(got, expected, what, network=False)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_cpu_upscaler_matches_the_reference_upscaler(scale: int, monkeypatch) -> None:
    """``Upscaler(backend="cpu")`` takes the fused path (imageops' pipeline is never called)
    and matches the reference backend's whole pipeline."""
    weights = tiny_weights(scale)
    cpu = Upscaler(weights=weights, backend="cpu")
    ref = Upscaler(weights=weights, backend="reference")
    for dtype in DTYPES:
        images = [make_image((11, 14), c, dtype, seed=c) for c in CHANNELS]
        expected = [ref(image) for image in images]
        with monkeypatch.context() as patch:
            patch.setattr(imageops, "upscale_image", _not_called)
            got = [cpu(image) for image in images]
        for image, g, e in zip(images, got, expected, strict=True):
            assert_pixels_match(g, e, f"x{scale} {np.dtype(dtype)} {image.shape}", network=True)


def _not_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("the cpu backend went through imageops.upscale_image")


def test_shipped_weights_on_the_sample(sample_image: np.ndarray) -> None:
    cpu = Upscaler(2, backend="cpu")(sample_image)
    ref = Upscaler(2, backend="reference")(sample_image)
    assert_pixels_match(cpu, ref, f"butterfly x2 {sample_image.shape}", network=True)


@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_output_is_bit_identical(scale: int) -> None:
    """Tiles (each a full pixel-kernel call on a view with a halo) give the untiled result."""
    up = Upscaler(weights=tiny_weights(scale), backend="cpu")
    for channels in (0, 2, 3, 4):
        for dtype in (np.uint8, np.float32):
            image = make_image((13, 17), channels, dtype, seed=channels)
            whole = up(image, tile=0)
            for tile in (3, 8):  # 1-pixel tiles: tests/test_tiling.py
                tiled = up(image, tile=tile)
                differ = tiled != whole
                assert not differ.any(), (
                    f"x{scale} {image.shape} {np.dtype(dtype)} tile {tile}: {int(differ.sum())} "
                    f"values differ"
                )


def test_any_memory_layout() -> None:
    """Views with negative strides, Fortran order and a channel slice: as their copies."""
    luma = ReferenceBackend(tiny_weights(2)).upscale_luma
    image = make_image((12, 15), 4, np.uint8, seed=3)
    for view in (image[::-1, ::2], np.asfortranarray(image), image[..., 1:], image[..., 0]):
        expected = upscale_pixels(np.ascontiguousarray(view), 2, luma)
        np.testing.assert_array_equal(upscale_pixels(view, 2, luma), expected)


def test_alpha_through_the_network_still_goes_through_imageops() -> None:
    weights = tiny_weights(2)
    image = make_image((9, 10), 4, np.uint8, seed=4)
    cpu = Upscaler(weights=weights, backend="cpu", alpha="network")(image)
    ref = Upscaler(weights=weights, backend="reference", alpha="network")(image)
    assert_pixels_match(cpu, ref, "alpha=network", network=True)


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.float64), np.zeros((4, 4, 5), np.uint8), np.zeros(4, np.uint8)],
    ids=["float64", "5 channels", "1-D"],
)
def test_refuses_what_imageops_refuses(image: np.ndarray) -> None:
    with pytest.raises(ImageError):
        upscale_pixels(image, 2, lambda luma: luma)


@pytest.mark.parametrize("scale", [2, 3])
def test_parallel_kernels_equal_the_serial_ones(scale: int, monkeypatch) -> None:
    """Small images run on the calling thread; the banded parallel kernels give the same
    bits, down to images with fewer rows than bands."""
    from srcnn_fast.backends import cpu_pixels

    luma = ReferenceBackend(tiny_weights(scale)).upscale_luma
    images = [
        make_image(shape, c, dtype, seed=c)
        for c in CHANNELS
        for shape in SHAPES
        for dtype in DTYPES
    ]
    serial = [upscale_pixels(image, scale, luma) for image in images]
    monkeypatch.setattr(cpu_pixels, "PARALLEL_MIN_PIXELS", 0)
    for image, expected in zip(images, serial, strict=True):
        got = upscale_pixels(image, scale, luma)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected, f"x{scale} {image.dtype} {image.shape}")
