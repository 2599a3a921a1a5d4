"""The fused Numba backend against the NumPy reference.

Tolerance: float32 max-abs 1e-4 on the network output (the issue's bound). The fused kernel
folds bicubic into conv1 (the weights are products summed in float64, then rounded to float32)
and sums in another order with FMAs, so it differs from the reference by float32 rounding only:
about 1e-7 on O(1) outputs (printed on failure). 8-bit results must be equal, or 1 LSB apart
(a value within rounding of a .5 boundary) on fewer than 0.1% of pixels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_close

from srcnn_fast.backends.cpu import CpuBackend
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import Architecture, SRCNNWeights
from srcnn_fast.polyphase import axis_geometry

ATOL = 1e-4
SHAPES = [(1, 1), (1, 7), (5, 1), (2, 3), (9, 11), (17, 40), (33, 70)]


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_matches_reference_every_scale_and_size(scale: int) -> None:
    weights = SRCNNWeights.random(scale=scale, seed=scale)
    cpu, ref = CpuBackend(weights), ReferenceBackend(weights)
    rng = np.random.default_rng(scale)
    for shape in SHAPES:
        luma = rng.random(shape, dtype=np.float32)
        assert_close(cpu.upscale_luma(luma), ref.upscale_luma(luma), ATOL, f"x{scale} {shape}")


@pytest.mark.parametrize(
    "arch",
    [
        Architecture(f1=3, n1=8, f2=1, n2=4, f3=3),
        Architecture(f1=5, n1=20, f2=1, n2=12, f3=1),
        Architecture(f1=11, n1=33, f2=1, n2=17, f3=7),
        Architecture(f2=5),  # 9-5-5: conv2 is not 1x1, served by the general path
    ],
    ids=lambda a: a.name,
)
def test_other_architectures(arch: Architecture) -> None:
    weights = SRCNNWeights.random(arch, scale=3, seed=7)
    luma = np.random.default_rng(7).random((13, 29), dtype=np.float32)
    got = CpuBackend(weights).upscale_luma(luma)
    assert_close(got, ReferenceBackend(weights).upscale_luma(luma), ATOL, arch.name)


def test_threads_and_buffer_reuse() -> None:
    weights = SRCNNWeights.random(scale=2, seed=3)
    ref = ReferenceBackend(weights)
    rng = np.random.default_rng(3)
    one, many = CpuBackend(weights, threads=1), CpuBackend(weights, threads=5)
    for shape in [(20, 30), (7, 8), (20, 30)]:  # sizes change between calls; plans are reused
        luma = rng.random(shape, dtype=np.float32)
        expected = ref.upscale_luma(luma)
        assert_close(one.upscale_luma(luma), expected, ATOL, f"1 band {shape}")
        assert_close(many.upscale_luma(luma), expected, ATOL, f"5 bands {shape}")
    assert len(many._plans) == 2


def test_polyphase_interior_classes_depend_only_on_the_phase() -> None:
    for scale in (2, 3, 4):
        geo = axis_geometry(40, scale, 9)
        t = geo.weights.shape[2]
        assert t == {2: 8, 3: 7, 4: 6}[scale]  # LR window of the folded conv1
        assert np.all(geo.classes[geo.interior] == np.flatnonzero(geo.interior) % scale)
        assert np.allclose(geo.weights.sum(axis=2), 1.0)  # bicubic weights of every row


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_tap_spans_skip_only_zero_weights(scale: int) -> None:
    """The kernel reads only window taps inside each class's span: everything outside must
    weigh exactly zero, and the span's ends must not (else a tap is read for nothing)."""
    geo = axis_geometry(40, scale, 9)
    for cls, (first, stop) in enumerate(geo.spans):
        weights = geo.weights[cls]
        assert not weights[:, :first].any() and not weights[:, stop:].any(), (cls, first, stop)
        assert weights[:, first].any() and weights[:, stop - 1].any(), (cls, first, stop)
    if scale == 3:  # phases 0 and 2 sample 1/3 pixel off the LR grid: 6 of the 7 taps
        assert geo.spans[:3, 1] - geo.spans[:3, 0] == pytest.approx([6, 7, 6])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_on_real_images_8_bit(scale: int, sample_image: np.ndarray) -> None:
    cpu = Upscaler(scale, backend="cpu")
    ref = Upscaler(scale, backend="reference")
    a, b = cpu(sample_image).astype(int), ref(sample_image).astype(int)
    diff = np.abs(a - b)
    assert diff.max() <= 1, f"x{scale}: max diff {diff.max()} LSB"
    share = float(np.mean(diff > 0))
    assert share < 1e-3, f"x{scale}: {share:.4%} of 8-bit samples differ by 1 LSB"
    luma = sample_image[..., 1].astype(np.float32) / 255
    assert_close(cpu(luma), ref(luma), ATOL, f"shipped x{scale}, float luma")


@pytest.mark.parametrize(("width", "block"), [(8, "2x4"), (16, "2x8")])
def test_each_vector_width_and_register_block_in_a_subprocess(tmp_path, width, block) -> None:
    # The vector width follows the CPU (16 with AVX-512, else 8) and the register block the
    # width; force each width so both code paths are checked on any machine (LLVM splits a
    # 16-lane vector into two where there is no AVX-512). Its own cache folder keeps the
    # widths apart.
    code = (
        "import numpy as np;"
        "from srcnn_fast.backends import simd;"
        "from srcnn_fast.backends.cpu import CpuBackend;"
        "from srcnn_fast.backends.reference import ReferenceBackend;"
        "from srcnn_fast.model import SRCNNWeights;"
        "w = SRCNNWeights.random(scale=3, seed=1);"
        "x = np.random.default_rng(1).random((19, 37), dtype=np.float32);"
        "d = np.abs(CpuBackend(w).upscale_luma(x) - ReferenceBackend(w).upscale_luma(x)).max();"
        "from srcnn_fast.backends import cpu;"
        "print(simd.W, f'{cpu.VECTORS}x{cpu.CHANNELS}', d); assert d <= 1e-4, d"
    )
    env = dict(os.environ, SRCNN_FAST_SIMD_WIDTH=str(width), NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[:2] == [str(width), block], run.stdout


def test_first_run_says_it_is_compiling_then_uses_the_cache(tmp_path) -> None:
    code = (
        "import numpy as np, srcnn_fast.infer as i;"
        "i.Upscaler(2, backend='cpu')(np.zeros((9, 9, 3), np.uint8))"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    assert "compiling the CPU kernels" in runs[0].stderr and str(tmp_path) in runs[0].stderr
    assert "compiling" not in runs[1].stderr, runs[1].stderr
    assert list(tmp_path.rglob("*_forward*.nbi")), "kernels cached in the per-user folder"


def test_concurrent_calls_from_threads() -> None:
    # Numba's workqueue layer aborts on concurrent parallel calls, and one backend's scratch
    # buffers are shared: calls from many threads must still give each its own right answer.
    from concurrent.futures import ThreadPoolExecutor

    weights = SRCNNWeights.random(scale=2, seed=8)
    backend, ref = CpuBackend(weights), ReferenceBackend(weights)
    rng = np.random.default_rng(8)
    planes = [rng.random((9 + i % 3, 12 + i % 5), dtype=np.float32) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(backend.upscale_luma, planes))
    for plane, got in zip(planes, results, strict=True):
        assert_close(got, ref.upscale_luma(plane), ATOL, f"threaded {plane.shape}")


def test_plan_cache_keeps_the_recently_used_sizes_within_its_bounds() -> None:
    from srcnn_fast.backends.plans import PlanCache

    cache = PlanCache(max_entries=3, max_bytes=10_000)
    built: list[int] = []

    def plan(n: int):
        def build():
            built.append(n)
            return np.zeros(n, np.uint8)

        return build

    for n in (1, 2, 3, 1, 4):  # 1 was used again, so 2 is the one that goes
        cache.get_or_build(n, plan(n))
    assert list(cache) == [3, 1, 4] and built == [1, 2, 3, 4]
    cache.get_or_build(9000, plan(9000))  # a fourth entry: the least recently used goes
    assert list(cache) == [1, 4, 9000]
    cache.get_or_build(2000, plan(2000))  # over the byte bound: the oldest go until it fits
    assert list(cache) == [2000]
    cache.get_or_build(20_000, plan(20_000))
    assert list(cache) == [20_000], "a plan larger than the bound is still kept while in use"


@pytest.mark.parametrize("dead", ["some", "all"])
def test_sparse_blocks_skip_only_zero_channels(dead: str) -> None:
    """Channels that are zero on a whole block are left out of the next layer's sums: with
    half (or all) of conv1's channels and a third of conv2's dead, the output still matches
    the reference, and the kernel reports that it skipped them."""
    weights = SRCNNWeights.random(scale=3, seed=11)
    arrays = weights.arrays()
    arrays["b1"][:: 2 if dead == "some" else 1] = -100.0  # never positive on [0, 1] input
    arrays["b2"][::3] = -100.0
    weights = SRCNNWeights(arch=weights.arch, scale=3, **arrays)
    luma = np.random.default_rng(11).random((21, 50), dtype=np.float32)
    cpu = CpuBackend(weights)
    got = cpu.upscale_luma(luma)
    assert_close(got, ReferenceBackend(weights).upscale_luma(luma), ATOL, f"{dead} dead")
    assert cpu.last_work["conv2"] <= (0.5 if dead == "some" else 0.0), cpu.last_work
    assert cpu.last_work["products"] <= 2 / 3 + 1e-9, cpu.last_work


def test_the_kernel_cache_is_keyed_by_install(tmp_path: Path, monkeypatch) -> None:
    """Another install's compiled kernels (same sources, another venv) do not count as this
    one's: Numba would still compile here, so the first-compile notice must still show."""
    from srcnn_fast.backends import cpu

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    ours, theirs = cpu.cache_dir(), cpu.cache_dir(tmp_path / "other-venv" / "srcnn_fast")
    assert ours != theirs and ours.parent == theirs.parent == tmp_path
    indexes = ("cpu._forward-470.py311.nbi", "cpu_pixels._pack-126.py311.nbi")
    (theirs / "sub").mkdir(parents=True)
    for index in indexes:
        (theirs / "sub" / index).touch()
    assert not cpu.is_cached(), "another install's index was taken for this one's"
    (ours / "sub").mkdir(parents=True)
    (ours / "sub" / indexes[0]).touch()
    assert not cpu.is_cached(), "the pixel kernels are not compiled yet"
    (ours / "sub" / indexes[1]).touch()
    assert cpu.is_cached()
