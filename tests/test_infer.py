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


def test_float_gray_returns_the_network_output_unclipped(small: Upscaler) -> None:
    gray = np.random.default_rng(0).random((7, 9), dtype=np.float32)
    out = small(gray)
    network = ReferenceBackend(small.weights).upscale_luma(imageops.gray_to_luma(gray))
    assert out.dtype == np.float32 and out.shape == (21, 27)
    assert_close(out, imageops.luma_to_gray(network), 0.0, "float gray")


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_flat_planes_keep_black_and_white(scale: int, dtype) -> None:
    """Black stays black and white white in every plane through the network (gray, gray +
    alpha with alpha="network", RGB), shipped weights: a gray plane goes in as the studio-range
    Y the network was trained on. Integer outputs exactly; float32 within 4e-3, the shipped
    networks' own error on a flat plane (measured at most 2.9e-3, x4 white), which does not
    depend on the plane. Gray and the equal-channel RGB image agree to float32 rounding (1e-5)."""
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    tolerance = 4e-3 if dtype == np.float32 else 0
    gray_up = Upscaler(scale, backend="reference")
    alpha_up = Upscaler(scale, backend="reference", alpha="network")
    for value in (0, top):
        gray = np.full((12, 13), value, dtype)
        out = gray_up(gray)
        rgb = gray_up(np.repeat(gray[..., None], 3, axis=-1))
        masked = alpha_up(np.stack([gray, gray], axis=-1))
        for name, got in (("gray", out), ("rgb", rgb), ("gray+alpha", masked)):
            error = np.abs(got.astype(np.float64) - float(value)).max()
            assert error <= tolerance, (
                f"{name} x{scale} {np.dtype(dtype)} {value}: max diff {error}"
            )
        assert_close(out, rgb[..., 1], 1e-5 * top, f"gray vs equal-channel RGB at {value}")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(
    "shape",
    [
        *((6, 5), (6, 5, 1), (6, 5, 2), (6, 5, 3), (6, 5, 4)),
        *((1, 1), (1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 4), (1, 6, 3), (6, 1)),  # 1 pixel
    ],
)
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


DTYPES_HINT = "(use uint8, uint16 or float32)"
SHAPES_HINT = "(use HxW, HxWx1, HxWx2, HxWx3 or HxWx4)"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[1, 2], [3, 4]], "expected a numpy array, got list"),
        (np.zeros((4, 4), np.int32), f"unsupported dtype int32 {DTYPES_HINT}"),
        (np.zeros((4, 4), np.float64), f"unsupported dtype float64 {DTYPES_HINT}"),
        (np.zeros((4, 4), bool), f"unsupported dtype bool {DTYPES_HINT}"),
        (np.zeros((4, 4), np.float16), f"unsupported dtype float16 {DTYPES_HINT}"),
        (np.zeros((4,), np.uint8), f"unsupported shape (4,) {SHAPES_HINT}"),
        (np.zeros((1, 4, 4, 3), np.uint8), f"unsupported shape (1, 4, 4, 3) {SHAPES_HINT}"),
        (np.zeros((4, 4, 5), np.uint8), f"unsupported shape (4, 4, 5) {SHAPES_HINT}"),
        (np.zeros((4, 4, 0), np.uint8), f"unsupported shape (4, 4, 0) {SHAPES_HINT}"),
        (np.zeros((), np.uint8), f"unsupported shape () {SHAPES_HINT}"),
        (np.zeros((0, 4), np.uint8), "image has zero size (0, 4)"),
        (np.zeros((4, 0, 3), np.uint8), "image has zero size (4, 0, 3)"),
        (np.array([[0.0, np.nan]], np.float32), "image contains NaN or infinity"),
        (np.array([[0.0, np.inf]], np.float32), "image contains NaN or infinity"),
        (np.array([[-np.inf, 0.5]], np.float32), "image contains NaN or infinity"),
    ],
    ids=lambda v: str(getattr(v, "shape", v))[:40],
)
def test_bad_arrays_raise_one_line_errors(small: Upscaler, image, message: str) -> None:
    with pytest.raises(ImageError) as info:
        small(image)
    assert str(info.value) == message
    with pytest.raises(ImageError) as info:  # the band writer's entry checks the same
        next(small.upscale_bands(image))
    assert str(info.value) == message


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_big_endian_samples_are_the_same_numbers(small: Upscaler, dtype) -> None:
    """Big-endian arrays (FITS files, np.frombuffer of PNG rows) hold valid samples: the
    result is the native array's, in the native dtype."""
    native = np.random.default_rng(4).random((5, 6, 3)).astype(np.float32)
    if dtype == np.uint16:
        native = np.rint(native * 65535).astype(np.uint16)
    swapped = native.astype(native.dtype.newbyteorder(">"))
    out = small(swapped)
    assert out.dtype == native.dtype
    np.testing.assert_array_equal(out, small(native))


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
    with pytest.raises(BackendError, match="unknown precision 'int4'"):
        Upscaler(2, precision="int4")


# --- one Upscaler, many images: threads and buffer reuse -------------------------------------


def _mixed_images() -> list[np.ndarray]:
    """Different sizes, layouts (gray, gray + alpha, RGB, RGBA) and dtypes."""
    rng = np.random.default_rng(11)
    images = []
    for i, (shape, dtype) in enumerate(
        [
            ((9, 12), np.uint8),
            ((17, 8, 3), np.uint8),
            ((5, 5, 4), np.uint16),
            ((1, 1, 3), np.float32),
            ((13, 21, 2), np.uint8),
            ((11, 7), np.float32),
            ((8, 16, 4), np.uint8),
            ((20, 6, 3), np.uint16),
            ((7, 9, 1), np.uint16),
        ]
    ):
        raw = rng.random(shape, dtype=np.float32)
        images.append(raw if dtype == np.float32 else (raw * np.iinfo(dtype).max).astype(dtype))
        assert images[i].shape == shape
    return images


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_one_upscaler_called_from_many_threads(backend: str, tiny_weights) -> None:
    """The API, not just a backend: one Upscaler shared by 6 threads, each call a different
    size, layout or dtype (some tiled), every result exactly the single-threaded one."""
    from concurrent.futures import ThreadPoolExecutor

    up = Upscaler(weights=tiny_weights, backend=backend)
    images = _mixed_images()
    calls = [(i, tile) for _ in range(3) for i in range(len(images)) for tile in (None, 4)]
    np.random.default_rng(0).shuffle(calls)
    expected = {i: up(image) for i, image in enumerate(images)}
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda call: up(images[call[0]], tile=call[1]), calls))
    for (i, tile), got in zip(calls, results, strict=True):
        want = expected[i]
        assert got.dtype == want.dtype and got.shape == want.shape, (i, tile)
        differ = got != want
        assert not differ.any(), (
            f"image {i} {images[i].shape} {images[i].dtype} tile {tile}: {int(differ.sum())} "
            f"values differ, max |diff| {np.abs(got.astype(float) - want).max():.3g}"
        )


def test_one_upscaler_reuses_its_plans_for_alternating_sizes(tiny_weights) -> None:
    """Sizes that alternate (thumbnails and full frames, say) are each planned once: on the
    second round every cached plan (geometry, folded weights, scratch buffers) is the same
    object, none rebuilt."""
    up = Upscaler(weights=tiny_weights, backend="cpu")
    images = [im for im in _mixed_images() if im.shape[:2] in ((9, 12), (17, 8), (13, 21))]
    assert len(images) == 3
    firsts = [up(image) for image in images]
    plans = dict(up.backend._plans)
    assert sorted(plans) == [(9, 12), (13, 21), (17, 8)]
    for image, first in zip(images, firsts, strict=True):
        np.testing.assert_array_equal(up(image), first)
    assert up.backend._plans.keys() == plans.keys()
    assert all(up.backend._plans[k] is plan for k, plan in plans.items()), "plans rebuilt"


def test_the_library_imports_no_video_and_no_file_code() -> None:
    """Issue 29 item 7: infer is below the video and file code (they import it, never the
    reverse); the weights-choice rules it needs are in srcnn_fast.weights_choice."""
    banned = [
        "srcnn_fast.video",
        "srcnn_fast.video_quantiser",
        "srcnn_fast.segments",
        "srcnn_fast.imagefile",
        "srcnn_fast.jpeg",
        "srcnn_fast.batch",
        "av",
        "PIL",
    ]
    code = (
        f"import sys, srcnn_fast.infer; print(','.join(m for m in {banned!r} if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "", f"srcnn_fast.infer imported {run.stdout.strip()}"
