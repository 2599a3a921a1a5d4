"""bfloat16 arithmetic of the ``cpu`` backend's ``precision="bf16"``, emulated in NumPy.

The bf16 kernel (``srcnn_fast.backends.cpu``) multiplies bfloat16 values (8 significant bits,
fp32's exponent range) with ``vdpbf16ps``, whose products are exact in float32 and whose sums
are float32. So it differs from the float32 network in exactly these roundings, each
round-to-nearest-even to bf16 (relative error at most u = 2^-8: 8 significant bits):

* the LR input of conv1 ("input"), after subtracting :data:`CENTRE` (so that |x - CENTRE| <= 0.5 for
  inputs in [0, 1]: half the absolute error of rounding x itself). conv1 is linear and its
  folded taps sum to the sum of w1 for every row and column class (bicubic weights sum to 1),
  so the centring is exact: conv1's bias becomes b1 + CENTRE * sum(w1) (:func:`centred_bias`);
* conv1's folded weights ("w1"; polyphase: bicubic folded into conv1, ``srcnn_fast.polyphase``);
* conv1's output after bias and ReLU ("f1") and w2 ("w2"): conv2's products;
* conv2's output after bias and ReLU ("f2") and w3 ("w3"): conv3's tap products.

(:data:`LAYERS` names them per layer; the cpu backend's ``bf16_layers`` can keep a layer in
float32.)

Everything else is float32: the accumulators, the biases, conv3's tap products and their sum.
:func:`emulate` computes the network with these roundings and float64 sums, so the kernel
differs from it by float32 accumulation order only, and from the float32 network by the
roundings above (tests/test_cpu_bf16.py states the bounds).
"""

from __future__ import annotations

import numpy as np

from ..model import SRCNNWeights
from ..polyphase import axis_geometry, fold_conv1
from .reference import conv_same_rows

#: Subtracted from the LR luma before it is rounded to bf16 (see the module docstring).
CENTRE = 0.5
#: The values each layer rounds to bf16 when it runs in bf16 (conv3: its tap products).
LAYERS = {
    "conv1": frozenset({"input", "w1"}),
    "conv2": frozenset({"f1", "w2"}),
    "conv3": frozenset({"f2", "w3"}),
}
#: The layers ``precision="bf16"`` runs in bf16: all three, the fastest. Fewer cost less PSNR
#: and save less time; none meets 0.01 dB at x2 and 1.5x together (docs/performance.md, "bf16
#: on the CPU"): conv1 alone costs at most 0.0065 dB and gains ~1.15x.
DEFAULT_LAYERS = frozenset({"conv1", "conv2", "conv3"})


def rounded_by(layers: frozenset[str]) -> frozenset[str]:
    """The values rounded to bf16 when ``layers`` run in bf16."""
    return frozenset().union(*(LAYERS[layer] for layer in layers))


#: The values the kernel rounds to bf16 by default; :func:`emulate` can round others (or
#: fewer), which measures what each rounding costs.
ROUNDED = rounded_by(DEFAULT_LAYERS)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 (ties to even), returned as float32.

    bf16 is the upper half of a float32: add half of the dropped 16 bits' weight (minus one,
    plus the kept part's lowest bit, which makes ties go to even) and truncate. Finite inputs
    only (no NaN handling: the network never makes one).
    """
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32).reshape(np.shape(x))


def centred_bias(w1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """conv1's bias for the centred input x - CENTRE: b1 + CENTRE * sum of each filter."""
    total = w1.astype(np.float64).sum(axis=(0, 1, 2))
    return (b1.astype(np.float64) + CENTRE * total).astype(np.float32)


def _rounder(rounded: frozenset[str], name: str):
    return round_bf16 if name in rounded else (lambda x: np.asarray(x, np.float32))


def _folded_conv1(x: np.ndarray, k1: np.ndarray, rows, cols) -> np.ndarray:
    """sum_t K[t] x[t] on the (sH, sW) grid straight from the (H, W) plane ``x`` (float64,
    no bias): per pair of row and column classes, one im2col product."""
    h, w = x.shape
    t_size, n1 = k1.shape[2], k1.shape[-1]
    taps = np.arange(t_size)
    row_idx = np.clip(rows.base[:, None] + taps, 0, h - 1)  # (sH, T)
    col_idx = np.clip(cols.base[:, None] + taps, 0, w - 1)  # (sW, T)
    out = np.empty((len(rows.base), len(cols.base), n1), np.float64)
    for rc in np.unique(rows.classes):
        ys = np.flatnonzero(rows.classes == rc)
        for cc in np.unique(cols.classes):
            xs = np.flatnonzero(cols.classes == cc)
            patches = x[row_idx[ys][:, None, :, None], col_idx[xs][None, :, None, :]]
            block = patches.reshape(len(ys) * len(xs), -1) @ k1[rc, cc].reshape(-1, n1)
            out[np.ix_(ys, xs)] = block.reshape(len(ys), len(xs), n1)
    return out


def _conv3(f2: np.ndarray, w3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    r3 = (w3.shape[0] - 1) // 2
    padded = np.pad(f2, ((r3, r3), (0, 0), (0, 0)), mode="edge")
    return conv_same_rows(padded, w3, b3, relu=False)[:, :, 0]


def _network(weights: SRCNNWeights, luma: np.ndarray, rounded: frozenset[str]):
    """(folded conv1 table, centred input, f1, f2, output) with the roundings ``rounded``."""
    scale, f1_size = weights.scale, weights.arch.f1
    rows = axis_geometry(luma.shape[0], scale, f1_size)
    cols = axis_geometry(luma.shape[1], scale, f1_size)
    k1 = _rounder(rounded, "w1")(fold_conv1(weights.w1, rows, cols)).astype(np.float64)
    x = _rounder(rounded, "input")(luma.astype(np.float32) - np.float32(CENTRE))
    z1 = _folded_conv1(x.astype(np.float64), k1, rows, cols)
    z1 += centred_bias(weights.w1, weights.b1)
    f1 = _rounder(rounded, "f1")(np.maximum(z1.astype(np.float32), 0.0))
    w2 = _rounder(rounded, "w2")(weights.w2[0, 0]).astype(np.float64)
    f2 = f1.astype(np.float64) @ w2 + weights.b2.astype(np.float64)
    f2 = _rounder(rounded, "f2")(np.maximum(f2.astype(np.float32), 0.0))
    out = _conv3(f2, _rounder(rounded, "w3")(weights.w3), weights.b3)
    return (rows, cols, k1), x, f1, f2, out


def emulate(
    weights: SRCNNWeights, luma: np.ndarray, rounded: frozenset[str] = ROUNDED
) -> np.ndarray:
    """The bf16 kernel's network output for an (H, W) LR luma plane, in NumPy (float64 sums).

    For 1x1 conv2 (the architectures the fused kernel runs); slow but exact to the kernel's
    rounding points (see the module docstring). ``rounded``: the values rounded to bf16
    (:data:`ROUNDED`, as the kernel does; fewer to measure what each rounding costs).
    """
    return _network(weights, luma, rounded)[-1]


def error_bound(
    weights: SRCNNWeights, luma: np.ndarray, rounded: frozenset[str] = ROUNDED
) -> np.ndarray:
    """Per output pixel, a bound on |:func:`emulate` - the float32 network| from the
    rounding model: each rounded value is off by at most u = 2^-8 of itself, a product of two
    rounded values by (2u + u^2) of the exact product, the errors pass through ReLU
    (1-Lipschitz) and each layer's |weights| linearly. First order in the errors of the
    previous layers (their products with u are left out: ~2^-8 of the bound)."""
    (rows, cols, k1), x, f1, f2, _ = _network(weights, luma, frozenset())
    u = 2.0**-8

    def rel(name: str) -> float:
        return u if name in rounded else 0.0

    def pair(a: str, b: str) -> float:  # both factors of a product rounded, or one
        return rel(a) + rel(b) + rel(a) * rel(b)

    abs_k1 = np.abs(k1)
    e1 = pair("input", "w1") * _folded_conv1(np.abs(x.astype(np.float64)), abs_k1, rows, cols)
    e1 += rel("f1") * (f1 + e1)
    abs_w2 = np.abs(weights.w2[0, 0].astype(np.float64))
    e2 = e1 @ abs_w2 * (1 + rel("w2")) + rel("w2") * (f1.astype(np.float64) @ abs_w2)
    e2 += rel("f2") * (f2 + e2)
    abs_w3 = np.abs(weights.w3.astype(np.float64))
    zero = np.zeros_like(weights.b3, np.float64)
    return _conv3(e2, abs_w3, zero) * (1 + rel("w3")) + rel("w3") * _conv3(
        f2.astype(np.float64), abs_w3, zero
    )
