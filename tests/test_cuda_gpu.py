"""The CUDA backend on a real GPU (marked ``cuda``; skipped with the reason where there is none).

Same tolerances as the harness tests (tests/test_cuda_kernels.py): float32 max-abs 1e-4 on the
network output, 8-bit pixels equal but for rare 1-LSB ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

from srcnn_fast.backends.cuda import cuda_problem
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import SRCNNWeights

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(cuda_problem() is not None, reason=f"no GPU: {cuda_problem()}"),
]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_gpu_matches_reference(scale: int) -> None:
    from srcnn_fast.backends.cuda import CudaBackend

    weights = SRCNNWeights.random(scale=scale, seed=scale)
    gpu, ref = CudaBackend(weights), ReferenceBackend(weights)
    for shape in [(1, 1), (7, 13), (67, 129), (270, 480)]:
        luma = np.random.default_rng(scale).random(shape, dtype=np.float32)
        assert_close(gpu.upscale_luma(luma), ref.upscale_luma(luma), 1e-4, f"x{scale} {shape}")


def test_gpu_matches_tensorflow() -> None:
    pytest.importorskip("tensorflow")
    from srcnn_fast import imageops
    from srcnn_fast.backends.cuda import CudaBackend
    from srcnn_fast.train import build_keras_model

    weights = SRCNNWeights.random(scale=3, seed=9)
    luma = np.random.default_rng(9).random((41, 57), dtype=np.float32)
    model = build_keras_model(padding="replicate", weights=weights)
    plane = imageops.bicubic_upscale(luma, 3)
    expected = np.asarray(model(plane[None, :, :, None]))[0, :, :, 0]
    assert_close(CudaBackend(weights).upscale_luma(luma), expected, 1e-4, "vs TensorFlow")


def test_cupy_in_cupy_out_and_batches(sample_image: np.ndarray) -> None:
    import cupy

    from srcnn_fast.backends.cuda import CudaBackend

    backend = CudaBackend(SRCNNWeights.load(Upscaler(2).weights.source))
    on_gpu = cupy.asarray(sample_image)
    out = backend.upscale_pixels(on_gpu)
    assert isinstance(out, cupy.ndarray)
    expected = Upscaler(2, backend="reference")(sample_image)
    diff = np.abs(out.get().astype(int) - expected)
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3
    batch = backend.upscale_pixels(cupy.stack([on_gpu, on_gpu[::-1].copy()]))
    assert batch.shape == (2, *expected.shape)
    stream = cupy.cuda.Stream(non_blocking=True)
    streamed = CudaBackend(backend.weights, stream=stream).upscale_pixels(on_gpu)
    stream.synchronize()
    cupy.testing.assert_array_equal(streamed, out)


def test_gpu_tiles_are_bit_identical_and_sized_by_free_memory(sample_image: np.ndarray) -> None:
    up = Upscaler(2, backend="cuda")
    assert up.backend.free_memory() > 0
    whole = up(sample_image, tile=0)
    for tile in (16, 77):
        np.testing.assert_array_equal(up(sample_image, tile=tile), whole)
