"""The NumPy reference network equals TensorFlow running the Keras model with the same weights
and explicit edge-replicate padding. This is what "validated against TensorFlow" means.

Tolerance: float32 max-abs 1e-5. The reference sums the products in float64 and rounds to
float32 once per layer; TensorFlow sums them in float32 (oneDNN convolution, in its own order).
With Glorot-scaled weights and inputs in [0, 1] the outputs are O(1) and TensorFlow's accumulated
rounding is a few 1e-7, so 1e-5 leaves a margin of ~10x while still catching any real indexing
or padding mistake (those move outputs by >= 1e-3).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close

from srcnn_fast import imageops
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.model import Architecture, SRCNNWeights

pytest.importorskip("tensorflow")

ATOL = 1e-5
CONFIGS = {
    "9-1-5": Architecture(),
    "9-5-5": Architecture(f2=5),
    "3-3-3 (8, 4)": Architecture(f1=3, n1=8, f2=3, n2=4, f3=3),
}


def _tensorflow(weights: SRCNNWeights, plane: np.ndarray) -> np.ndarray:
    from srcnn_fast.train import build_keras_model

    model = build_keras_model(padding="replicate", weights=weights)
    return np.asarray(model(plane[None, :, :, None], training=False))[0, :, :, 0]


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("shape", [(37, 53), (1, 1), (2, 9), (16, 3)])
def test_random_weights_random_planes(config: str, shape: tuple[int, int]) -> None:
    weights = SRCNNWeights.random(CONFIGS[config], seed=len(config) + shape[0])
    plane = np.random.default_rng(shape[1]).random(shape, dtype=np.float32)
    ours = ReferenceBackend(weights).network(plane)
    assert_close(ours, _tensorflow(weights, plane), ATOL, f"{config} on {shape}")


def test_strips_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny strip budget forces many strips (one row each): same numbers as one strip.
    from srcnn_fast.backends import reference

    weights = SRCNNWeights.random(CONFIGS["9-5-5"], seed=3)
    plane = np.random.default_rng(3).random((29, 41), dtype=np.float32)
    whole = ReferenceBackend(weights).network(plane)
    monkeypatch.setattr(reference, "STRIP_BUDGET_BYTES", 1)
    assert_close(ReferenceBackend(weights).network(plane), whole, 1e-6, "1-row strips")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_on_a_real_image(scale: int, sample_image: np.ndarray) -> None:
    from srcnn_fast.infer import shipped_weights_path

    weights = SRCNNWeights.load(shipped_weights_path(scale))
    luma = imageops.rgb_to_luma(imageops.to_float(sample_image))
    plane = imageops.bicubic_upscale(luma, scale)
    ours = ReferenceBackend(weights).network(plane)
    assert_close(ours, _tensorflow(weights, plane), ATOL, f"shipped x{scale} on butterfly")


@pytest.mark.parametrize("config", ["9-1-5", "9-5-5"])
def test_random_weights_on_real_images(config: str, data_dir) -> None:
    from srcnn_fast.imagefile import read_image

    weights = SRCNNWeights.random(CONFIGS[config], seed=11)
    for path in sorted((data_dir / "Set14" / "x3").glob("*_LR.png"))[:3]:
        image = imageops.to_float(read_image(path))
        luma = image if image.ndim == 2 else imageops.rgb_to_luma(image)
        plane = imageops.bicubic_upscale(luma, 3)
        ours = ReferenceBackend(weights).network(plane)
        assert_close(ours, _tensorflow(weights, plane), ATOL, f"{config} on {path.name}")
