"""The cpu backend's fused video-plane kernels (``cpu_pixels.upscale_planes``) against the
NumPy definitions in :mod:`srcnn_fast.imageops` (``video_luma``, ``video_luma_samples``,
``upscale_chroma``) run around the same network output: every sample equal. Planes come in
as strided views (a decoded frame's planes with line padding) and go out into strided views
(an encoder frame's planes), as the video path uses them; small frames take the
single-threaded path, large ones the parallel kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srcnn_fast import imageops
from srcnn_fast.errors import ImageError
from srcnn_fast.infer import Upscaler, _subsampled
from srcnn_fast.model import Architecture, SRCNNWeights


@pytest.fixture(scope="module")
def upscalers(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("weights")
    made = {}
    for scale in (2, 3, 4):
        path = folder / f"tiny_x{scale}.npz"
        SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=scale).save(path)
        made[scale] = Upscaler(weights=path, backend="cpu")
    return made


def padded_view(values: np.ndarray, pad: int = 13) -> np.ndarray:
    """``values`` as a view with a longer line than its width (as PyAV's planes are)."""
    return np.pad(values, ((0, 0), (0, pad)))[:, : values.shape[1]]


def numpy_planes(up: Upscaler, planes, bits: int, full_range: bool) -> list[np.ndarray]:
    """imageops' definitions, around the cpu backend's own network output."""
    height, width = planes[0].shape
    s = up.scale
    luma = up.backend.upscale_luma(imageops.video_luma(planes[0], bits, full_range))
    out = [imageops.video_luma_samples(luma, bits, full_range, planes[0].dtype)]
    for p in planes[1:]:
        shape = (
            _subsampled(height * s, height, p.shape[0]),
            _subsampled(width * s, width, p.shape[1]),
        )
        out.append(imageops.upscale_chroma(p, s, shape, bits))
    return out


CASES = [
    # bits, full range, (height, width), chroma subsampling (rows, columns); None: gray
    (8, False, (37, 51), (2, 2)),
    (8, True, (36, 50), (1, 2)),
    (10, False, (33, 20), (2, 2)),
    (10, True, (20, 33), (1, 1)),
    (12, False, (9, 14), (2, 2)),
    (16, True, (19, 23), (1, 1)),
    (8, False, (25, 31), None),
    (8, False, (180, 320), (2, 2)),  # parallel kernel at every scale
    (10, True, (90, 160), (2, 2)),
]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(("bits", "full_range", "size", "sub"), CASES)
def test_fused_planes_equal_the_numpy_definitions(upscalers, scale, bits, full_range, size, sub):
    up = upscalers[scale]
    rng = np.random.default_rng(bits + scale)
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    top = 2**bits - 1
    height, width = size
    planes = [rng.integers(0, top + 1, size).astype(dtype)]
    if sub is not None:
        chroma = (-(-height // sub[0]), -(-width // sub[1]))
        planes += [rng.integers(0, top + 1, chroma).astype(dtype) for _ in range(2)]
    views = [padded_view(p) for p in planes]
    expected = numpy_planes(up, planes, bits, full_range)
    fresh = up.upscale_planes(views, bits, full_range)
    targets = [padded_view(np.zeros_like(e), pad=7) for e in expected]
    written = up.upscale_planes(views, bits, full_range, out=targets)
    assert all(w is t for w, t in zip(written, targets, strict=True))
    for name, a, b, e in zip("YUV"[: len(expected)], fresh, written, expected, strict=True):
        diff = int(np.abs(a.astype(int) - e.astype(int)).max())
        print(f"x{scale} {bits}-bit full={full_range} {size} {name}: max |fused - numpy| = {diff}")
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(a, e)
        np.testing.assert_array_equal(b, e)


def test_fused_planes_match_the_reference_backend(upscalers, tmp_path):
    """End to end against the oracle: the networks differ by float32 summation order only,
    so a Y sample may land 1 step away where it sits on a rounding edge; chroma is equal."""
    up = upscalers[2]
    ref = Upscaler(weights=up.weights, backend="reference")
    rng = np.random.default_rng(5)
    planes = [rng.integers(16, 236, (45, 60), dtype=np.uint8)]
    planes += [rng.integers(16, 241, (23, 30), dtype=np.uint8) for _ in range(2)]
    fast, slow = up.upscale_planes(planes), ref.upscale_planes(planes)
    diff = np.abs(fast[0].astype(int) - slow[0].astype(int))
    print(f"cpu vs reference Y: max |diff| = {diff.max()}, share {(diff > 0).mean():.2e}")
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    np.testing.assert_array_equal(fast[1], slow[1])
    np.testing.assert_array_equal(fast[2], slow[2])


def test_out_must_have_the_output_shapes(upscalers):
    up = upscalers[2]
    y = np.zeros((4, 6), np.uint8)
    with pytest.raises(ImageError, match="out= must be 1 uint8"):
        up.upscale_planes([y], out=[np.zeros((8, 11), np.uint8)])
    with pytest.raises(ImageError, match="out= must be"):
        up.upscale_planes([y], out=[np.zeros((8, 12), np.uint16)])
    ref = Upscaler(weights=up.weights, backend="reference")
    target = np.zeros((8, 12), np.uint8)
    assert ref.upscale_planes([y + 20], out=[target])[0] is target
    np.testing.assert_array_equal(target, ref.upscale_planes([y + 20])[0])
