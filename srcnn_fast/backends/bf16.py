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

conv1's and conv2's outputs are centred before they are rounded, as the input is: each channel
minus its value on a flat mid-grey image (:func:`activation_centres`, a bf16 value, so a zero
output stays exact), and the next layer's bias plus the centres times its *unrounded* weights
(:func:`centred_biases`). conv2 and conv3 are linear and conv3's padding replicates, so this
is exact in real arithmetic; it makes each rounding relative to the channel's distance from
its mid-grey value instead of to the value, and the rounding errors of w2 and w3 act on the
centred values only. (Many channels carry the local brightness, a large value that the next
layers cancel; centring them cut the PSNR cost at Set5 x2 from 0.037 dB to 0.018.)

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
#: Every layer: the fastest (docs/performance.md, "bf16 on the CPU").
ALL_LAYERS = frozenset(LAYERS)
#: The layers ``precision="bf16"`` runs in bf16 by scale: the fastest choice whose Set5 and
#: Set14 PSNR stays within 0.01 dB of float32 with the shipped weights (measured with
#: :func:`emulate` and the kernel: docs/performance.md); scales not listed: all three.
SCALE_LAYERS = {2: frozenset({"conv1"})}


def default_layers(scale: int) -> frozenset[str]:
    """The layers ``precision="bf16"`` runs in bf16 at ``scale`` (:data:`SCALE_LAYERS`)."""
    return SCALE_LAYERS.get(scale, ALL_LAYERS)


def rounded_by(layers: frozenset[str]) -> frozenset[str]:
    """The values rounded to bf16 when ``layers`` run in bf16."""
    return frozenset().union(*(LAYERS[layer] for layer in layers))


#: The values the kernel rounds to bf16 with every layer in bf16; :func:`emulate` can round
#: others (or fewer), which measures what each rounding costs.
ROUNDED = rounded_by(ALL_LAYERS)


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


def activation_centres(weights: SRCNNWeights) -> tuple[np.ndarray, np.ndarray]:
    """conv1's and conv2's outputs (after ReLU) on a flat mid-grey LR image, each rounded to
    bf16: the per-channel centres (see the module docstring). On a flat input the bicubic
    upscale is flat and every folded filter sums to sum(w1), so conv1's output is its centred
    bias through ReLU."""
    f1 = np.maximum(centred_bias(weights.w1, weights.b1).astype(np.float64), 0.0)
    f2 = np.maximum(f1 @ weights.w2[0, 0].astype(np.float64) + weights.b2, 0.0)
    return round_bf16(f1.astype(np.float32)), round_bf16(f2.astype(np.float32))


def rounded_centres(
    weights: SRCNNWeights, rounded: frozenset[str], centre: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The centres of conv1's and conv2's outputs where ``rounded`` rounds them ("f1", "f2")
    and ``centre`` holds; zero where not (an output kept in float32 needs none)."""
    c1, c2 = activation_centres(weights)
    c1 = c1 if centre and "f1" in rounded else np.zeros_like(c1)
    c2 = c2 if centre and "f2" in rounded else np.zeros_like(c2)
    return c1, c2


def centred_biases(
    weights: SRCNNWeights, c1: np.ndarray, c2: np.ndarray
) -> tuple[np.ndarray, np.float32]:
    """conv2's and conv3's biases for inputs centred by ``c1`` and ``c2``: b + the centres
    times the layer's unrounded weights (summed over conv3's taps)."""
    b2 = weights.b2.astype(np.float64) + c1.astype(np.float64) @ weights.w2[0, 0]
    w3 = weights.w3[:, :, :, 0].astype(np.float64)
    b3 = float(weights.b3[0]) + float(np.einsum("ijc,c->", w3, c2.astype(np.float64)))
    return b2.astype(np.float32), np.float32(b3)


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


def _network(weights: SRCNNWeights, luma: np.ndarray, rounded: frozenset[str], centre: bool = True):
    """(folded conv1 table, centred input, f1, f2, output) with the roundings ``rounded``.
    f1 and f2 are the layers' outputs minus their centres where they are rounded and
    ``centre`` holds (the centres are zero where not)."""
    scale, f1_size = weights.scale, weights.arch.f1
    rows = axis_geometry(luma.shape[0], scale, f1_size)
    cols = axis_geometry(luma.shape[1], scale, f1_size)
    c1, c2 = rounded_centres(weights, rounded, centre)
    b2, b3 = centred_biases(weights, c1, c2)
    k1 = _rounder(rounded, "w1")(fold_conv1(weights.w1, rows, cols)).astype(np.float64)
    x = _rounder(rounded, "input")(luma.astype(np.float32) - np.float32(CENTRE))
    z1 = _folded_conv1(x.astype(np.float64), k1, rows, cols)
    z1 += centred_bias(weights.w1, weights.b1)
    f1 = _rounder(rounded, "f1")(np.maximum(z1.astype(np.float32), 0.0) - c1)
    w2 = _rounder(rounded, "w2")(weights.w2[0, 0]).astype(np.float64)
    f2 = f1.astype(np.float64) @ w2 + b2
    f2 = _rounder(rounded, "f2")(np.maximum(f2.astype(np.float32), 0.0) - c2)
    out = _conv3(f2, _rounder(rounded, "w3")(weights.w3), b3.reshape(weights.b3.shape))
    return (rows, cols, k1), x, f1, f2, out


def emulate(
    weights: SRCNNWeights,
    luma: np.ndarray,
    rounded: frozenset[str] = ROUNDED,
    centre: bool = True,
) -> np.ndarray:
    """The bf16 kernel's network output for an (H, W) LR luma plane, in NumPy (float64 sums).

    For 1x1 conv2 (the architectures the fused kernel runs); slow but exact to the kernel's
    rounding points (see the module docstring). ``rounded``: the values rounded to bf16
    (:data:`ROUNDED`, as the kernel does; fewer to measure what each rounding costs).
    ``centre=False`` rounds conv1's and conv2's outputs uncentred, as the kernel once did.
    """
    return _network(weights, luma, rounded, centre)[-1]


def error_bound(
    weights: SRCNNWeights, luma: np.ndarray, rounded: frozenset[str] = ROUNDED
) -> np.ndarray:
    """Per output pixel, a bound on |:func:`emulate` - the float32 network| from the
    rounding model: each rounded value is off by at most u = 2^-8 of itself, a product of two
    rounded values by (2u + u^2) of the exact product, the errors pass through ReLU
    (1-Lipschitz) and each layer's |weights| linearly; with centring (module docstring) the
    roundings of f1 and w2 are relative to |f1 - c1|, those of f2 and w3 to |f2 - c2|. First
    order in the errors of the previous layers (their products with u are left out: ~2^-8 of
    the bound)."""
    (rows, cols, k1), x, f1, f2, _ = _network(weights, luma, frozenset())
    c1, c2 = rounded_centres(weights, rounded)
    a1 = np.abs(f1.astype(np.float64) - c1)
    a2 = np.abs(f2.astype(np.float64) - c2)
    u = 2.0**-8

    def rel(name: str) -> float:
        return u if name in rounded else 0.0

    def pair(a: str, b: str) -> float:  # both factors of a product rounded, or one
        return rel(a) + rel(b) + rel(a) * rel(b)

    abs_k1 = np.abs(k1)
    e1 = pair("input", "w1") * _folded_conv1(np.abs(x.astype(np.float64)), abs_k1, rows, cols)
    e1 += rel("f1") * (a1 + e1)
    abs_w2 = np.abs(weights.w2[0, 0].astype(np.float64))
    e2 = e1 @ abs_w2 * (1 + rel("w2")) + rel("w2") * (a1 @ abs_w2)
    e2 += rel("f2") * (a2 + e2)
    abs_w3 = np.abs(weights.w3.astype(np.float64))
    zero = np.zeros_like(weights.b3, np.float64)
    return _conv3(e2, abs_w3, zero) * (1 + rel("w3")) + rel("w3") * _conv3(a2, abs_w3, zero)
