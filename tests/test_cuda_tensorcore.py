"""The tensor-core kernel (kernels/srcnn_fused_tc.cu) and its warp-level wrappers
(kernels/srcnn_warp.cuh), on the CPU through the CUDA-on-CPU harness (tests/cudacpu).

(a) The wrappers' emulation (tests/cudacpu/cuda_cpu_warp.h): f32 -> f16 rounding bit-exact
    against NumPy, and mma.m16n8k16 against a NumPy product of the f16-rounded matrices, with
    every lane's fragment registers decoded here from the PTX ISA layout (section 9.7.14.5.8).
(b) The kernel, driven by the host code of srcnn_fast.backends.cuda_tensorcore, against the
    float32 NumPy reference, with a per-pixel tolerance from a rounding-error model (below).
(c) A NumPy emulation of the same precision (f16 operands, float32 accumulation) measures the
    quality cost on Set5, and the kernel's output is checked against it.

Tolerance of (b). Rounding to f16 (to nearest even) perturbs each operand by a relative error
|d| <= u = 2^-11 (~4.9e-4); float32 accumulation adds ~2^-24 per term, negligible beside it.
The worst-case bound (every error aligned, |W| * |x| at each layer) is ~0.2 on a [0, 1] output
here -- true but useless. Rounding errors are instead modelled as independent, zero-mean, of
variance u^2/3 (uniform on [-u, u]; Higham & Mary's probabilistic rounding-error analysis), and
propagated to first order through the network:
    conv1 (x and w1 rounded):  var1 = 2 v conv(x^2, w1^2)                 (v = u^2 / 3)
    f16(ReLU(conv1)):          var1' = var1 + v a1^2
    conv2 (w2 rounded):        var2 = conv(var1', w2^2) + v conv(a1^2, w2^2)
    f16(ReLU(conv2)):          var2' = var2 + v a2^2
    conv3 (w3 rounded):        var3 = conv(var2', w3^2) + v conv(a2^2, w3^2)
giving a per-pixel standard deviation sigma = sqrt(var3) (~1e-4 for these weights). Measured
|error| / sigma: rms ~0.4, max ~2 (random and shipped weights, all scales), so the test allows
6 sigma per pixel. A layout or indexing bug errs by much more: swapping the two taps of one A
register of conv1 errs by 85 sigma, a wrong fragment layout by the size of the signal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from cudacpu import KERNELS, CpuModule, OwnershipError, build, have_compiler, sanitizer_run
from cudacpu.device import CONV3_LOOP, HarnessDevice, PlantedDevice, tile_edge_shapes

from srcnn_fast import imageops
from srcnn_fast.backends.cuda import CudaBackend
from srcnn_fast.backends.cuda_tensorcore import (
    b_fragments,
    tensorcore_build,
    tensorcore_constants,
    tensorcore_problem,
    tensorcore_shared_bytes,
    tensorcore_tile,
)
from srcnn_fast.backends.reference import ReferenceBackend, conv_same_rows
from srcnn_fast.errors import BackendError
from srcnn_fast.evaluate import evaluate
from srcnn_fast.infer import Upscaler, shipped_weights_path
from srcnn_fast.model import Architecture, SRCNNWeights

pytestmark = pytest.mark.skipif(not have_compiler(), reason="no g++ to run CUDA C on the CPU")

U = 2.0**-11  # unit roundoff of IEEE binary16, round to nearest
SIGMAS = 6.0
MAX_PSNR_COST_DB = 0.01
DEVICES = {"227KB": 227 * 1024, "48KB": 48 * 1024}  # tiles 16 x 32 and 8 x 16
SMALL_ARCH = Architecture(f1=5, n1=16, f2=1, n2=8, f3=3)  # every GEMM dimension padded

# ---- (a) the wrappers ----------------------------------------------------------------------

WARP_TEST_KERNELS = r"""
#include "srcnn_warp.cuh"

// y[i] = f16x2 of (x[2i], x[2i+1]).
extern "C" __global__ void pack_pairs(const float* x, unsigned* y, int pairs) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < pairs) y[i] = srcnn_pack_f16x2(x[2 * i], x[2 * i + 1]);
}

// Warp w: D = A B + C for A = a[w] (16 x 16), B = b[w] (16 x 8, row-major), C = c[w] (16 x 8),
// fragments loaded with the PTX ISA layout; every lane's registers are also written to regs.
extern "C" __global__ void mma_16816(const float* a, const float* b, const float* c, float* d,
                                     unsigned* regs) {
    const int lane = threadIdx.x % 32, w = threadIdx.x / 32, g = lane >> 2, t = lane & 3;
    a += 256 * w, b += 128 * w, c += 128 * w, d += 128 * w;
    unsigned fa[4], fb[2];
    float fc[4], fd[4];
    fa[0] = srcnn_pack_f16x2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
    fa[1] = srcnn_pack_f16x2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
    fa[2] = srcnn_pack_f16x2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
    fa[3] = srcnn_pack_f16x2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
    fb[0] = srcnn_pack_f16x2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
    fb[1] = srcnn_pack_f16x2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
    for (int i = 0; i < 4; ++i) fc[i] = c[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2];
    srcnn_mma_f16_m16n8k16(fd, fa, fb, fc);
    for (int i = 0; i < 4; ++i) d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = fd[i];
    unsigned* r = regs + 6 * threadIdx.x;
    for (int i = 0; i < 4; ++i) r[i] = fa[i];
    r[4] = fb[0], r[5] = fb[1];
}

// mma.sync from half a warp: undefined on a GPU, reported by the harness.
extern "C" __global__ void mma_half_warp(float* d) {
    if (threadIdx.x % 32 >= 16) return;
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    const float c[4] = {1, 1, 1, 1};
    float r[4];
    srcnn_mma_f16_m16n8k16(r, a, b, c);
    d[threadIdx.x] = r[0];
}
"""


@pytest.fixture(scope="module")
def warp_kernels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("warp") / "warp_kernels.cu"
    path.write_text(WARP_TEST_KERNELS)
    return path


def f16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to f16 and back (NumPy rounds to nearest even)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def _pack(module: CpuModule, values: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(values, np.float32)
    pairs = values.size // 2
    out = np.zeros(pairs, np.uint32)
    module.get_function("pack_pairs")((-(-pairs // 256),), (256,), (values, out, np.int32(pairs)))
    return out


def test_f32_to_f16_rounds_to_nearest_even_bit_exactly(warp_kernels: Path) -> None:
    rng = np.random.default_rng(0)
    # Random bit patterns over every exponent an f16 can reach and beyond (subnormals,
    # overflow), exact ties between f16 neighbours (ulp/2 and 3 ulp/2 past an f16 value), the
    # rounding boundary of the largest f16 (65504 + 16 = 65520 rounds to inf), +-0, +-inf.
    exps = rng.integers(127 - 30, 127 + 18, 20000).astype(np.uint32)
    mant = rng.integers(0, 1 << 23, 20000).astype(np.uint32)
    sign = rng.integers(0, 2, 20000).astype(np.uint32) << 31
    random = (sign | exps << 23 | mant).view(np.float32)
    base = rng.integers(0, 0x7BFF, 4000).astype(np.uint16).view(np.float16).astype(np.float32)
    ulp = np.spacing(base.astype(np.float16)).astype(np.float32)
    ties = np.concatenate([base + ulp / 2, base + 3 * ulp / 2, -(base + ulp / 2)])
    special = np.array(
        [
            0.0,
            -0.0,
            np.inf,
            -np.inf,
            65504,
            65519.99,
            65520,
            2**-24,
            2**-25,
            3 * 2**-26,
            2**-14 - 2**-25,
            6.1e-5,
            1 + 2**-11,
            1 + 3 * 2**-11,
        ],
        np.float32,
    )
    values = np.concatenate([random, ties, special]).astype(np.float32)
    values = values[: values.size // 2 * 2]
    module = CpuModule(warp_kernels)
    packed = _pack(module, values)
    got = packed.view(np.uint16)  # little endian: element 2i is the low half of word i
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (
        f"{bad.size} mismatches, e.g. {values[bad[:5]]!r}: got {got[bad[:5]]!r}, "
        f"expected {expected[bad[:5]]!r}"
    )
    nan = _pack(module, np.array([np.nan, -np.nan], np.float32)).view(np.float16)
    assert np.isnan(nan).all()


def _decode_fragments(regs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild A (16 x 16) and B (16 x 8) of one warp from its lanes' registers, with the
    formulas of PTX ISA 9.7.14.5.8 (independently of the C++ emulation)."""
    halves = regs.astype(np.uint32)
    a, b = np.full((16, 16), np.nan, np.float32), np.full((16, 8), np.nan, np.float32)
    for lane in range(32):
        group, tig = lane >> 2, lane % 4
        for i in range(8):  # a_i: register i // 2, half i % 2
            row = group if (i < 2 or 4 <= i < 6) else group + 8
            col = tig * 2 + (i & 1) + (8 if i >= 4 else 0)
            bits = np.uint16((halves[lane, i // 2] >> (16 * (i & 1))) & 0xFFFF)
            a[row, col] = bits.view(np.float16)
        for i in range(4):
            row = tig * 2 + (i & 1) + (8 if i >= 2 else 0)
            bits = np.uint16((halves[lane, 4 + i // 2] >> (16 * (i & 1))) & 0xFFFF)
            b[row, group] = bits.view(np.float16)
    return a, b


def _run_mma(module: CpuModule, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    warps = a.shape[0]
    d = np.zeros_like(c)
    regs = np.zeros((warps * 32, 6), np.uint32)
    module.get_function("mma_16816")(
        (1,),
        (32 * warps,),
        (np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(c), d, regs),
    )
    return d, regs.reshape(warps, 32, 6)


def test_mma_fragments_round_trip_and_product(warp_kernels: Path) -> None:
    rng = np.random.default_rng(1)
    warps = 3  # each warp its own matrices: the emulation keeps one scratch area per warp
    a = rng.standard_normal((warps, 16, 16)).astype(np.float32)
    b = rng.standard_normal((warps, 16, 8)).astype(np.float32)
    c = rng.standard_normal((warps, 16, 8)).astype(np.float32)
    d, regs = _run_mma(CpuModule(warp_kernels), a, b, c)
    for w in range(warps):
        fa, fb = _decode_fragments(regs[w])
        np.testing.assert_array_equal(fa, f16(a[w]), err_msg=f"warp {w}: A fragments")
        np.testing.assert_array_equal(fb, f16(b[w]), err_msg=f"warp {w}: B fragments")
        exact = f16(a[w]).astype(np.float64) @ f16(b[w]).astype(np.float64) + c[w]
        # Products of f16 values are exact in float32; 16 float32 additions round by at most
        # 16 * 2^-24 of the sum of magnitudes.
        scale = np.abs(f16(a[w])) @ np.abs(f16(b[w])) + np.abs(c[w])
        err = np.abs(d[w] - exact) / scale
        assert err.max() <= 16 * 2.0**-24, f"warp {w}: relative error {err.max():.3g}"


def test_mma_is_exact_on_small_integers(warp_kernels: Path) -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(-8, 9, (2, 16, 16)).astype(np.float32)
    b = rng.integers(-8, 9, (2, 16, 8)).astype(np.float32)
    c = rng.integers(-100, 101, (2, 16, 8)).astype(np.float32)
    d, _ = _run_mma(CpuModule(warp_kernels), a, b, c)
    np.testing.assert_array_equal(d, a @ b + c)


def test_mma_from_part_of_a_warp_is_reported(warp_kernels: Path) -> None:
    module = CpuModule(warp_kernels)
    with pytest.raises(RuntimeError, match="only some lanes"):
        module.get_function("mma_half_warp")((1,), (64,), (np.zeros(64, np.float32),))
    # The scratch state is reset: a correct launch afterwards still works.
    d, _ = _run_mma(module, *(np.ones((1, 16, n), np.float32) for n in (16, 8, 8)))
    np.testing.assert_array_equal(d, 17.0)


def test_warp_wrappers_compile_for_sm80_with_nvrtc(warp_kernels: Path) -> None:
    pytest.importorskip("cupy", reason="CuPy provides the NVRTC bindings")
    sys.path.insert(0, str(REPO / "tools"))
    from kernel_gate import compile_one

    for arch in ("sm_80", "sm_90"):
        result = compile_one((arch, str(warp_kernels), (f"-I{KERNELS}",)))
        assert result.ok, result.log
        assert {k.kernel for k in result.kernels} == {"pack_pairs", "mma_16816", "mma_half_warp"}
        assert all(k.spill_bytes == 0 for k in result.kernels), result.kernels


# ---- (b) the kernel against the float32 reference ------------------------------------------


def _conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' convolution with replicate padding, float64: (H, W, C) x (f, f, C, O)."""
    r = (kernel.shape[0] - 1) // 2
    padded = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[:2], axis=(0, 1))
    return np.einsum("hwcij,ijco->hwo", windows, kernel, optimize=True)


def rounding_sigma(plane: np.ndarray, weights: SRCNNWeights) -> np.ndarray:
    """Per-pixel standard deviation of the f16 rounding error (module docstring)."""
    v = U * U / 3
    x = np.asarray(plane, np.float64)[:, :, None]
    k1, k2, k3 = (np.asarray(k, np.float64) for k in (weights.w1, weights.w2, weights.w3))
    a1 = np.maximum(_conv(x, k1) + weights.b1, 0.0)
    a2 = np.maximum(_conv(a1, k2) + weights.b2, 0.0)
    var1 = 2 * v * _conv(x * x, k1 * k1) + v * a1 * a1
    var2 = _conv(var1, k2 * k2) + v * _conv(a1 * a1, k2 * k2) + v * a2 * a2
    var3 = _conv(var2, k3 * k3) + v * _conv(a2 * a2, k3 * k3)
    return np.sqrt(var3[:, :, 0])


def assert_within_sigmas(got: np.ndarray, luma: np.ndarray, weights: SRCNNWeights, what: str):
    ref = ReferenceBackend(weights).upscale_luma(luma)
    sigma = rounding_sigma(imageops.bicubic_upscale(luma, weights.scale), weights)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    diff = np.abs(got.astype(np.float64) - ref)
    ratio = diff / sigma
    where = np.unravel_index(int(ratio.argmax()), ratio.shape)
    assert ratio.max() <= SIGMAS, (
        f"{what}: |diff| = {diff[where]:.3g} = {ratio[where]:.1f} sigma at {where} (allowed "
        f"{SIGMAS} sigma = {SIGMAS * sigma[where]:.3g}); max |diff| {diff.max():.3g}; got "
        f"{got[where]:.7g}, expected {ref[where]:.7g}"
    )
    return diff, sigma


@pytest.fixture(scope="module", params=list(DEVICES))
def device(request) -> HarnessDevice:
    return HarnessDevice(DEVICES[request.param])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_kernel_every_scale_odd_sizes_tile_edges(scale: int, device) -> None:
    weights = SRCNNWeights.random(scale=scale, seed=scale)
    tc = CudaBackend(weights, device, precision="fp16")
    th, tw = tc.pipeline.tile
    rng = np.random.default_rng(scale)
    for shape in tile_edge_shapes(scale, (th, tw)):
        luma = rng.random(shape, dtype=np.float32)
        assert_within_sigmas(tc.upscale_luma(luma), luma, weights, f"x{scale} {shape} {th}x{tw}")


def test_architecture_with_padded_gemms() -> None:
    # 25 taps -> K 32, 16 maps, 8 maps -> N 16, 9 conv3 taps -> N 16.
    weights = SRCNNWeights.random(SMALL_ARCH, scale=3, seed=2)
    luma = np.random.default_rng(2).random((11, 14), dtype=np.float32)
    got = CudaBackend(weights, HarnessDevice(), precision="fp16").upscale_luma(luma)
    assert_within_sigmas(got, luma, weights, SMALL_ARCH.name)


def test_packed_pixels_and_batches() -> None:
    weights = SRCNNWeights.random(SMALL_ARCH, scale=3, seed=5)
    frames = np.random.default_rng(5).integers(0, 256, (3, 6, 10, 3)).astype(np.uint8)
    batch = CudaBackend(weights, HarnessDevice(), precision="fp16").upscale_pixels(frames)
    up = Upscaler(weights=weights, backend="reference")
    for f in range(3):
        # f16 errors are ~1e-4 of full scale (~0.03 LSB): an 8-bit value may round the other
        # way near a .5 boundary, never by more than 1.
        diff = np.abs(batch[f].astype(int) - up(frames[f]))
        assert diff.max() <= 1 and np.mean(diff > 0) < 0.02, (f, diff.max(), np.mean(diff > 0))


def test_block_ownership_catches_the_planted_conv3_off_by_one() -> None:
    # Issue 20's `<=` in this kernel's gather loop: the extra pass writes one pixel of the next
    # block's tile, hidden when blocks run forward one after another.
    planted = CONV3_LOOP.replace("o < TILE_H", "o <= TILE_H")
    device = PlantedDevice({"srcnn_fused_tc.cu": (CONV3_LOOP, planted)})
    backend = CudaBackend(
        SRCNNWeights.random(SMALL_ARCH, scale=2, seed=1), device, precision="fp16"
    )
    assert backend.pipeline.tile == (16, 32)
    luma = np.random.default_rng(0).random((20, 20), dtype=np.float32)  # 40 x 40: 2 x 3 tiles
    with pytest.raises(OwnershipError, match=r"out\[0, 16, 0\] written by block \(0, 0, 0\)"):
        backend.upscale_luma(luma)


def test_tiles_and_shared_memory_match_the_kernel() -> None:
    default = SRCNNWeights.random(scale=2)
    assert tensorcore_tile(default, 227 * 1024) == (16, 32)  # sm_80 / sm_90
    assert tensorcore_tile(default, 99 * 1024) == (16, 32)  # sm_86 / sm_89: 96,144 B
    assert tensorcore_tile(default, 64 * 1024) == (8, 16)  # 8 x 32 needs 65,936 B
    assert tensorcore_tile(default, 40 * 1024) == (4, 16)
    with pytest.raises(BackendError, match="too small"):
        tensorcore_tile(default, 24 * 1024)
    main = 'int main() { std::printf("%d", (int)SRCNN_TC_SMEM_BYTES); return 0; }'
    for weights, shared in (
        (default, 227 * 1024),
        (default, 48 * 1024),
        (SRCNNWeights.random(SMALL_ARCH), 16 * 1024),
    ):
        source, options = tensorcore_build(weights, shared)
        exe = build(source, options, main=main)
        printed = int(subprocess.run([str(exe)], capture_output=True, text=True).stdout)
        tile = tensorcore_tile(weights, shared)
        assert printed == tensorcore_shared_bytes(weights, tile), (weights.arch.name, tile)


def test_constants_are_b_fragments_of_the_weights() -> None:
    weights = SRCNNWeights.random(scale=2, seed=7)
    consts = tensorcore_constants(weights)
    frags = consts["c_w1h"].reshape(6, 8, 32, 4)  # 96 / 16 k-steps, 64 / 8 n-tiles
    w1 = weights.w1.reshape(81, 64)
    # Lane 13: g = 3, t = 1 holds B[2, 3, 10, 11][3] of each block; k-step 5, n-tile 7.
    for s, j in ((0, 0), (2, 5)):
        expected = f16(w1[16 * s + np.array([2, 3, 10, 11]), 8 * j + 3])
        np.testing.assert_array_equal(frags[s, j, 13].view(np.float16), expected)
    np.testing.assert_array_equal(frags[5, 7, 13].view(np.float16)[1:], 0)  # taps 83.. padded
    w3 = consts["c_w3h"].reshape(2, 4, 32, 4)  # B3[c][dy 5 + dx] = w3[dy][dx][c]
    assert w3[0, 0, 0].view(np.float16)[1] == f16(weights.w3[0, 0, 1, 0])
    b = np.arange(32 * 16, dtype=np.float32).reshape(32, 16)
    assert b_fragments(b).shape == (2, 2, 32, 4)
    assert tensorcore_problem(type("Old", (), {"compute_capability": "75"})())
    assert tensorcore_problem(type("New", (), {"compute_capability": "80"})()) is None


@pytest.mark.parametrize("variant", ["tsan", "asan"])
def test_kernel_is_clean_under_sanitizers(variant: str) -> None:
    # std::thread per CUDA thread: the mma emulation's warp barriers under ThreadSanitizer, the
    # host's shared-memory size (exactly the buffer the launcher allocates) under ASan.
    code = f"""
import numpy as np
from cudacpu import OwnershipError
from cudacpu.device import CONV3_LOOP, HarnessDevice, PlantedDevice, tile_edge_shapes
from srcnn_fast.backends.cuda import CudaBackend
from srcnn_fast.model import Architecture, SRCNNWeights
w = SRCNNWeights.random(Architecture(f1=5, n1=16, n2=8, f3=3), scale=3, seed=1)
b = CudaBackend(w, HarnessDevice(16 * 1024, {variant!r}), precision="fp16")
img = np.random.default_rng(1).integers(0, 256, (5, 6, 4)).astype(np.uint8)
print("ran", b.pipeline.tile, b.upscale_pixels(img).shape)
"""
    run = sanitizer_run(variant, code)
    assert "ran (8, 16) (15, 18, 4)" in run.stdout, run.stdout + run.stderr[-3000:]
    assert "Sanitizer" not in run.stderr, run.stderr[-3000:]


# ---- (c) the same precision in NumPy: quality cost, and the kernel against it --------------


def network_f16(plane: np.ndarray, weights: SRCNNWeights, f16_layers=(True, True, True)):
    """The network with each selected conv's inputs and weights rounded to f16 (to nearest
    even) and float32 accumulation: the tensor-core kernel's arithmetic up to summation order
    (conv3 as per-pixel tap contributions, then shift-adds, as the kernel does)."""
    x = np.asarray(plane, np.float32)[:, :, None]
    layers = (
        (weights.w1, weights.b1, True),
        (weights.w2, weights.b2, True),
        (weights.w3, weights.b3, False),
    )
    for (kernel, bias, relu), low in zip(layers, f16_layers, strict=True):
        r = (kernel.shape[0] - 1) // 2
        x, kernel = (f16(x), f16(kernel)) if low else (x, kernel)
        x = conv_same_rows(np.pad(x, ((r, r), (0, 0), (0, 0)), mode="edge"), kernel, bias, relu)
    return x[:, :, 0]


def _emulated_upscaler(weights: SRCNNWeights, f16_layers):
    s = weights.scale
    network = lambda luma: network_f16(imageops.bicubic_upscale(luma, s), weights, f16_layers)  # noqa: E731
    return lambda image: imageops.upscale_image(image, s, network)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_f16_costs_at_most_a_hundredth_of_a_db_on_set5(scale: int, data_dir) -> None:
    weights = SRCNNWeights.load(shipped_weights_path(scale))
    methods = {
        "fp32": Upscaler(weights=weights, backend="reference"),
        "f16": _emulated_upscaler(weights, (True, True, True)),
        "f16 conv2+3": _emulated_upscaler(weights, (False, True, True)),
    }
    result = evaluate(data_dir / "Set5", scale, methods)
    print("\n" + result.table())
    fp32 = result.mean("fp32").psnr
    for name in ("f16", "f16 conv2+3"):
        cost = fp32 - result.mean(name).psnr
        print(
            f"x{scale} {name}: fp32 {fp32:.4f} dB, {result.mean(name).psnr:.4f} dB, "
            f"cost {cost:+.5f} dB"
        )
        assert abs(cost) <= MAX_PSNR_COST_DB, f"x{scale} {name}: {cost:+.4f} dB"


def test_kernel_matches_the_f16_emulation(sample_image: np.ndarray) -> None:
    # Shipped x2 weights on a crop of the sample image, and random weights at x3. The kernel
    # and the emulation round the same values; they differ only where float32 summation order
    # moves a value across an f16 rounding boundary (a 1-ulp flip of one operand), so they
    # agree far better than either agrees with float32.
    crop = imageops.rgb_to_luma(imageops.to_float(sample_image))[40:88, 60:100].copy()
    cases = [
        (SRCNNWeights.load(shipped_weights_path(2)), crop),
        (
            SRCNNWeights.random(scale=3, seed=3),
            np.random.default_rng(3).random((20, 21), np.float32),
        ),
    ]
    for weights, luma in cases:
        got = CudaBackend(weights, HarnessDevice(), precision="fp16").upscale_luma(luma)
        emulated = network_f16(imageops.bicubic_upscale(luma, weights.scale), weights)
        f16_error, sigma = assert_within_sigmas(got, luma, weights, f"x{weights.scale}")
        emulated_error = np.abs(emulated - ReferenceBackend(weights).upscale_luma(luma))
        # The emulation's own error against float32 is the kernel's, not a looser one: the same
        # worst and mean error (measured: equal to 3 digits, shipped and random weights) ...
        for stat in (np.max, np.mean):
            kernel_stat, emulated_stat = float(stat(f16_error)), float(stat(emulated_error))
            assert abs(kernel_stat - emulated_stat) <= 0.05 * emulated_stat, (
                f"x{weights.scale}: {stat.__name__} error vs f32 {kernel_stat:.3g}, "
                f"emulation {emulated_stat:.3g}"
            )
        # ... and kernel vs emulation stays within 1 sigma everywhere, and on average a few
        # percent of the f16 error itself.
        gap = np.abs(got.astype(np.float64) - emulated)
        assert (gap / sigma).max() <= 1.0, f"x{weights.scale}: kernel vs emulation {gap.max():.3g}"
        assert gap.mean() <= 0.05 * emulated_error.mean(), (gap.mean(), emulated_error.mean())
