"""The inference API: layouts, dtypes, weights handling, errors, and no TensorFlow import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, assert_close

from srcnn_fast import imageops
from srcnn_fast.backends import BACKEND_ENV, resolve_backend_name
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.errors import BackendError, ImageError, WeightsError
from srcnn_fast.infer import Upscaler, shipped_weights_path, upscale
from srcnn_fast.model import Architecture, SRCNNWeights


@pytest.fixture(scope="module")
def small() -> Upscaler:
    arch = Architecture(f1=5, n1=8, f2=1, n2=4, f3=3)
    return Upscaler(weights=SRCNNWeights.random(arch, scale=3, seed=1), backend="reference")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_load(scale: int) -> None:
    up = Upscaler(scale)
    assert up.scale == scale and up.weights.arch == Architecture()
    assert up.weights.provenance.get("epochs"), "shipped weights record their training"
    assert shipped_weights_path(scale).name == f"srcnn_x{scale}.npz"


def test_default_scale_is_two() -> None:
    assert Upscaler().scale == 2


def test_float_luma_returns_the_network_output_unclipped(small: Upscaler) -> None:
    luma = np.random.default_rng(0).random((7, 9), dtype=np.float32)
    out = small(luma)
    expected = ReferenceBackend(small.weights).upscale_luma(luma)
    assert out.dtype == np.float32 and out.shape == (21, 27)
    assert_close(out, expected, 0.0, "float luma")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 5, 2), (6, 5, 3), (6, 5, 4), (1, 1, 3)])
def test_layouts_and_dtypes_round_trip(small: Upscaler, dtype, shape) -> None:
    rng = np.random.default_rng(1)
    if dtype == np.float32:
        image = rng.random(shape, dtype=np.float32)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape).astype(dtype)
    out = small(image)
    assert out.dtype == image.dtype
    assert out.shape == (shape[0] * 3, shape[1] * 3, *shape[2:])


def test_rgb_output_uses_network_luma_and_bicubic_chroma(small: Upscaler) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    out = small(rgb)
    ycc_in = imageops.rgb_to_ycbcr(imageops.to_float(rgb))
    luma = ReferenceBackend(small.weights).upscale_luma(np.ascontiguousarray(ycc_in[..., 0]))
    chroma = imageops.bicubic_upscale(ycc_in[..., 1:], 3)
    rgb_f = imageops.ycbcr_to_rgb(np.concatenate([luma[..., None], chroma], axis=-1))
    expected = imageops.from_float(rgb_f, np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_alpha_is_upscaled_bicubically(small: Upscaler) -> None:
    rgba = np.random.default_rng(3).integers(0, 256, (5, 7, 4)).astype(np.uint8)
    out = small(rgba)
    alpha = imageops.from_float(
        imageops.bicubic_upscale(imageops.to_float(rgba[..., 3]), 3), np.uint8
    )
    np.testing.assert_array_equal(out[..., 3], alpha)


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ([[1, 2], [3, 4]], "expected a numpy array"),
        (np.zeros((4, 4), np.int32), "unsupported dtype int32"),
        (np.zeros((4, 4), np.float64), "unsupported dtype float64"),
        (np.zeros((4, 4, 5), np.uint8), "unsupported shape"),
        (np.zeros((4,), np.uint8), "unsupported shape"),
        (np.zeros((0, 4), np.uint8), "zero size"),
        (np.array([[0.0, np.nan]], np.float32), "NaN or infinity"),
        (np.array([[0.0, np.inf]], np.float32), "NaN or infinity"),
    ],
)
def test_bad_arrays_raise_one_line_errors(small: Upscaler, image, problem: str) -> None:
    with pytest.raises(ImageError, match=problem) as info:
        small(image)
    assert "\n" not in str(info.value)


def test_weights_errors(tmp_path) -> None:
    with pytest.raises(WeightsError, match="no shipped weights for scale 5"):
        Upscaler(5)
    path = tmp_path / "w3.npz"
    SRCNNWeights.random(scale=3).save(path)
    assert Upscaler(weights=path).scale == 3
    with pytest.raises(WeightsError, match=r"w3\.npz: weights are for scale 3, not 2"):
        Upscaler(2, weights=path)
    with pytest.raises(WeightsError, match="scale must be a positive integer"):
        Upscaler(0)


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backend_name("auto") == "cpu"
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        resolve_backend_name("nope")
    monkeypatch.setenv(BACKEND_ENV, "nope")
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        resolve_backend_name("auto")
    monkeypatch.setenv(BACKEND_ENV, "reference")
    assert resolve_backend_name("auto") == "reference"


def test_upscale_function_caches_the_upscaler(tmp_path) -> None:
    from srcnn_fast import infer

    path = tmp_path / "w.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(path)
    image = np.zeros((3, 3), np.uint8)
    assert upscale(image, weights=path).shape == (6, 6)
    count = len(infer._cache)
    upscale(image, weights=path)
    assert len(infer._cache) == count


def test_import_never_loads_tensorflow() -> None:
    code = (
        "import sys, numpy as np, srcnn_fast.infer as i;"
        "i.Upscaler(2)(np.zeros((4, 4, 3), np.uint8));"
        "bad = [m for m in ('tensorflow', 'keras', 'torch', 'cv2') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_precision_modes_are_checked() -> None:
    with pytest.raises(BackendError, match="needs the cuda backend"):
        Upscaler(2, backend="cpu", precision="fp16")
    with pytest.raises(BackendError, match="unknown precision 'int8'"):
        Upscaler(2, precision="int8")
