"""The cpu backend's ``precision="int8"`` kernel against its NumPy emulation, and its refusals.

The arithmetic (``srcnn_fast.backends.int8``): the LR input rounded to 0..255, conv1's folded
weights and w2 rounded to -127..127 per output channel, conv1's ReLU output rounded to 0..255
per channel (calibrated steps), integer sums exact; conv3 in bf16 (conv2's output centred and
rounded, as ``precision="bf16"`` does) where the CPU has AVX512_BF16, else float32. The
emulation does the same roundings with exact integer sums, so the kernel differs from it by:

* float32 summation order in conv3 (~1e-7 on O(1) outputs: ``ORDER_ATOL`` = 1e-5);
* an activation whose rescaled sum (one float32 ``fma`` in both, but the emulation adds in
  float64 before its float32 rounding) lands within an ulp of a rounding boundary and rounds
  the other way: one step of one conv1 channel (``_one_flip``: the worst path through |w2|
  and |w3|), or one bf16 step of a conv2 output. Rare: at most 5% of outputs may differ
  beyond the order tolerance, by at most two flips; max difference and share are printed.

Where the CPU lacks VNNI these tests skip with the backend's own refusal; the emulation is
tested on every machine by tests/test_int8.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from srcnn_fast.backends import int8
from srcnn_fast.backends.simd import bf16_problem, int8_problem
from srcnn_fast.errors import BackendError
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import Architecture, SRCNNWeights

needs_int8 = pytest.mark.skipif(int8_problem() is not None, reason=str(int8_problem()))

ORDER_ATOL = 1e-5


#: Whether the kernel runs conv3 in bf16 on this machine (else float32).
def conv3_bf16(scale: int) -> bool:
    """Whether the kernel runs conv3 in bf16 at ``scale`` on this CPU."""
    return int8.conv3_in_bf16(scale) and bf16_problem() is None


def _params(weights: SRCNNWeights, luma: np.ndarray) -> int8.Int8Params:
    """Scales for a test image: conv1's clip at 0.9 of each channel's largest output on it
    (so that some activations clip at 255, as calibrated ones do on rare pixels)."""
    peak = int8.float_conv1(weights, luma).reshape(-1, weights.arch.n1).max(axis=0)
    return int8.int8_params(weights, np.where(peak > 0, 0.9 * peak, 1.0).astype(np.float32))


def _one_flip(weights: SRCNNWeights, luma: np.ndarray, params: int8.Int8Params) -> float:
    """The most one rounding flip can move an output: one step of a conv1 channel through
    |w2| and |w3|, or one bf16 step (2^-7 of the value) of a conv2 output through |w3|."""
    w2, w3 = np.abs(weights.w2[0, 0]), np.abs(weights.w3[:, :, :, 0])
    via_f1 = float((params.step1 * (w2 @ w3.sum(axis=(0, 1)))).max())
    f2 = np.maximum(int8.float_conv1(weights, luma) @ weights.w2[0, 0] + weights.b2, 0)
    via_f2 = 2.0**-7 * float(np.abs(f2).max() + 1.0) * float(w3.max())
    return max(via_f1, via_f2 if conv3_bf16(weights.scale) else 0.0)


def _against_emulation(got, weights, luma, params, what: str) -> None:
    expected = int8.emulate(weights, luma, params, conv3_bf16=conv3_bf16(weights.scale))
    diff = np.abs(got.astype(np.float64) - expected)
    flips = float(np.mean(diff > ORDER_ATOL))
    atol = ORDER_ATOL + 2 * _one_flip(weights, luma, params)
    assert diff.max() <= atol, f"{what}: max |kernel - emulation| {diff.max():.3g} > {atol:.3g}"
    assert flips <= 0.05, f"{what}: {flips:.2%} of outputs beyond {ORDER_ATOL} ({diff.max():.3g})"


@needs_int8
@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_kernel_matches_the_emulation_every_scale_and_size(scale: int) -> None:
    from srcnn_fast.backends.cpu import CpuBackend

    weights = SRCNNWeights.random(scale=scale, seed=scale)
    rng = np.random.default_rng(scale)
    for shape in [(1, 1), (2, 3), (9, 11), (17, 40), (33, 70)]:
        luma = rng.random(shape, dtype=np.float32)
        params = _params(weights, luma)
        cpu = CpuBackend(weights, precision="int8", int8_params=params)
        _against_emulation(cpu.upscale_luma(luma), weights, luma, params, f"x{scale} {shape}")


@needs_int8
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_kernel_matches_the_emulation_on_the_shipped_weights(scale: int) -> None:
    # Natural-image statistics (the bundled sample's luma) and trained weights: most
    # activations small, a few clipped at 255.
    from srcnn_fast.backends.cpu import CpuBackend
    from srcnn_fast.imagefile import read_image
    from srcnn_fast.imageops import rgb_to_luma, to_float
    from srcnn_fast.infer import shipped_weights_path

    weights = SRCNNWeights.load(shipped_weights_path(scale))
    image = to_float(read_image(REPO / "samples" / "butterfly.png"))
    luma = rgb_to_luma(image[..., :3])[:50, :77].astype(np.float32)
    params = _params(weights, luma)
    got = CpuBackend(weights, precision="int8", int8_params=params).upscale_luma(luma)
    _against_emulation(got, weights, luma, params, f"shipped x{scale}")


@needs_int8
def test_conv3_in_float32_matches_its_emulation(monkeypatch) -> None:
    from srcnn_fast.backends.cpu import CpuBackend

    monkeypatch.setattr(int8, "CONV3_FP32_SCALES", frozenset({3}))
    weights = SRCNNWeights.random(scale=3, seed=2)
    luma = np.random.default_rng(2).random((15, 41), dtype=np.float32)
    params = _params(weights, luma)
    cpu = CpuBackend(weights, precision="int8", int8_params=params)
    assert cpu.net.pair3 == 1
    got = cpu.upscale_luma(luma)
    expected = int8.emulate(weights, luma, params, conv3_bf16=False)
    atol = ORDER_ATOL + 2 * float(
        (params.step1 * (np.abs(weights.w2[0, 0]) @ np.abs(weights.w3).sum(axis=(0, 1, 3)))).max()
    )
    diff = np.abs(got - expected)
    assert diff.max() <= atol and np.mean(diff > ORDER_ATOL) <= 0.05, diff.max()


@needs_int8
def test_dead_channels_and_another_architecture() -> None:
    # Channel counts that are not multiples of 4 (padded quads), whole dead quads and half
    # dead ones: the sparse blocks skip only quads that are zero on the whole block.
    from srcnn_fast.backends.cpu import CpuBackend

    arch = Architecture(f1=5, n1=22, f2=1, n2=12, f3=3)
    weights = SRCNNWeights.random(arch, scale=3, seed=7)
    arrays = weights.arrays()
    arrays["b1"][:8] = -100.0
    arrays["b1"][10::3] = -100.0
    weights = SRCNNWeights(arch=arch, scale=3, **arrays)
    luma = np.random.default_rng(7).random((13, 29), dtype=np.float32)
    params = _params(weights, luma)
    cpu = CpuBackend(weights, precision="int8", int8_params=params)
    _against_emulation(cpu.upscale_luma(luma), weights, luma, params, arch.name)
    assert cpu.last_work["conv2"] < 1.0  # the two dead quads were skipped


@needs_int8
def test_the_8_lane_kernel_in_a_subprocess(tmp_path) -> None:
    # The 256-bit vpdpbusd (AVX512_VL or AVX-VNNI) with the 2 x 4 register block and the
    # 256-bit packs, forced as the fp32 and bf16 tests force it, in its own cache folder.
    weights = SRCNNWeights.random(scale=3, seed=1)
    luma = np.random.default_rng(1).random((19, 37), dtype=np.float32)
    params = _params(weights, luma)
    np.save(tmp_path / "in.npy", luma)
    np.save(tmp_path / "clip.npy", params.step1 * int8.ACT_MAX)
    code = (
        "import numpy as np;"
        "from srcnn_fast.backends import cpu, int8, simd;"
        "from srcnn_fast.model import SRCNNWeights;"
        "w = SRCNNWeights.random(scale=3, seed=1);"
        f"x = np.load({str(tmp_path / 'in.npy')!r});"
        f"p = int8.int8_params(w, np.load({str(tmp_path / 'clip.npy')!r}));"
        f"np.save({str(tmp_path / 'out.npy')!r}, "
        "cpu.CpuBackend(w, precision='int8', int8_params=p).upscale_luma(x));"
        "print(simd.W, cpu.CHANNELS)"
    )
    env = dict(os.environ, SRCNN_FAST_SIMD_WIDTH="8", NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == ["8", "4"], run.stdout
    _against_emulation(np.load(tmp_path / "out.npy"), weights, luma, params, "8 lanes")


@needs_int8
def test_tiles_are_the_whole_image_bit_for_bit() -> None:
    # Every rounding depends on one pixel's own integer sums and fixed scales, so tiling
    # changes nothing, as in fp32 and bf16.
    image = np.random.default_rng(0).random((90, 130, 3), dtype=np.float32)
    whole = Upscaler(3, backend="cpu", precision="int8", tile=0)(image)
    tiled = Upscaler(3, backend="cpu", precision="int8", tile=32)(image)
    assert np.array_equal(whole, tiled), np.abs(whole - tiled).max()


@needs_int8
def test_auto_with_int8_is_the_cpu_backend_and_9_5_5_is_refused() -> None:
    assert Upscaler(2, precision="int8").backend_name == "cpu"
    with pytest.raises(BackendError, match="1x1 conv2"):
        Upscaler(weights=SRCNNWeights.random(Architecture(f2=5), scale=2), precision="int8")


def test_int8_is_refused_with_one_line_where_the_cpu_lacks_vnni(monkeypatch) -> None:
    from srcnn_fast.backends import cpu, simd

    monkeypatch.setattr(simd, "_host_features", lambda: {"avx512f": True, "avx512bf16": True})
    problem = simd.int8_problem()
    assert problem is not None and "VNNI" in problem and "\n" not in problem
    monkeypatch.setattr(cpu, "int8_problem", simd.int8_problem)
    with pytest.raises(BackendError, match="VNNI"):
        Upscaler(2, backend="cpu", precision="int8")


def test_int8_belongs_to_the_cpu_backend() -> None:
    with pytest.raises(BackendError, match="needs the cpu backend"):
        Upscaler(2, backend="reference", precision="int8")


def test_info_says_whether_int8_runs_here_and_on_what() -> None:
    from srcnn_fast.backends import backend_details

    line = backend_details()["cpu"]
    state = "available (" if int8_problem() is None else "unavailable: "
    assert "--precision int8: " + state in line, line
    if int8_problem() is None:
        conv3 = "conv3 in bf16 (x2: fp32)" if bf16_problem() is None else "conv3 in fp32"
        assert "vpdpbusd" in line and conv3 in line, line


def test_the_kernel_cache_is_keyed_by_the_instruction_sets() -> None:
    # A VNNI or bf16 build lives in a folder of its own, so a CPU without them never loads it.
    from srcnn_fast.backends import numba_cache

    zen4 = {"avx512f": True, "avx512bf16": True, "avx512vnni": True}
    assert numba_cache.isa_tag(zen4) == "bf16-vnni"
    assert numba_cache.isa_tag({"avx2": True}) == "base"
    assert numba_cache.isa_tag() in numba_cache.cache_dir().name
