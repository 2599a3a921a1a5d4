"""int8 arithmetic of the ``cpu`` backend's ``precision="int8"``, emulated in NumPy.

The int8 kernel (``srcnn_fast.backends.cpu``) runs conv1 and conv2 as integer dot products
(``vpdpbusd``: unsigned 8-bit activations times signed 8-bit weights, four products per 32-bit
lane summed into int32, exactly), and conv3 in float32. It differs from the float32 network in
exactly these roundings, each to the nearest integer, ties to even:

* the LR input of conv1: the luma on the 0..255 scale, ``q_x = round(255 x)`` (an 8-bit
  image's own luma, rounded once; clipped to 0..255);
* conv1's folded weights (bicubic folded into conv1, ``srcnn_fast.polyphase``): per output
  channel c one scale ``s1[c]`` = the largest |folded weight| of any interior phase / 127, so
  ``q_k = round(K / s1)`` in -127..127 (a border class's weight beyond that is clipped);
* conv1's output after bias and ReLU: per channel c a clip value ``t1[c]`` calibrated on T91
  (:func:`calibrate`) maps it to 0..255: ``a1 = clip(round((acc1 * s1 / 255 + b1) / t1),
  0, 255)``, the multiply-add done in float32 (``fma``, one rounding) with the multiplier
  ``m1 = s1 / (255 t1)`` and the offset ``b1 / t1`` each rounded to float32 first;
* conv2's weights, which absorb conv1's per-channel clip values: ``w2' = w2 * t1[input]``,
  per output channel c2 one scale ``s2[c2]`` = max |w2'| / 127, ``q_w2 = round(w2' / s2)``;
  conv2's output is ``relu(acc2 * s2 + b2)`` in float32 (one ``fma``).

conv2's output stays float32 and conv3 runs in float32 (its tap products and their sum): an
int8 conv3 costs 0.6-0.9 dB (issue 28's probe), a float32 one nothing measurable. The clip
values are the only calibrated numbers; they are stored in the weights file
(``SRCNNWeights.int8_clip``); everything else follows from the weights.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..errors import WeightsError
from ..model import SRCNNWeights
from ..polyphase import AxisGeometry, axis_geometry, fold_conv1
from .bf16 import _conv3, _folded_conv1, activation_centres, centred_biases, round_bf16

#: Scales whose conv3 stays float32; at the others it runs in bf16 (its tap products: conv2's
#: output centred and rounded to bf16, w3 rounded, as ``precision="bf16"`` does; ``bf16.py``)
#: where the CPU has AVX512_BF16. bf16 is faster; at x2 it cost Set5 0.004 dB, which took
#: the shipped weights over the 0.03 dB bar (-0.032 against fp32's -0.028: performance.md).
CONV3_FP32_SCALES = frozenset({2})


def conv3_in_bf16(scale: int) -> bool:
    """Whether the int8 network runs conv3's products in bf16 at ``scale`` (given the CPU
    has AVX512_BF16; else float32)."""
    return scale not in CONV3_FP32_SCALES


#: Largest |int8 weight| (symmetric: -127..127, so that negating a weight never overflows).
WEIGHT_MAX = 127
#: Largest uint8 activation and input value.
ACT_MAX = 255


def round_even(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties to even (``np.rint``; the kernel's ``cvtps2dq``)."""
    return np.rint(x)


def interior_fold(weights: SRCNNWeights) -> np.ndarray:
    """conv1 folded for the interior phases only: (s, s, T, T, n1) float32 (any image big
    enough to have every phase gives the same tables)."""
    s, f = weights.scale, weights.arch.f1
    n = 4 * f  # LR pixels: enough for every phase to occur in the interior
    geo = axis_geometry(n, s, f)
    return fold_conv1(weights.w1, geo, geo)[:s, :s]


#: conv1's input centre on the 0..255 scale: the folded filters' weight roundings act on
#: x - CENTRE only, their effect on CENTRE itself goes into the bias (see :func:`conv1_tables`).
CENTRE = 128.0


class Int8Params(NamedTuple):
    """The quantised network: what the kernel multiplies and how it rescales."""

    s1: np.ndarray  # (n1,) float64: conv1's weight scale per output channel
    step1: np.ndarray  # (n1,) float64: conv1 output per activation unit (t1 / 255)
    w2q: np.ndarray  # (n1, n2) int8 values (as int32): conv2's weights
    s2: np.ndarray  # (n2,) float32: acc2 -> conv2 output units
    b2: np.ndarray  # (n2,) float32: conv2's bias, corrected for w2's rounding (see below)
    #: (s, s, T, T, n1) integers of the interior phases' folded conv1 (calibrated rounding,
    #: ``srcnn_fast.calibrate``), or None: every class rounded to nearest.
    w1q: np.ndarray | None = None
    #: Bits of conv1's input: 8 (one vpdpbusd per quad) or 16 (two: high and low bytes).
    input_bits: int = 8
    #: conv3 refitted to this quantised conv2's output (``srcnn_fast.calibrate``), or None:
    #: the float weights' own.
    w3: np.ndarray | None = None
    b3: np.ndarray | None = None


def network_weights(weights: SRCNNWeights, params: Int8Params) -> SRCNNWeights:
    """``weights`` with the conv3 that ``params`` runs (its refitted one where it has one)."""
    if params.w3 is None:
        return weights
    return dataclasses.replace(weights, w3=params.w3, b3=params.b3, int8=None)


def params_for(weights: SRCNNWeights) -> Int8Params:
    """The int8 network of ``weights``' stored calibration (a WeightsError naming the file
    where it has none, or one made for other weights)."""
    calibration = weights.int8
    where = weights.source
    if calibration is None:
        raise WeightsError(
            f"{where}: has no int8 calibration; make one with `srcnn-fast calibrate {where}`"
        )
    if calibration.weights_sha256 != weights.fingerprint():
        raise WeightsError(
            f"{where}: its int8 calibration was made for other weights; "
            f"redo it with `srcnn-fast calibrate {where}`"
        )
    c = calibration
    return Int8Params(
        s1=c.s1.astype(np.float64),
        step1=c.clip1.astype(np.float64) / ACT_MAX,
        w2q=c.w2q.astype(np.int32),
        s2=c.s2,
        b2=c.b2,
        w1q=c.w1q.astype(np.int32),
        input_bits=c.input_bits,
        w3=c.w3,
        b3=c.b3,
    )


def weight_scales(weights: SRCNNWeights, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scales of conv1's folded weights (float64) and of conv2's weights with
    conv1's clip values absorbed (float32 values): the largest |weight| maps to 127."""
    k1 = interior_fold(weights).astype(np.float64)
    s1 = np.abs(k1).max(axis=(0, 1, 2, 3)) / WEIGHT_MAX
    s1 = np.where(s1 > 0, s1, 1.0)  # a dead filter: any scale
    w2 = conv2_weights(weights, clip)
    s2 = np.abs(w2).max(axis=0) / WEIGHT_MAX
    s2 = np.where(s2 > 0, s2, 1.0).astype(np.float32).astype(np.float64)
    return s1, s2


def conv2_weights(weights: SRCNNWeights, clip: np.ndarray) -> np.ndarray:
    """conv2's (n1, n2) weights per activation unit of conv1 (float64)."""
    step = np.asarray(clip, np.float64) / ACT_MAX
    return weights.w2[0, 0].astype(np.float64) * step[:, None]


def int8_params(
    weights: SRCNNWeights,
    clip: np.ndarray,
    centre2: np.ndarray | None = None,
    w1q: np.ndarray | None = None,
    w2q: np.ndarray | None = None,
    input_bits: int = 8,
) -> Int8Params:
    """The scales and conv2's integer weights for ``clip`` (conv1's per-channel clip values);
    ``w1q`` / ``w2q``: calibrated integers (default: rounded to nearest); ``centre2``: conv1's
    mean activation (units), where conv2's rounding moves its mean output into b2."""
    s1, s2 = weight_scales(weights, clip)
    w2 = conv2_weights(weights, clip)
    if w2q is None:
        w2q = np.clip(round_even(w2 / s2), -WEIGHT_MAX, WEIGHT_MAX)
    b2 = weights.b2.astype(np.float64)
    if centre2 is not None:
        b2 = b2 + np.asarray(centre2, np.float64) @ (w2 - w2q * s2)
    return Int8Params(
        s1,
        np.asarray(clip, np.float64) / ACT_MAX,
        np.asarray(w2q).astype(np.int32),
        s2.astype(np.float32),
        b2.astype(np.float32),
        None if w1q is None else np.asarray(w1q).astype(np.int32),
        input_bits,
    )


def conv1_tables(
    k1: np.ndarray, b1: np.ndarray, params: Int8Params
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For folded conv1 weights ``k1`` (classes..., T, T, n1): their integers (-127..127), and
    per class and channel the float32 multiplier and offset that take the integer sum to
    activation units: ``a1 = acc1 * m1 + o1``. The offset holds b1 and what rounding the
    weights did to a flat input at :data:`CENTRE` (so the roundings act on x - CENTRE only)."""
    k1 = np.asarray(k1, np.float64)
    kq = np.clip(round_even(k1 / params.s1), -WEIGHT_MAX, WEIGHT_MAX)
    if params.w1q is not None:  # classes below s are the interior phases (polyphase.py)
        s = params.w1q.shape[0]
        kq[:s, :s] = params.w1q
    lost = (k1 - kq * params.s1).sum(axis=(-3, -2)) * (CENTRE / ACT_MAX)  # (classes..., n1)
    m1 = np.broadcast_to(params.s1 / ACT_MAX / params.step1, lost.shape).astype(np.float32)
    o1 = ((b1.astype(np.float64) + lost) / params.step1).astype(np.float32)
    return kq, m1, o1


def quantise_input(luma: np.ndarray, bits: int = 8) -> np.ndarray:
    """LR luma in [0, 1] -> integers on the 0..255 scale (float64): whole numbers for an 8-bit
    input, multiples of 1/256 for a 16-bit one (whose integers are 256 times these)."""
    top = ACT_MAX * 2.0 ** (bits - 8)
    return np.clip(round_even(np.asarray(luma, np.float64) * top), 0, top) / 2.0 ** (bits - 8)


def _fma32(a: np.ndarray, m: np.ndarray, o: np.ndarray) -> np.ndarray:
    """float32(a * m + o) with one rounding, as ``vfmadd`` does (a: integers, exact in
    float64 products up to 2^29; the float64 sum can round once more than the fma, which the
    tests allow for)."""
    return (np.asarray(a, np.float64) * m.astype(np.float64) + o.astype(np.float64)).astype(
        np.float32
    )


def geometry(weights: SRCNNWeights, shape: tuple[int, int]) -> tuple[AxisGeometry, AxisGeometry]:
    return (
        axis_geometry(shape[0], weights.scale, weights.arch.f1),
        axis_geometry(shape[1], weights.scale, weights.arch.f1),
    )


class Conv1Sums(NamedTuple):
    """conv1's integer sums for one LR plane (they do not depend on the clip values)."""

    acc: np.ndarray  # (sH, sW, n1) float64: integer sums (multiples of 1/256: 16-bit input)
    fold: np.ndarray  # (row classes, column classes, T, T, n1) float32: the folded weights
    rows: np.ndarray  # (sH, 1) row class of each HR row
    cols: np.ndarray  # (1, sW) column class of each HR column


def conv1_sums(weights: SRCNNWeights, luma: np.ndarray, params: Int8Params) -> Conv1Sums:
    """conv1's integer sums over the quantised LR plane ``luma``, as the kernel adds them."""
    rows, cols = geometry(weights, luma.shape)
    fold = fold_conv1(weights.w1, rows, cols)
    kq, _, _ = conv1_tables(fold, weights.b1, params)
    acc = _folded_conv1(quantise_input(luma, params.input_bits), kq, rows, cols)
    return Conv1Sums(acc, fold, rows.classes[:, None], cols.classes[None, :])


def activations(weights: SRCNNWeights, sums: Conv1Sums, params: Int8Params) -> np.ndarray:
    """(sH, sW, n1) uint8 activations (float64) of conv1 from its sums: the kernel's
    ``round(acc * m1 + o1)`` clamped to 0..255, the multiply-add in float32."""
    _, m1, o1 = conv1_tables(sums.fold, weights.b1, params)
    z = _fma32(sums.acc, m1[sums.rows, sums.cols], o1[sums.rows, sums.cols])
    return np.clip(round_even(z.astype(np.float64)), 0, ACT_MAX)


def conv1_activations(weights: SRCNNWeights, luma: np.ndarray, params: Int8Params) -> np.ndarray:
    """(sH, sW, n1) uint8 activations (float64) of conv1, as the kernel computes them."""
    return activations(weights, conv1_sums(weights, luma, params), params)


def conv2_from(a1: np.ndarray, params: Int8Params) -> np.ndarray:
    """(sH, sW, n2) float32: conv2's output after bias and ReLU from conv1's activations."""
    acc2 = a1 @ params.w2q.astype(np.float64)
    return np.maximum(_fma32(acc2, params.s2, params.b2), np.float32(0))


def conv2_output(weights: SRCNNWeights, luma: np.ndarray, params: Int8Params) -> np.ndarray:
    """(sH, sW, n2) float32: conv2's output after bias and ReLU, as the kernel computes it."""
    return conv2_from(conv1_activations(weights, luma, params), params)


def conv3_output(
    weights: SRCNNWeights, f2: np.ndarray, params: Int8Params, conv3_bf16: bool = False
) -> np.ndarray:
    """The network's output from conv2's: conv3 (``params``' refitted one where it has one)
    in float64, or with its products in bf16 (``conv3_bf16``: conv2's output centred and
    rounded to bf16, w3 rounded, as ``precision="bf16"`` rounds its conv3: bf16.py)."""
    weights = network_weights(weights, params)
    if not conv3_bf16:
        return _conv3(f2.astype(np.float64), weights.w3.astype(np.float64), weights.b3)
    _, c2 = activation_centres(weights)
    _, b3 = centred_biases(weights, np.zeros_like(weights.b1), c2)
    f2 = round_bf16(f2 - c2).astype(np.float64)
    return _conv3(f2, round_bf16(weights.w3).astype(np.float64), np.array([b3], np.float64))


def emulate(
    weights: SRCNNWeights, luma: np.ndarray, params: Int8Params, conv3_bf16: bool = False
) -> np.ndarray:
    """The int8 kernel's network output for an (H, W) LR luma plane, in NumPy.

    Integer sums are exact (float64 holding integers); the rescalings are float32 with one
    rounding each, as in the kernel; conv3 in float64 (the kernel's float32 sum differs by
    its summation order only)."""
    return conv3_output(weights, conv2_output(weights, luma, params), params, conv3_bf16)


def float_conv1(weights: SRCNNWeights, luma: np.ndarray) -> np.ndarray:
    """conv1's float output after bias and ReLU, (sH, sW, n1) float32: what is calibrated."""
    rows, cols = geometry(weights, luma.shape)
    k1 = fold_conv1(weights.w1, rows, cols).astype(np.float64)
    z = _folded_conv1(np.asarray(luma, np.float64), k1, rows, cols) + weights.b1
    return np.maximum(z, 0.0).astype(np.float32)
