"""Tensor-core precision mode of the CUDA backend: ``kernels/srcnn_fused_tc.cu``.

The three convolutions run as GEMMs on tensor cores (``mma.m16n8k16``): inputs and weights
rounded to float16 (to nearest even), products accumulated in float32, bias, ReLU and conv3's
final sums in float32. On Set5 this costs at most 0.0012 dB of PSNR against the float32 kernel
with the shipped weights (tests/test_cuda_tensorcore.py measures it). Needs compute capability
8.0 (sm_80) or newer.

The host side here is the float32 mode's (:mod:`.cuda_fp32`) counterpart: ``tensorcore_build``
is the (source, options) the backend compiles, ``tensorcore_constants`` every ``__constant__``
the kernel reads (the f16 weights as uint16 bit patterns in mma B-fragment order), and
``tensorcore_network`` packs them as the ``NetworkKernel`` that :class:`.cuda.Pipeline`
launches for ``precision="fp16"`` exactly as it launches the float32 kernel (the unpack/pack
kernels are the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..model import SRCNNWeights
from ..tiling import round_up
from .cuda_common import (
    Device,
    NetworkKernel,
    bicubic_constants,
    fused_options,
    kernel_dir,
    pick_tile,
    require_1x1_conv2,
    tile_pixels,
)

#: Oldest GPU generation with f16 mma.m16n8k16 and cvt.rn.f16x2.f32.
MIN_COMPUTE_CAPABILITY = 80
KERNEL = "srcnn_fused_tc"
SOURCE = "srcnn_fused_tc.cu"


def tensorcore_shared_bytes(weights: SRCNNWeights, tile: tuple[int, int]) -> int:
    """Dynamic shared memory of one block: SRCNN_TC_SMEM_BYTES of srcnn_fused_tc.cu (the
    kernel static_asserts that they agree)."""
    a = weights.arch
    region, window = tile_pixels(a, tile)
    k1p, n1p, n2p = round_up(a.f1 * a.f1, 16), round_up(a.n1, 16), round_up(a.n2, 16)
    t3, t3p = a.f3 * a.f3, round_up(a.f3 * a.f3, 8)
    fragment_words = (k1p * n1p + n1p * n2p + n2p * t3p) // 2  # 2 f16 per word
    cstride = (region + 11) // 16 * 16 + 4
    return 4 * (fragment_words + n1p + n2p + window + t3 * cstride)


def tensorcore_tile(weights: SRCNNWeights, max_shared_bytes: int) -> tuple[int, int]:
    """Largest (TILE_H, TILE_W) whose shared memory fits the device."""
    return pick_tile(
        lambda tile: tensorcore_shared_bytes(weights, tile), max_shared_bytes, "tensor-core"
    )


def tensorcore_build(weights: SRCNNWeights, max_shared_bytes: int) -> tuple[Path, tuple[str, ...]]:
    """(source, NVRTC options) of the tensor-core kernel for these weights on such a device."""
    tile = tensorcore_tile(weights, max_shared_bytes)
    shared_bytes = tensorcore_shared_bytes(weights, tile)
    return kernel_dir() / SOURCE, fused_options(weights, tile, shared_bytes)


def tensorcore_network(weights: SRCNNWeights, max_shared_bytes: int) -> NetworkKernel:
    """The "fp16" precision mode's network kernel (see :func:`.cuda.network_kernel`)."""
    tile = tensorcore_tile(weights, max_shared_bytes)
    source, options = tensorcore_build(weights, max_shared_bytes)
    return NetworkKernel(
        source=source,
        options=options,
        name=KERNEL,
        tile=tile,
        shared_bytes=tensorcore_shared_bytes(weights, tile),
        constants=tensorcore_constants(weights),
    )


def f16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> IEEE float16 bit patterns, rounded to nearest even (as cvt.rn)."""
    values = np.asarray(values, np.float32)
    if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
        raise BackendError("a weight is too large for float16 (|w| > 65504)")
    return values.astype(np.float16).view(np.uint16)


def b_fragments(matrix: np.ndarray) -> np.ndarray:
    """A (K, N) float32 matrix, K a multiple of 16 and N of 8, as f16 B fragments of
    mma.m16n8k16, ordered [k-step][n-tile][lane][4]: lane (g = lane >> 2, t = lane % 4) holds
    B[2t, 2t+1, 2t+8, 2t+9][g] of its 16 x 8 block (PTX ISA 9.7.14.5.8), which as two 32-bit
    little-endian words are its registers b[0] and b[1]."""
    k, n = matrix.shape
    assert k % 16 == 0 and n % 8 == 0, matrix.shape
    bits = f16_bits(matrix)
    lane = np.arange(32)
    rows = 2 * (lane % 4)[:, None] + np.array([0, 1, 8, 9])  # (32, 4) within the k-step
    cols = (lane >> 2)[:, None]  # (32, 1) within the n-tile
    s = np.arange(k // 16)[:, None, None, None]
    j = np.arange(n // 8)[None, :, None, None]
    return np.ascontiguousarray(bits[16 * s + rows, 8 * j + cols])  # (K/16, N/8, 32, 4)


def gemm_matrices(weights: SRCNNWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zero-padded float32 B matrices of the three GEMMs (conv1, conv2, conv3)."""
    a = weights.arch
    require_1x1_conv2(a)
    t1, t3 = a.f1 * a.f1, a.f3 * a.f3
    n1p, n2p = round_up(a.n1, 16), round_up(a.n2, 16)
    b1 = np.zeros((round_up(t1, 16), n1p), np.float32)
    b1[:t1, : a.n1] = weights.w1.reshape(t1, a.n1)
    b2 = np.zeros((n1p, n2p), np.float32)
    b2[: a.n1, : a.n2] = weights.w2.reshape(a.n1, a.n2)
    b3 = np.zeros((n2p, round_up(t3, 8)), np.float32)
    b3[: a.n2, :t3] = weights.w3.reshape(t3, a.n2).T  # B3[c][dy f3 + dx] = w3[dy][dx][c]
    return b1, b2, b3


def tensorcore_constants(weights: SRCNNWeights) -> dict[str, np.ndarray]:
    """Every ``__constant__`` of srcnn_fused_tc.cu, by name."""
    a = weights.arch
    b1, b2, b3 = gemm_matrices(weights)
    bias1 = np.zeros(round_up(a.n1, 16), np.float32)
    bias1[: a.n1] = weights.b1
    bias2 = np.zeros(round_up(a.n2, 16), np.float32)
    bias2[: a.n2] = weights.b2
    bicubic_w, bicubic_origin = bicubic_constants(weights.scale)
    return {
        "c_w1h": b_fragments(b1).reshape(-1),
        "c_w2h": b_fragments(b2).reshape(-1),
        "c_w3h": b_fragments(b3).reshape(-1),
        "c_b1": bias1,
        "c_b2": bias2,
        "c_b3": np.asarray(weights.b3, np.float32).reshape(1),
        "c_bicubic_weight": bicubic_w,
        "c_bicubic_origin": bicubic_origin,
    }


def compute_capability(device: Device) -> int | None:
    """The device's compute capability as an int (80 for 8.0), None if it does not say (the
    CPU harness)."""
    value = getattr(device, "compute_capability", None)
    return None if value is None else int(value)


def tensorcore_problem(device: Device) -> str | None:
    """None if the tensor-core kernel can run on this device, else why not."""
    cc = compute_capability(device)
    if cc is not None and cc < MIN_COMPUTE_CAPABILITY:
        return (
            f"the tensor-core mode needs compute capability 8.0 or newer (sm_80+: f16 "
            f"mma.m16n8k16); this GPU is {cc // 10}.{cc % 10}"
        )
    return None
