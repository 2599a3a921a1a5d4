"""Fused SRCNN on the CPU with Numba: polyphase bicubic + conv1 + conv2 + conv3 in one pass.

Work decomposition
------------------
The HR output is split into horizontal bands, one per thread (``prange``). A band walks its
rows top to bottom. For each HR row it computes, per pixel, conv1 + ReLU, conv2 + ReLU and
then conv3's *tap products*: g[k] = sum_c f2[c] * w3[k, c] for the f3 x f3 taps k (conv3 as a
GEMM, [pixels x n2] x [n2 x 25]), all while the pixel's features are in registers and L1.
The last f3 rows of products wait in a ring buffer, and conv3 for row Y, once row Y + r3
exists, is just the sum of 25 shifted products per pixel. Nothing is computed twice except
r3 rows at each band edge, and nothing touches memory but the LR input, the ring (5 x 25
floats per HR column: in L2 for narrow images, in L3 beyond ~1000 HR columns on a 512 KB
L2) and the output. Why products, not conv2 output, in the ring: conv3 straight
from a ring of 32 channels needs a vector load per multiply-add (it ran at a third of the
FMA peak); as a GEMM it runs like conv2, at the peak, and the remaining sum is 25 loads per
vector of W pixels.

Layout: phase planes
--------------------
conv1 is folded with the bicubic upscale (``srcnn_fast.polyphase``): an HR pixel X = s*j + q
reads a T x T window of LR pixels starting at column j + c_q through the filter of its row class
and column phase q. So for fixed q, W consecutive LR columns j are W HR pixels that share a
filter and read *contiguous* LR memory: they form one SIMD vector, and the weights are
broadcast. Window rows and columns whose folded weights are all exactly zero are skipped (at
x3 two of the three phases span 6 of the 7 LR taps: 18% of conv1). The ring keeps the same
"phase-planar" layout (plane q holds HR columns s*j + q), which conv3 reads with contiguous
loads too: HR column X + dx lives in plane (q + dx) mod s at index j + (q + dx) div s. Only
the final single-channel output is interleaved back to HR order.

Register blocking
-----------------
conv1, conv2 and conv3's products hold 2 pixel vectors x CHANNELS output channels (or taps)
of accumulators in SIMD registers across all T*T taps (conv1) or all input channels: per
step, 2 vector loads and CHANNELS broadcast weights feed 2 * CHANNELS FMAs; bias and ReLU are
applied on the way out. CHANNELS is 8 with AVX-512 (32 registers) and 4 with AVX2 (16
registers: 16 accumulators spilled there). Channel counts are padded with zero weights to a
multiple of the vector width, which is exact (a zero channel adds nothing); conv3's 25 taps
are blocks of CHANNELS and one single tap.

Sparse blocks
-------------
A trained SRCNN leaves most of its ReLU outputs at zero, in whole channels at a time: on
Set14 and on the benchmark plane about 60% of (block, conv1 channel) pairs and 30-45%
of conv2's are zero on every pixel of the block (many channels never fire on natural images).
(A block is 2 pixel vectors: 32 pixels with AVX-512, 16 with AVX2.) As conv1 (and conv2)
store a block, they list its channels that are non-zero somewhere, with one vector compare
per channel and no branch, and the next layer sums over those only. This is
exact: a channel left out would have added 0 * w = 0 to every sum, so the output is the
dense kernel's, value for value, and it saves about 60% of conv2 and 30% of the products.
(Skipping conv1 itself for channels that a cheap bound proves negative on the block was
tried: whole groups of 8 channels are rarely all negative outside flat regions.)

bfloat16
--------
With ``precision="bf16"`` (AVX512_BF16) the same code runs on pairs: conv1's LR input, its
folded weights, w2, w3 and the stored conv1 and conv2 outputs (by default: BF16_LAYERS) are
bfloat16, two values per 32-bit lane, and each multiply-add step is a
``vdpbf16ps`` (``srcnn_fast.backends.simd``), which does two multiply-adds per float32 lane:
conv1 pairs adjacent window columns (tj, tj + 1), conv2 and the products pair adjacent
input channels, so the register blocks, the sparse
blocks (listing live channel *pairs*) and the ring are unchanged and the accumulators stay
float32. The LR input is centred first (x - 0.5, conv1's bias adjusted: exact), which halves
its rounding error, and so are conv1's and conv2's outputs where they are stored as bf16
(each channel minus its mid-grey value, the next layer's bias adjusted; a pair of channels
with a non-zero centre is always listed as live, since its centred zeros are not zero). The
rounding points and a NumPy emulation of them: ``srcnn_fast.backends.bf16``. Border columns
use the same rounded values in float32.

conv1's steps
-------------
conv1 reads its window as a list of steps (``conv1_steps``), each one multiply-add of a pixel
vector by a broadcast weight lane: one tap (float32), a pair of taps in a row (bf16) or, in
int8, a quad of taps in a row, a column or a 2 x 2 square, read from the matching packed copy
of the LR plane. The LR plane is padded with edge rows, so a window is a single index and a
step an offset from it.

Border columns (HR X < r1 or X >= sW - r1) have their own folded filters (conv1's edge-
replicate padding); they are recomputed per pixel, vectorised over channels, after the main
pass. Border *rows* need nothing special: a whole row shares its row class.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload

from ..console import say
from ..errors import BackendError
from ..model import SRCNNWeights
from ..polyphase import axis_geometry, fold_conv1, phase_window_starts, window_size
from ..tiling import round_up
from . import int8
from .bf16 import (
    ALL_LAYERS,
    CENTRE,
    centred_bias,
    centred_biases,
    default_layers,
    round_bf16,
    rounded_by,
    rounded_centres,
)
from .conv1_steps import REACH, plan, planes_needed, step_offsets, step_weights
from .cpu_pixels import upscale_pixels
from .numba_cache import KERNEL_LOCK, cache_dir, cache_here, cache_restore
from .plans import PlanCache
from .simd import (
    W,
    bf16_problem,
    int8_problem,
    vadd,
    vany_positive,
    vbroadcast,
    vbroadcast_at,
    vdequant,
    vfma,
    vload,
    vmax,
    vor,
    vpack_bf16,
    vpack_u8,
    vrelu,
    vround_bf16,
    vround_u8,
    vshl8,
    vstore,
    vzero,
    vzero_for,
)
from .simd import vany_nonzero as _vany_nonzero

#: Register blocking of conv1, conv2 and conv3's products: VECTORS pixel vectors x CHANNELS
#: output channels (or taps) of accumulators, held in SIMD registers across a whole sum. It
#: must fit the register file beside the pixel vectors and the broadcast weights: AVX-512's
#: 32 zmm registers hold 2 x 8 = 16 accumulators; AVX2 has 16 ymm registers, where 2 x 8
#: spilled accumulators to the stack on every step (1.6x slower on a Zen 3 than 2 x 4; 3 x 4
#: was no faster than 2 x 4).
VECTORS, CHANNELS = 2, (8 if W >= 16 else 4)
#: Pixels per register block (one phase, consecutive LR columns): also the sparse-block size.
PIXELS = VECTORS * W


# Numba fixes a function's cache location when it is decorated; point it at our folder only
# while this module's kernels are defined (restored at the end of the module).
_saved_cache_dir = cache_here()


#: Numeric precisions of this backend (see "bfloat16" in the module docstring).
PRECISIONS = ("fp32", "bf16", "int8")


class _Net(NamedTuple):
    """The network's arrays (channels zero-padded to n1p, n2p) and sizes. In bf16 the float32
    arrays hold the bf16-rounded values (for the border columns) and the ``*_fast`` arrays the
    bf16 pairs the main pass reads; in fp32 the ``*_fast`` arrays are the float32 ones."""

    t_size: int
    n1p: int
    n2p: int
    f3: int
    b1: np.ndarray
    w2: np.ndarray  # [n1p][n2p]
    b2: np.ndarray
    s2: np.ndarray  # int8: conv2's per-channel scale (acc * s2 + b2); 1.0 otherwise
    nk: int  # conv3 taps, f3 * f3
    nkp: int  # nk padded to a multiple of CHANNELS
    w3: np.ndarray  # [n2p][nkp]: conv3 as a matrix from channels to taps
    b3: np.float32
    # Values per 32-bit lane of the inputs of conv1, conv2 and conv3's products: 1 (float32),
    # 2 (bf16 pairs: see ``bf16_layers``) or 4 (int8 quads: conv1 and conv2 in int8).
    pair1: int
    pair2: int
    pair3: int
    w2_fast: np.ndarray  # w2, or its [n1p / 2][n2p] uint32 pairs or [n1p / 4][n2p] int32 quads
    w3_fast: np.ndarray  # w3, or its [n2p / 2][nkp] uint32 pairs of input channels
    # Minus the centres of conv1's and conv2's outputs where they are stored as bf16 (else 0),
    # and per channel pair 1.0 where either centre is non-zero (the pair is always live).
    neg_c1: np.ndarray
    live_c1: np.ndarray
    neg_c2: np.ndarray
    live_c2: np.ndarray


class _Geometry(NamedTuple):
    """Everything that depends on the input size: padded LR copy, classes, folded conv1."""

    # lr_h + 2 row_pad rows of lr_stride floats: row_pad replicated rows above and below,
    # lr_pad replicated columns each side
    lr: np.ndarray
    lr_stride: int
    lr_pad: int
    row_pad: int
    lr_h: int
    lr_w: int
    scale: int
    k1: np.ndarray  # folded conv1 [row class][column class][T][T][n1p] (int8: the integers)
    b1: np.ndarray  # [row class * column classes + column class][n1p]: conv1's bias
    m1: np.ndarray  # the same for int8's scale of the integer sum (1.0 in float)
    # conv1's packed input (``conv1_steps``): lr, or uint32 pairs (lr[i], lr[i + 1]) in bf16,
    # or in int8 int32 quads, one plane of len(lr) per step shape (row, column, square)
    lr_fast: np.ndarray
    # int8: 2 with a 16-bit input (lr_fast: quads of its high bytes, lr_lo: of its low
    # bytes), else 1 (lr_lo unused)
    passes: int
    lr_lo: np.ndarray
    # conv1's steps (``conv1_steps``) of class c = row class * n_col_classes + column phase:
    # step_first[c] .. step_first[c + 1] - 1; each one's index in lr_fast relative to the
    # window's first pixel, and its weight lanes [step][n1p] (float32, bf16 pairs, int8 quads)
    step_first: np.ndarray
    step_src: np.ndarray
    k1_steps: np.ndarray
    n_col_classes: int
    row_class: np.ndarray
    row_base: np.ndarray
    row_span: np.ndarray  # [row class] -> [first, stop) window rows with non-zero weights
    col_class: np.ndarray
    col_base: np.ndarray
    col_span: np.ndarray
    col_interior: np.ndarray
    phase_col_base: np.ndarray  # window start - j for interior column s*j + q
    ring_plane: int  # floats per (ring row, conv3 tap, phase) plane
    ring_pad: int  # plane index of HR column 0's block
    tap_offsets: np.ndarray  # [phase q][tap k]: where conv3's tap k reads, in a ring slot


class _Scratch(NamedTuple):
    """Per-band buffers (first axis: band), allocated once per input size."""

    rings: np.ndarray  # [band][f3 rows][nk taps][scale planes][ring_plane]
    f1s: np.ndarray  # [band][n1p / pair][PIXELS]: float32, or uint32 bf16 channel pairs
    f2s: np.ndarray
    row_offs: np.ndarray
    pix1s: np.ndarray
    pix2s: np.ndarray
    pixgs: np.ndarray
    live1s: np.ndarray  # [band][n1p]: conv1 channels non-zero in the block
    live2s: np.ndarray  # [band][n2p]: conv2 channels non-zero in the block
    counts: np.ndarray  # [band][3]: blocks, live conv1 and conv2 channels summed over them
    rows: np.ndarray  # [band][scale planes][ring_plane]: one conv3 output row
    slot_offs: np.ndarray  # [band][f3]: the ring slots conv3 reads for the current row


class _BandScratch(NamedTuple):
    f1: np.ndarray
    f2: np.ndarray
    row_off: np.ndarray
    pix1: np.ndarray
    pix2: np.ndarray
    pixg: np.ndarray
    live1: np.ndarray
    live2: np.ndarray
    counts: np.ndarray


@njit(cache=True, inline="always")
def _clamp(i, lo, hi):
    return min(max(i, lo), hi)


@njit(cache=True, inline="always")
def _zero_2x8(x):
    z = vzero_for(x)
    return (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)


@njit(cache=True, inline="always")
def _fma_2x8(x, i, weights, k, acc):
    """One step of the 2 x 8 block: pixel vectors p0, p1 = x[i:i+W], x[i+W:i+2W] and weights
    w[k..k+7]: acc[c] += p0 * w[k + c], acc[8 + c] += p1 * w[k + c].

    Each broadcast weight feeds VECTORS FMAs, each pixel vector CHANNELS. The weights are
    consecutive: one base address per step (per-channel addresses, for an arbitrary set of
    channels, made LLVM spill pointers and cost more than they saved).
    """
    p0 = vload(x, i)
    p1 = vload(x, i + W)
    w0 = vbroadcast_at(weights, k)
    w1 = vbroadcast_at(weights, k + 1)
    w2 = vbroadcast_at(weights, k + 2)
    w3 = vbroadcast_at(weights, k + 3)
    w4 = vbroadcast_at(weights, k + 4)
    w5 = vbroadcast_at(weights, k + 5)
    w6 = vbroadcast_at(weights, k + 6)
    w7 = vbroadcast_at(weights, k + 7)
    return (
        vfma(p0, w0, acc[0]), vfma(p0, w1, acc[1]), vfma(p0, w2, acc[2]), vfma(p0, w3, acc[3]),
        vfma(p0, w4, acc[4]), vfma(p0, w5, acc[5]), vfma(p0, w6, acc[6]), vfma(p0, w7, acc[7]),
        vfma(p1, w0, acc[8]), vfma(p1, w1, acc[9]), vfma(p1, w2, acc[10]), vfma(p1, w3, acc[11]),
        vfma(p1, w4, acc[12]), vfma(p1, w5, acc[13]), vfma(p1, w6, acc[14]), vfma(p1, w7, acc[15]),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _zero_2x4(x):
    z = vzero_for(x)
    return (z, z, z, z, z, z, z, z)


@njit(cache=True, inline="always")
def _fma_2x4(x, i, weights, k, acc):
    """The 2 x 4 block's step (see :func:`_fma_2x8`)."""
    p0 = vload(x, i)
    p1 = vload(x, i + W)
    w0 = vbroadcast_at(weights, k)
    w1 = vbroadcast_at(weights, k + 1)
    w2 = vbroadcast_at(weights, k + 2)
    w3 = vbroadcast_at(weights, k + 3)
    return (
        vfma(p0, w0, acc[0]), vfma(p0, w1, acc[1]), vfma(p0, w2, acc[2]), vfma(p0, w3, acc[3]),
        vfma(p1, w0, acc[4]), vfma(p1, w1, acc[5]), vfma(p1, w2, acc[6]), vfma(p1, w3, acc[7]),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _shift_2x8(acc):
    """Each accumulator times 256 (int8's 16-bit input: the high bytes' sums)."""
    return (
        vshl8(acc[0]), vshl8(acc[1]), vshl8(acc[2]), vshl8(acc[3]),
        vshl8(acc[4]), vshl8(acc[5]), vshl8(acc[6]), vshl8(acc[7]),
        vshl8(acc[8]), vshl8(acc[9]), vshl8(acc[10]), vshl8(acc[11]),
        vshl8(acc[12]), vshl8(acc[13]), vshl8(acc[14]), vshl8(acc[15]),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _shift_2x4(acc):
    return (
        vshl8(acc[0]), vshl8(acc[1]), vshl8(acc[2]), vshl8(acc[3]),
        vshl8(acc[4]), vshl8(acc[5]), vshl8(acc[6]), vshl8(acc[7]),
    )  # fmt: skip


#: The block's zero accumulators, step and int8 shift, for this machine's shape (VECTORS x
#: CHANNELS).
_zero_block, _fma_block, _shift_block = (
    (_zero_2x8, _fma_2x8, _shift_2x8) if CHANNELS == 8 else (_zero_2x4, _fma_2x4, _shift_2x4)
)


def _store_block(out, cb, acc, bias, scale, live, count, neg_centre, live_floor):
    """Channels cb..cb+CHANNELS-1 of the block into ``out`` ([channel][PIXELS]).

    Stored as max(acc + bias, 0) (the layer's bias and ReLU, applied on the way out; an
    int32 accumulator is first taken to float32 as acc * scale + bias), and each
    channel that is non-zero on some pixel of the block is appended to ``live`` (from index
    ``count``; returns the new count): the next layer sums over those
    only (see "sparse blocks" in the module docstring). One compare per channel, no branch.
    A uint32 ``out`` ([channel pair][PIXELS]) gets bf16 pairs of channels centred by adding
    ``neg_centre``, and ``live`` the pairs with a non-zero value or a ``live_floor`` of 1
    (:func:`_store_pairs`; Numba picks by ``out``'s type). float32 channels are not centred.
    An int32 ``out`` ([channel quad][PIXELS]) gets uint8 quads (:func:`_store_quads`).
    """
    raise NotImplementedError("compiled only: see _store_block_for")


@overload(_store_block)
def _store_block_for(out, cb, acc, bias, scale, live, count, neg_centre, live_floor):
    if out.dtype == numba.types.int32:
        return _store_quads
    return _store_pairs if out.dtype == numba.types.uint32 else _store_floats


def _store_quads(out, cb, acc, bias, scale, live, count, neg_centre, live_floor):
    """:func:`_store_block` into uint8 quads of channels cb + c .. cb + c + 3: each
    round(acc * scale + bias) clamped to 0..255 (the clamp at 0 is the ReLU); ``live`` gets
    the quads with a non-zero value. (int8: ``scale`` and ``bias`` are the requantisation of
    ``backends.int8``.)"""
    for c in range(0, CHANNELS, 4):
        m0 = vbroadcast_at(scale, cb + c)
        m1 = vbroadcast_at(scale, cb + c + 1)
        m2 = vbroadcast_at(scale, cb + c + 2)
        m3 = vbroadcast_at(scale, cb + c + 3)
        o0 = vbroadcast_at(bias, cb + c)
        o1 = vbroadcast_at(bias, cb + c + 1)
        o2 = vbroadcast_at(bias, cb + c + 2)
        o3 = vbroadcast_at(bias, cb + c + 3)
        # VECTORS is 2 (the register block): written out, as a list would live on the heap.
        q0 = vpack_u8(
            vdequant(acc[c], m0, o0), vdequant(acc[c + 1], m1, o1),
            vdequant(acc[c + 2], m2, o2), vdequant(acc[c + 3], m3, o3),
        )  # fmt: skip
        i = CHANNELS + c
        q1 = vpack_u8(
            vdequant(acc[i], m0, o0), vdequant(acc[i + 1], m1, o1),
            vdequant(acc[i + 2], m2, o2), vdequant(acc[i + 3], m3, o3),
        )  # fmt: skip
        vstore(out, (cb + c) // 4 * PIXELS, q0)
        vstore(out, (cb + c) // 4 * PIXELS + W, q1)
        peak = vor(q0, q1)
        live[count] = (cb + c) // 4
        count += _vany_nonzero(peak)
    return count


def _store_pairs(out, cb, acc, bias, scale, live, count, neg_centre, live_floor):
    """:func:`_store_block` into bf16 pairs of channels (cb + c, cb + c + 1); always ReLU."""
    for c in range(0, CHANNELS, 2):
        b0 = vbroadcast_at(bias, cb + c)
        b1 = vbroadcast_at(bias, cb + c + 1)
        s0 = vbroadcast_at(scale, cb + c)
        s1 = vbroadcast_at(scale, cb + c + 1)
        n0 = vbroadcast_at(neg_centre, cb + c)
        n1 = vbroadcast_at(neg_centre, cb + c + 1)
        peak = vbroadcast_at(live_floor, (cb + c) // 2)
        for v in range(VECTORS):
            lo = vrelu(vdequant(acc[v * CHANNELS + c], s0, b0))
            hi = vrelu(vdequant(acc[v * CHANNELS + c + 1], s1, b1))
            peak = vmax(peak, vmax(lo, hi))
            vstore(out, (cb + c) // 2 * PIXELS + v * W, vpack_bf16(vadd(lo, n0), vadd(hi, n1)))
        live[count] = (cb + c) // 2
        count += vany_positive(peak)
    return count


def _store_floats(out, cb, acc, bias, scale, live, count, neg_centre, live_floor):
    """:func:`_store_block` into float32 channels."""
    for c in range(CHANNELS):
        b = vbroadcast_at(bias, cb + c)
        m = vbroadcast_at(scale, cb + c)
        peak = vzero()
        for v in range(VECTORS):
            value = vrelu(vdequant(acc[v * CHANNELS + c], m, b))
            peak = vmax(peak, value)
            vstore(out, (cb + c) * PIXELS + v * W, value)
        live[count] = cb + c  # kept only if it counts: no branch to mispredict
        count += vany_positive(peak)
    return count


@njit(cache=True, inline="always")
def _conv1_block(
    lr, lr_lo, passes, src, step_src, first, stop, k1, n1p, b1, m1, out, cb, live, n,
    neg_centre, live_floor,
):  # fmt: skip
    """conv1 + bias + ReLU for PIXELS pixels (one phase) and CHANNELS channels from ``cb``.

    ``src`` is the index in ``lr`` of the first LR pixel of the window of pixel 0 of the
    block; the steps ``first`` .. ``stop`` - 1 of its class (``conv1_steps``) each read the
    lanes at ``src + step_src[step]`` and multiply them by the weight lanes ``k1[step][cb:]``.
    ``b1`` and ``m1``: the bias (and int8 scale) of this row and column class. Appends the
    channels that are non-zero somewhere to ``live[n:]``; returns the new count.
    (``neg_centre``, ``live_floor``: :func:`_store_block`.) int8 with a 16-bit input
    (``passes`` = 2): the sums over the high bytes ``lr``, times 256, plus those over the low
    bytes ``lr_lo``: the sum over the 16-bit values, exactly.
    """
    acc = _conv1_sums(lr, src, step_src, first, stop, k1, n1p, cb, _zero_block(lr))
    if passes == 2:
        acc = _conv1_sums(lr_lo, src, step_src, first, stop, k1, n1p, cb, _shift_block(acc))
    return _store_block(out, cb, acc, b1, m1, live, n, neg_centre, live_floor)


@njit(cache=True, inline="always")
def _conv1_sums(x, src, step_src, first, stop, k1, n1p, cb, acc):
    """``acc`` plus the block's conv1 sums over the packed input ``x`` (:func:`_conv1_block`)."""
    k = first * n1p + cb
    for step in range(first, stop):
        acc = _fma_block(x, src + step_src[step], k1, k, acc)
        k += n1p
    return acc


@njit(cache=True, inline="always")
def _dot_block(x, w, inputs, n_in, n_out, cb, bias, scale, out, live, n, neg_centre, live_floor):
    """A 1x1 layer for PIXELS pixels and the CHANNELS outputs from ``cb``, summed over the
    input channels ``inputs[:n_in]`` of ``x`` ([channel][PIXELS]); then bias + ReLU.

    conv2 (``w`` = [n1p][n2p]). Inputs that are zero on every pixel of the block are left out
    of ``inputs``: they would add exactly nothing. The outputs that are non-zero somewhere go
    to ``live[n:]``; returns the new count. (``neg_centre``, ``live_floor``:
    :func:`_store_block`.)
    """
    acc = _sum_over_inputs(x, w, inputs, n_in, n_out, cb)
    return _store_block(out, cb, acc, bias, scale, live, n, neg_centre, live_floor)


@njit(cache=True, inline="always")
def _sum_over_inputs(x, w, inputs, n_in, n_out, cb):
    """The block's accumulators of a 1x1 layer's CHANNELS outputs from ``cb`` (``w``: [input]
    [n_out]), summed over the input channels ``inputs[:n_in]`` of ``x`` ([channel][PIXELS])."""
    acc = _zero_block(x)
    for idx in range(n_in):
        i = inputs[idx]
        acc = _fma_block(x, i * PIXELS, w, i * n_out + cb, acc)
    return acc


@njit(cache=True, inline="always")
def _products_block(f2, w3, inputs, n_in, nkp, cb, ring, base, stride):
    """conv3's products of CHANNELS taps from ``cb`` (``w3``: the [n2p][nkp] tap matrix) for
    PIXELS pixels, summed over the channels ``inputs[:n_in]`` of ``f2`` (as in
    :func:`_dot_block`), straight into the ring: tap k at ``ring[base + k * stride:]``."""
    acc = _sum_over_inputs(f2, w3, inputs, n_in, nkp, cb)
    for c in range(CHANNELS):
        for v in range(VECTORS):
            vstore(ring, base + (cb + c) * stride + v * W, acc[v * CHANNELS + c])


@njit(cache=True, inline="always")
def _tap_block(f2, w3, inputs, n_in, nkp, k, ring, base, stride):
    """conv3's product for one tap ``k`` and the block's PIXELS pixels: the tap left over
    after blocks of CHANNELS (25 = 3 x 8 + 1, or 6 x 4 + 1), over the channels
    ``inputs[:n_in]``. One chain per pixel vector, in channel order: splitting the sum over
    the *listed* channels would group it differently for every set of zero channels, and
    tiles would no longer match the whole image bit for bit. The two vectors' chains are
    interleaved, so each FMA waits on its own chain only. (In bf16, ``inputs`` are channel
    pairs, as in :func:`_dot_block`.)"""
    a = vzero()
    b = vzero()
    for idx in range(n_in):
        c = inputs[idx]
        w = vbroadcast_at(w3, c * nkp + k)
        a = vfma(vload(f2, c * PIXELS), w, a)
        b = vfma(vload(f2, c * PIXELS + W), w, b)
    vstore(ring, base + k * stride, a)
    vstore(ring, base + k * stride + W, b)


#: The row kernels allocate nothing and only borrow arrays that ``_forward``'s caller holds, so
#: they are compiled without reference counting (``_nrt=False``). With it, every array argument
#: of an inlined block function was an atomic increment and decrement per block of 8 channels,
#: each a call that spilled the 16 accumulators to the stack: int8 ran 19% and bf16 9% slower
#: (640x360 x3, Zen 4).
ROW_KERNEL = {"cache": True, "_nrt": False}


@njit(**ROW_KERNEL)
def _g_row(y, net, geo, ring, slot, scratch):
    """conv3's tap products of HR row ``y``, all columns, into ring slot ``slot``.

    Per pixel: conv1 + ReLU, conv2 + ReLU, then g[k] = sum_c f2[c] * w3[k, c] for each of the
    f3 * f3 taps k, so that conv3 later only adds 25 shifted values per output pixel.
    """
    n1p, n2p, nk, nkp, scale = net.n1p, net.n2p, net.nk, net.nkp, geo.scale
    lr, k1 = geo.lr_fast, geo.k1_steps
    f1, f2 = scratch.f1, scratch.f2
    live1, live2, counts = scratch.live1, scratch.live2, scratch.counts
    ring_plane, ring_pad = geo.ring_plane, geo.ring_pad
    rc = geo.row_class[y]
    # The padded rows repeat the edge rows, so the main pass reads window row ti as row
    # rb + ti of the padded plane, unclamped: one index for the whole window.
    window = (geo.row_base[y] + geo.row_pad) * geo.lr_stride + geo.lr_pad
    # (The arrays the main pass reads, bound once.)
    lr_lo, passes, step_first, step_src = geo.lr_lo, geo.passes, geo.step_first, geo.step_src
    w2, b2, s2, w3 = net.w2_fast, net.b2, net.s2, net.w3_fast
    neg_c1, live_c1, neg_c2, live_c2 = net.neg_c1, net.live_c1, net.neg_c2, net.live_c2
    blocked = nk - nk % CHANNELS
    tap_stride = scale * ring_plane  # from one tap's products to the next in a ring slot
    # Main pass: every column as if interior, PIXELS pixels of one phase at a time.
    for q in range(scale):
        cls = rc * geo.n_col_classes + q
        first, stop = step_first[cls], step_first[cls + 1]
        b1 = geo.b1[cls]
        m1 = geo.m1[cls]
        for j0 in range(0, geo.lr_w, PIXELS):
            src = window + j0 + geo.phase_col_base[q]
            # conv2 and the products sum only over the channels that are non-zero somewhere
            # in the block (see the module docstring: sparse blocks).
            n_live1 = 0
            for cb in range(0, n1p, CHANNELS):
                n_live1 = _conv1_block(
                    lr, lr_lo, passes, src, step_src, first, stop, k1, n1p, b1, m1, f1, cb,
                    live1, n_live1, neg_c1, live_c1,
                )  # fmt: skip
            n_live2 = 0
            for cb in range(0, n2p, CHANNELS):
                n_live2 = _dot_block(
                    f1, w2, live1, n_live1, n2p, cb, b2, s2, f2, live2, n_live2, neg_c2, live_c2
                )
            # The products go straight into the ring: tap k of this block's pixels at
            # ring[base + k * tap_stride:] (a copy through a scratch block cost ~1%).
            base = (slot * nk * scale + q) * ring_plane + ring_pad + j0
            for cb in range(0, blocked, CHANNELS):
                _products_block(f2, w3, live2, n_live2, nkp, cb, ring, base, tap_stride)
            for k in range(blocked, nk):
                _tap_block(f2, w3, live2, n_live2, nkp, k, ring, base, tap_stride)
            counts[0] += 1
            counts[1] += n_live1
            counts[2] += n_live2
    # Border columns: their own folded filters (:func:`_border_columns`).
    _border_columns(
        y, net, geo, ring, slot, scratch.row_off, scratch.pix1, scratch.pix2, scratch.pixg
    )


@njit(cache=True, inline="always")
def _border_columns(y, net, geo, ring, slot, row_off, pix1, pix2, pixg):
    """conv3's tap products of HR row ``y``'s border columns (X < r1 or X >= sW - r1, those
    not ``geo.col_interior``) into ring slot ``slot``: each one's own folded conv1 filter
    (conv1's edge-replicate padding), one pixel at a time, vectorised over channels.

    In bf16 the arrays hold the rounded values and conv1's and conv2's outputs are centred
    and rounded here where the main pass stores them as bf16; int8 rounds conv1's output to
    0..255 (``net.pair1`` = 4): the main pass's arithmetic in float32. ``row_off``, ``pix1``,
    ``pix2``, ``pixg``: scratch of T, n1p, n2p and nkp elements. Shared with the AMX kernel
    (``cpu_amx``), whose plan has the fields of ``net`` and ``geo`` this reads: ``geo.lr``
    (the LR plane, lr_h + 2 row_pad rows of lr_stride values), ``geo.k1`` ([row class][column
    class][T][T][n1p]), ``geo.b1`` and ``geo.m1`` ([class][n1p]), the column geometry and
    ``net``'s padded w2 ([n1p][n2p]), s2, b2, w3 ([n2p][nkp]), centres and pair flags."""
    t_size, n1p, n2p, nk, nkp, scale = net.t_size, net.n1p, net.n2p, net.nk, net.nkp, geo.scale
    ring_plane, ring_pad = geo.ring_plane, geo.ring_pad
    rc = geo.row_class[y]
    rows = geo.row_span[rc]
    for ti in range(t_size):
        row = _clamp(geo.row_base[y] + ti, 0, geo.lr_h - 1) + geo.row_pad
        row_off[ti] = row * geo.lr_stride + geo.lr_pad
    lr, k1 = geo.lr, geo.k1
    for x in range(geo.lr_w * scale):
        if geo.col_interior[x]:
            continue
        cc = geo.col_class[x]
        kx = (rc * geo.n_col_classes + cc) * t_size * t_size * n1p
        b1 = geo.b1[rc * geo.n_col_classes + cc]
        m1 = geo.m1[rc * geo.n_col_classes + cc]
        for cv in range(0, n1p, W):
            acc = vzero()
            for ti in range(rows[0], rows[1]):
                for tj in range(geo.col_span[cc, 0], geo.col_span[cc, 1]):
                    xs = _clamp(geo.col_base[x] + tj, 0, geo.lr_w - 1)
                    v = vbroadcast(lr[row_off[ti] + xs])
                    acc = vfma(v, vload(k1, kx + (ti * t_size + tj) * n1p + cv), acc)
            value = vfma(acc, vload(m1, cv), vload(b1, cv))
            # int8: the activation's rounding to 0..255 (its clamp at 0 is the ReLU)
            value = vround_u8(value) if net.pair1 == 4 else vrelu(value)
            if net.pair2 == 2:
                value = vround_bf16(vadd(value, vload(net.neg_c1, cv)))
            vstore(pix1, cv, value)
        for cv in range(0, n2p, W):
            acc = vzero()
            for i in range(n1p):
                acc = vfma(vbroadcast(pix1[i]), vload(net.w2, i * n2p + cv), acc)
            value = vrelu(vfma(acc, vload(net.s2, cv), vload(net.b2, cv)))
            if net.pair3 == 2:
                value = vround_bf16(vadd(value, vload(net.neg_c2, cv)))
            vstore(pix2, cv, value)
        for kv in range(0, nkp, W):
            acc = vzero()
            for c in range(n2p):
                acc = vfma(vbroadcast(pix2[c]), vload(net.w3, c * nkp + kv), acc)
            vstore(pixg, kv, acc)
        j, q = divmod(x, scale)
        for k in range(nk):
            ring[((slot * nk + k) * scale + q) * ring_plane + ring_pad + j] = pixg[k]


@njit(**ROW_KERNEL)
def _fill_halo(ring, slot, nk, scale, ring_plane, ring_pad, n_hr, r3):
    """HR columns -r3..-1 and n_hr..n_hr+r3-1 of a ring row: copies of the edge columns
    (conv2's edge-replicate padding for conv3; g is a function of each pixel's f2)."""
    for c in range(nk):
        plane0 = (slot * nk + c) * scale
        first = ring[plane0 * ring_plane + ring_pad]
        j_last, q_last = divmod(n_hr - 1, scale)
        last = ring[(plane0 + q_last) * ring_plane + ring_pad + j_last]
        for d in range(1, r3 + 1):
            j, q = divmod(-d, scale)
            ring[(plane0 + q) * ring_plane + ring_pad + j] = first
            j, q = divmod(n_hr - 1 + d, scale)
            ring[(plane0 + q) * ring_plane + ring_pad + j] = last


@njit(**ROW_KERNEL)
def _conv3_row(y, net, geo, ring, row, slot_offs, out):
    """conv3 of HR row ``y`` into ``out[y]``: the sum of tap k's product g_k at the pixel that
    tap reads (rows clamped and halo columns copied: edge replicate), k in row-major order.

    The ring holds the products in phase-planar rows, so HR column X + dx of phase plane q
    is plane (q + dx) mod s at index j + (q + dx) div s: one unaligned vector load per tap, at
    an offset precomputed per (phase, tap) (``geo.tap_offsets``) plus one per ring row
    (``slot_offs``, filled here). ``row`` (phase-planar, like a ring plane row) collects the
    sums before they are interleaved back to HR order.
    """
    f3, nk, scale, lr_w = net.f3, net.nk, geo.scale, geo.lr_w
    ring_plane, n_hr_rows = geo.ring_plane, geo.lr_h * geo.scale
    r3 = (f3 - 1) // 2
    for dy in range(f3):
        slot_offs[dy] = (_clamp(y + dy - r3, 0, n_hr_rows - 1) % f3) * nk * scale * ring_plane
    b3 = vbroadcast(net.b3)
    for q in range(scale):
        taps = geo.tap_offsets[q]
        for j0 in range(0, lr_w, W):
            acc = vzero()
            k = 0
            for dy in range(f3):
                base = slot_offs[dy] + j0
                for _ in range(f3):
                    acc = vadd(acc, vload(ring, base + taps[k]))
                    k += 1
            vstore(row, q * ring_plane + j0, vadd(acc, b3))
    for q in range(scale):
        for j in range(lr_w):
            out[y, j * scale + q] = row[q * ring_plane + j]


@njit(parallel=True, cache=True)
def _forward(net, geo, scratch, out):
    """The whole network into ``out``: one band of rows per thread (see the module doc)."""
    n_rows = geo.lr_h * geo.scale
    r3 = (net.f3 - 1) // 2
    bands = scratch.rings.shape[0]
    for band in prange(bands):
        y0 = band * n_rows // bands
        y1 = (band + 1) * n_rows // bands
        if y0 >= y1:
            continue
        mine = _BandScratch(
            scratch.f1s[band], scratch.f2s[band], scratch.row_offs[band],
            scratch.pix1s[band], scratch.pix2s[band], scratch.pixgs[band],
            scratch.live1s[band], scratch.live2s[band], scratch.counts[band],
        )  # fmt: skip
        ring = scratch.rings[band]
        nxt = max(y0 - r3, 0)
        for y in range(y0, y1):
            need = min(y + r3, n_rows - 1)
            while nxt <= need:
                _g_row(nxt, net, geo, ring, nxt % net.f3, mine)
                _fill_halo(ring, nxt % net.f3, net.nk, geo.scale, geo.ring_plane,
                           geo.ring_pad, geo.lr_w * geo.scale, r3)  # fmt: skip
                nxt += 1
            _conv3_row(y, net, geo, ring, scratch.rows[band], scratch.slot_offs[band], out)


@njit(parallel=True, cache=True)
def _pad_lr(luma, lr, lr_stride, lr_pad, row_pad):
    """Copy the LR plane into ``lr`` with ``lr_pad`` edge-replicated columns each side and
    ``row_pad`` edge-replicated rows above and below."""
    h, w = luma.shape
    for r in prange(h + 2 * row_pad):
        base = r * lr_stride
        row = min(max(r - row_pad, 0), h - 1)
        for c in range(lr_stride):
            lr[base + c] = luma[row, min(max(c - lr_pad, 0), w - 1)]


@njit(cache=True, inline="always")
def _bf16_rounded(bits):
    """A float32's bits rounded to the nearest bf16, low 16 bits cleared: ``bf16.round_bf16``'s
    rule (nearest, ties to even, in the bits; finite values)."""
    return (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000


@njit(cache=True, inline="always")
def _quantised(value, top):
    """int8's input rule (``int8.quantise_input`` on the integer scale): round(top * value)
    clamped to 0..top, ties to even, the product in float64."""
    return min(max(np.rint(np.float64(value) * top), 0.0), top)


@njit(cache=True)
def _centre_and_pair(lr, pairs, centre):
    """bf16 input of conv1 (see ``bf16.py``): ``lr`` becomes round_bf16(lr - centre) (the same
    rule as ``bf16.round_bf16``: nearest, ties to even, in the bits) and ``pairs[i]`` holds
    (lr[i], lr[i + 1]) as bf16 halves. One pass each, vectorised by LLVM: ~10x faster than
    NumPy's temporaries, which cost ~7% of a bf16 call at 640x360."""
    n = lr.size
    for i in range(n):
        lr[i] -= centre
    bits = lr.view(np.uint32)
    for i in range(n):
        bits[i] = _bf16_rounded(bits[i])
    for i in range(n - 1):
        pairs[i] = (bits[i] >> 16) | (bits[i + 1] & 0xFFFF0000)
    pairs[n - 1] = bits[n - 1] >> 16


@njit(parallel=True, cache=True)
def _quantise_and_quad(lr, quads, quads_lo, passes, stride):
    """int8 input of conv1 (see ``int8.py``): ``lr`` (rows of ``stride``) becomes round(top *
    lr) clamped to 0..top, top = 255 (8-bit input, ``passes`` = 1) or 255 * 256 (16-bit, 2),
    ties to even, the product in float64 as ``int8.quantise_input``; ``quads`` gets its
    lanes (:func:`_quad_planes`) of the high bytes with a 16-bit input, whose low bytes go to
    ``quads_lo``. Rows in parallel."""
    n = lr.size
    rows = n // stride
    reach = REACH * stride + 4  # the furthest a lane reads: REACH rows down, one quad right
    high = np.zeros(n + reach, np.uint8)  # 0 past the end
    low = np.zeros(n + reach if passes == 2 else 0, np.uint8)
    top = 255.0 if passes == 1 else 255.0 * 256.0
    shift = 0 if passes == 1 else 8
    for r in prange(rows):
        for i in range(r * stride, (r + 1) * stride):
            value = _quantised(lr[i], top)
            lr[i] = value
            high[i] = np.uint8(np.int32(value) >> shift)
            if passes == 2:
                low[i] = np.uint8(np.int32(value) & 0xFF)
    planes = quads.size // n
    for r in prange(rows):
        _quad_planes(high, quads, planes, n, stride, r)
        if passes == 2:
            _quad_planes(low, quads_lo, planes, n, stride, r)


@njit(cache=True, inline="always")
def _quad_planes(values, quads, planes, n, stride, r):
    """Row ``r`` of each plane of int8 lanes (``conv1_steps``'s shapes, written out: LLVM
    vectorises constant offsets, not offsets read from an array, 10x slower): at i, plane 0
    (ROW) holds the bytes values[i + (0, 1, 2, 3)], plane 1 (COLUMN) values[i + (0, 1, 2, 3)
    * stride], plane 2 (SQUARE) values[i + (0, 1, stride, stride + 1)], the first in the
    lowest byte. ``values`` runs at least 3 rows and 4 values past the last lane."""
    start = r * stride
    v = values[start : start + 4 * stride + 4]  # (slices of the row: vectorised, 14x faster)
    row = quads[start : start + stride]
    for i in range(stride):
        row[i] = _bytes(v[i], v[i + 1], v[i + 2], v[i + 3])
    if planes > 1:
        column = quads[n + start : n + start + stride]
        for i in range(stride):
            column[i] = _bytes(v[i], v[i + stride], v[i + 2 * stride], v[i + 3 * stride])
    if planes > 2:
        square = quads[2 * n + start : 2 * n + start + stride]
        for i in range(stride):
            square[i] = _bytes(v[i], v[i + 1], v[i + stride], v[i + stride + 1])


@njit(cache=True, inline="always")
def _bytes(a, b, c, d):
    """Four bytes as one int32 lane, a in the lowest."""
    return np.int32(
        np.uint32(a) | (np.uint32(b) << 8) | (np.uint32(c) << 16) | (np.uint32(d) << 24)
    )


cache_restore(_saved_cache_dir)


#: Scratch dtype of a layer's input, by values per lane: float32, uint32 bf16 pairs or int32
#: int8 quads.
_DTYPES = {1: np.float32, 2: np.uint32, 4: np.int32}


def _pairs(array: np.ndarray, axis: int) -> np.ndarray:
    """bf16 pairs along ``axis`` of a float32 array already rounded to bf16: element i of the
    result (uint32) holds element i in its low half and element i + 1 in its high half (0
    past the end), the order ``vdpbf16ps`` multiplies in."""
    bits = np.moveaxis(np.ascontiguousarray(array, np.float32), axis, -1).view(np.uint32)
    nxt = np.zeros_like(bits)
    nxt[..., :-1] = bits[..., 1:]
    return np.ascontiguousarray(np.moveaxis((bits >> 16) | (nxt & 0xFFFF0000), -1, axis))


def _quads(array: np.ndarray, axis: int) -> np.ndarray:
    """int8 quads along ``axis`` of a float32 array of integers in -128..255: element i of the
    result (int32) holds elements i .. i + 3 as bytes, the lowest first (0 past the end), the
    order ``vpdpbusd`` multiplies in."""
    values = np.moveaxis(np.asarray(array), axis, -1).astype(np.int64) & 0xFF
    quad = np.zeros(values.shape, np.int64)
    for k in range(4):
        shifted = np.zeros_like(values)
        shifted[..., : values.shape[-1] - k] = values[..., k:]
        quad |= shifted << (8 * k)
    return np.ascontiguousarray(np.moveaxis(quad.astype(np.uint32).view(np.int32), -1, axis))


def _channel_quads(matrix: np.ndarray) -> np.ndarray:
    """[n_in][n_out] integers -> [n_in / 4][n_out] int32 quads of inputs."""
    return _quads(matrix, 0)[::4].reshape(-1)


def _channel_pairs(matrix: np.ndarray) -> np.ndarray:
    """[n_in][n_out] float32 (rounded to bf16) -> [n_in / 2][n_out] uint32 pairs of inputs."""
    return _pairs(matrix, 0)[::2].reshape(-1)


def _pair_any(values: np.ndarray) -> np.ndarray:
    """Per pair of channels (2i, 2i + 1): 1.0 where either value is non-zero, else 0.0."""
    return (values.reshape(-1, 2) != 0).any(axis=1).astype(np.float32)


def _tap_offsets(scale: int, f3: int, ring_plane: int, ring_pad: int) -> np.ndarray:
    """[phase q][tap k = dy * f3 + dx] -> offset in a ring slot of the product that conv3's
    tap k reads for output phase q: HR column X + dx - r3 of plane q lives in plane
    (q + dx - r3) mod s, at LR index j + (q + dx - r3) div s."""
    r3 = (f3 - 1) // 2
    offsets = np.empty((scale, f3 * f3), np.int64)
    for q in range(scale):
        for dy in range(f3):
            for dx in range(f3):
                o = q + dx - r3
                plane, jo = o % scale, o // scale
                k = dy * f3 + dx
                offsets[q, k] = (k * scale + plane) * ring_plane + ring_pad + jo
    return offsets


def is_cached() -> bool:
    """Whether the fused kernel and the pixel kernels around it were compiled for this machine
    before (their index files exist; one index holds every signature compiled so far, so a
    first image of another dtype can still compile the pixel kernels silently, ~2 s)."""
    folder = cache_dir()
    return any(folder.rglob("*_forward*.nbi")) and any(folder.rglob("cpu_pixels.*.nbi"))


def amx_problem(precision: str, weights: SRCNNWeights) -> str | None:
    """None where the AMX tile kernel (cpu_amx.py) runs ``precision`` for ``weights`` on this
    CPU and OS, else why not (one line)."""
    from . import cpu_amx  # it builds on this module's kernels: imported once both exist

    return cpu_amx.amx_available(precision) or cpu_amx.unsupported(weights) or cpu_amx.amx_enabled()


class CpuBackend:
    """Fused Numba backend (see the module docstring). Buffers are cached per input size.

    Safe to call from several threads: calls run one after another.
    """

    name = "cpu"
    _announced = False  # the first-compile message is printed once per process

    def __init__(
        self,
        weights: SRCNNWeights,
        threads: int | None = None,
        precision: str = "fp32",
        bf16_layers: frozenset[str] | None = None,
        int8_params: int8.Int8Params | None = None,
    ) -> None:
        arch = weights.arch
        self.weights = weights
        if precision not in PRECISIONS:
            raise BackendError(
                f"the cpu backend has no precision {precision!r} (choose from "
                f"{', '.join(PRECISIONS)})"
            )
        self.precision = precision
        bf16 = precision == "bf16"
        # Which layers run in bf16 (``bf16_layers``: names from ``bf16.LAYERS``; by default
        # those that keep this scale within 0.01 dB: ``bf16.default_layers``); conv1 always
        # does in bf16, or nothing would.
        if bf16_layers is None:
            bf16_layers = default_layers(weights.scale)
        self.bf16_layers = frozenset({"conv1"} | set(bf16_layers)) if bf16 else frozenset()
        pair1, pair2, pair3 = (
            2 if layer in self.bf16_layers else 1 for layer in ("conv1", "conv2", "conv3")
        )
        if bf16 and bf16_problem() is not None:
            raise BackendError(bf16_problem())
        quantised = precision == "int8"
        if quantised:
            if int8_problem() is not None:
                raise BackendError(int8_problem())
            # conv1 and conv2 in int8; conv3's products in bf16 where the CPU has it (the
            # faster of the two, where it keeps within the accuracy bar: int8.conv3_in_bf16),
            # else float32.
            conv3_bf16 = int8.conv3_in_bf16(weights.scale) and bf16_problem() is None
            self.bf16_layers = frozenset({"conv3"}) if conv3_bf16 else frozenset()
            pair1, pair2, pair3 = 4, 4, 2 if conv3_bf16 else 1
        # The fused kernel keeps conv2 per pixel, so it needs a 1x1 conv2 (every SRCNN in the
        # papers but 9-5-5/9-3-5). Others take the general path: the NumPy reference.
        self._general = None
        if arch.f2 != 1 and precision != "fp32":
            raise BackendError(
                f"precision {precision} needs a 1x1 conv2 (the fused kernel); this model's "
                f"conv2 is {arch.f2}x{arch.f2}"
            )
        if arch.f2 != 1:
            from .reference import ReferenceBackend

            self._general = ReferenceBackend(weights)
            return
        if quantised:
            # The weights' own calibration (a WeightsError naming the file if they have none).
            if int8_params is None:
                int8_params = int8.params_for(weights)
            weights = int8.network_weights(weights, int8_params)  # its refitted conv3
        self.scale = weights.scale
        self.threads = threads or numba.get_num_threads()
        n1p = round_up(arch.n1, max(W, CHANNELS))
        n2p = round_up(arch.n2, max(W, CHANNELS))
        nk = arch.f3 * arch.f3
        nkp = round_up(nk, max(W, CHANNELS))

        def padded(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            out = np.zeros(shape, np.float32)
            out[tuple(slice(0, n) for n in array.shape)] = array
            return out

        # bf16 rounds the weights and centres conv1's input (adjusting b1) and the outputs
        # it stores as bf16 (adjusting b2, b3): see bf16.py.
        self.w1 = padded(weights.w1, (arch.f1, arch.f1, 1, n1p))
        w2 = padded(weights.w2[0, 0], (n1p, n2p))
        # [channel][tap]: taps in row-major (dy, dx) order, as _conv3_row adds them.
        w3 = padded(weights.w3[:, :, :, 0].reshape(nk, arch.n2).T, (n2p, nkp))
        w2 = round_bf16(w2) if pair2 == 2 else w2
        w3 = round_bf16(w3) if pair3 == 2 else w3
        b1 = centred_bias(weights.w1, weights.b1) if bf16 else weights.b1
        c1, c2 = rounded_centres(weights, rounded_by(self.bf16_layers))
        b2, b3 = centred_biases(weights, c1, c2)
        neg_c1, neg_c2 = padded(-c1, (n1p,)), padded(-c2, (n2p,))
        s2 = np.ones(n2p, np.float32)
        self._int8 = None
        if quantised:
            # Padded channels: zero weights and biases, any scale (1.0) keep them at zero.
            p = int8_params
            self._int8 = p._replace(
                s1=padded(p.s1, (n1p,)) + (np.arange(n1p) >= arch.n1),
                step1=padded(p.step1, (n1p,)) + (np.arange(n1p) >= arch.n1),
            )
            w2 = padded(p.w2q, (n1p, n2p))
            s2 = padded(p.s2, (n2p,))
            b2 = p.b2
        self.net = _Net(
            t_size=window_size(self.scale, (arch.f1 - 1) // 2),
            n1p=n1p,
            n2p=n2p,
            f3=arch.f3,
            b1=padded(b1, (n1p,)),
            w2=w2.reshape(-1),
            b2=padded(b2, (n2p,)),
            s2=s2,
            nk=nk,
            nkp=nkp,
            w3=w3.reshape(-1),
            b3=b3,
            pair1=pair1,
            pair2=pair2,
            pair3=pair3,
            w2_fast={1: w2.reshape(-1), 2: _channel_pairs(w2), 4: _channel_quads(w2)}[pair2],
            w3_fast=_channel_pairs(w3) if pair3 == 2 else w3.reshape(-1),
            neg_c1=neg_c1,
            live_c1=_pair_any(neg_c1),
            neg_c2=neg_c2,
            live_c2=_pair_any(neg_c2),
        )
        self._plans: PlanCache = PlanCache()
        # Intel AMX tiles run int8, and bf16 where all three layers are in bf16 (the tile
        # kernel rounds every layer), when the CPU and the OS allow them (cpu_amx.py).
        self._amx = None
        # (The tile kernel runs int8's conv3 in bf16: only at the scales that do.)
        tiles = self.bf16_layers == ALL_LAYERS or (quantised and conv3_bf16)
        if tiles and amx_problem(precision, weights) is None:
            from .cpu_amx import AmxBackend

            self._amx = AmxBackend(weights, precision, int8_params, self.threads)

    def _plan(self, h: int, w: int) -> tuple[_Geometry, _Scratch]:
        """Geometry, folded weights and scratch buffers for an h x w input (cached)."""
        return self._plans.get_or_build((h, w), lambda: self._build_plan(h, w))

    def _build_plan(self, h: int, w: int) -> tuple[_Geometry, _Scratch]:
        s, net, arch = self.scale, self.net, self.weights.arch
        t = net.t_size
        rows = axis_geometry(h, s, arch.f1)
        cols = axis_geometry(w, s, arch.f1)
        k1 = fold_conv1(self.w1, rows, cols)  # (rc, cc, t, t, n1p)
        bf16 = net.pair1 == 2
        classes = k1.shape[0] * k1.shape[1]
        b1 = np.broadcast_to(net.b1, (classes, net.n1p))
        m1 = np.ones((classes, net.n1p), np.float32)
        if bf16:
            k1 = round_bf16(k1)
        if self._int8 is not None:  # the integers, and each class's rescaling (int8.py)
            k1, m1, b1 = int8.conv1_tables(k1, net.b1, self._int8)
            k1 = k1.astype(np.float32)
            # A 16-bit input's sums are 256 times the 8-bit scale's (exact: a power of two).
            m1 = m1 / np.float32(2 ** (self._int8.input_bits - 8))
        # int8 with a 16-bit input: two passes over conv1 (high bytes, then low bytes).
        passes = 2 if self._int8 is not None and self._int8.input_bits == 16 else 1
        width_blocks = round_up(w, PIXELS)
        lr_pad = t + 2
        lr_stride = lr_pad + width_blocks + t + PIXELS + 2
        # Rows enough for every window of the main pass, unclamped, and its steps' reach.
        row_pad = max(0, -int(rows.base.min()), int(rows.base.max()) + t + REACH - h)
        plane = (h + 2 * row_pad) * lr_stride
        # conv1's steps (conv1_steps) for the main pass's classes: the interior column phases.
        rc_cc = [(rc, cc) for rc in range(k1.shape[0]) for cc in range(k1.shape[1])]
        plans = [
            plan(tuple(rows.spans[rc]), tuple(cols.spans[cc]), net.pair1) if cc < s else []
            for rc, cc in rc_cc
        ]
        steps = [step for steps in plans for step in steps]
        lanes = np.concatenate(
            [step_weights(k1[c], p, net.pair1) for c, p in zip(rc_cc, plans, strict=True)]
        )  # (steps, pack, n1p)
        if net.pair1 > 1:  # each step's values as one lane: a bf16 pair or an int8 quad
            lanes = (_pairs if net.pair1 == 2 else _quads)(lanes, 1)
        k1_steps = lanes[:, 0]
        planes = planes_needed(plans)
        lr_fast = {1: None, 2: np.uint32, 4: np.int32}[net.pair1]
        r3 = (arch.f3 - 1) // 2
        ring_pad = r3 // s + 2
        ring_plane = ring_pad + width_blocks + ring_pad + W
        bands = max(1, min(self.threads, h * s))
        lr = np.empty(plane, np.float32)
        geometry = _Geometry(
            lr=lr,
            lr_stride=lr_stride,
            lr_pad=lr_pad,
            row_pad=row_pad,
            lr_h=h,
            lr_w=w,
            scale=s,
            k1=k1.reshape(-1),
            b1=np.ascontiguousarray(b1.reshape(classes, net.n1p), np.float32),
            m1=np.ascontiguousarray(m1.reshape(classes, net.n1p), np.float32),
            lr_fast=lr if lr_fast is None else np.empty(planes * plane, lr_fast),
            passes=passes,
            # (the type of lr_fast in every precision: one kernel signature)
            lr_lo=np.empty(planes * plane if passes == 2 else 1, lr_fast or np.float32),
            step_first=np.cumsum([0] + [len(p) for p in plans]).astype(np.int64),
            step_src=step_offsets(steps, lr_stride, plane),
            k1_steps=np.ascontiguousarray(k1_steps).reshape(-1),
            n_col_classes=k1.shape[1],
            row_class=rows.classes,
            row_base=rows.base,
            row_span=rows.spans,
            col_class=cols.classes,
            col_base=cols.base,
            col_span=cols.spans,
            col_interior=cols.interior,
            phase_col_base=phase_window_starts(s, arch.f1),
            ring_plane=ring_plane,
            ring_pad=ring_pad,
            tap_offsets=_tap_offsets(s, arch.f3, ring_plane, ring_pad),
        )
        scratch = _Scratch(
            rings=np.zeros((bands, arch.f3 * net.nk * s * ring_plane), np.float32),
            f1s=np.zeros((bands, net.n1p * PIXELS // net.pair2), _DTYPES[net.pair2]),
            f2s=np.zeros((bands, net.n2p * PIXELS // net.pair3), _DTYPES[net.pair3]),
            row_offs=np.zeros((bands, t), np.int64),
            pix1s=np.zeros((bands, net.n1p), np.float32),
            pix2s=np.zeros((bands, net.n2p), np.float32),
            pixgs=np.zeros((bands, net.nkp), np.float32),
            live1s=np.zeros((bands, net.n1p), np.int64),
            live2s=np.zeros((bands, net.n2p), np.int64),
            counts=np.zeros((bands, 3), np.int64),
            rows=np.zeros((bands, s * ring_plane), np.float32),
            slot_offs=np.zeros((bands, arch.f3), np.int64),
        )
        return geometry, scratch

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 LR luma -> (sH, sW) float32 network output."""
        if self._general is not None:
            return self._general.upscale_luma(luma)
        if self._amx is not None:
            return self._amx.upscale_luma(luma)
        luma = np.ascontiguousarray(luma, dtype=np.float32)
        h, w = luma.shape
        if not CpuBackend._announced and not is_cached():
            say(  # under a video's progress bar, on a line of its own
                f"srcnn-fast: compiling the CPU kernels for this machine (first run only; "
                f"cached in {cache_dir()})"
            )
        CpuBackend._announced = True
        out = np.empty((h * self.scale, w * self.scale), np.float32)
        with KERNEL_LOCK:
            geometry, scratch = self._plan(h, w)
            _pad_lr(luma, geometry.lr, geometry.lr_stride, geometry.lr_pad, geometry.row_pad)
            if self.net.pair1 == 2:
                _centre_and_pair(geometry.lr, geometry.lr_fast, np.float32(CENTRE))
            elif self.net.pair1 == 4:
                _quantise_and_quad(
                    geometry.lr,
                    geometry.lr_fast,
                    geometry.lr_lo,
                    geometry.passes,
                    geometry.lr_stride,
                )
            scratch.counts[:] = 0
            _forward(self.net, geometry, scratch, out)
            blocks, live1, live2 = scratch.counts.sum(axis=0).tolist()
        # Share of conv2's and the products' dense work the last call did (see "sparse
        # blocks" in the module docstring).
        # (The lists hold channel pairs where the layer runs in bf16.)
        self.last_work = {
            "conv2": live1 * self.net.pair2 / max(blocks * self.net.n1p, 1),
            "products": live2 * self.net.pair3 / max(blocks * self.net.n2p, 1),
        }
        return out

    def upscale_pixels(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) packed pixels -> the upscaled pixels: ``imageops.upscale_image`` with
        bicubic alpha, its colour, chroma bicubic and packing fused into parallel kernels
        around the network (:mod:`.cpu_pixels`)."""
        return upscale_pixels(image, self.weights.scale, self.upscale_luma, KERNEL_LOCK)
