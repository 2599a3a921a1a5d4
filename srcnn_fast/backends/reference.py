"""The NumPy reference network: the oracle every fast path is checked against.

It computes DESIGN.md section 1 literally: bicubic upscale (``imageops``), then three "same"
convolutions, each reading its input with edge-replicate padding. To stay usable on large
images (a 1920x1080 output in a few seconds on 2 cores) it works in strips of rows and turns
each convolution into one matrix product per strip, in whichever of two exact forms keeps the
intermediate small:

* gather-then-multiply (im2col): the f*f*Cin inputs of each pixel in a row, times the
  (f*f*Cin, Cout) kernel. Used when f*f*Cin <= f*f*Cout (conv1: 81 values per pixel).
* multiply-then-shift-add: each pixel's Cin features times the (Cin, f*f*Cout) kernel, i.e. its
  contribution to every neighbour, then f*f shifted plane additions. Used when Cout is the
  small side (conv3: 25 values per pixel; conv2 1x1 is a plain product).

Both are exact convolutions. The products and sums run in float64, rounded to float32 once per
layer (after the bias): BLAS sums a float32 product in an order that can depend on the matrix's
shape (OpenBLAS on a Zen 3 did, for strips of different heights), so a float32 reference gave
tiles that differed from the whole image in the last bit; in float64 the order no longer shows
after the rounding, and the oracle is the more exact for it (TensorFlow's float32 sums differ
from it by ~1e-7).
"""

from __future__ import annotations

import numpy as np

from .. import imageops
from ..model import SRCNNWeights
from ..tiling import layer_row_ranges, replicate_rows, row_strips

#: Largest intermediate per strip, in bytes; sets the strip height.
STRIP_BUDGET_BYTES = 48 << 20


def _pad_columns(x: np.ndarray, radius: int) -> np.ndarray:
    if radius == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[1] = (radius, radius)
    return np.pad(x, widths, mode="edge")


def conv_same_rows(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, relu: bool) -> np.ndarray:
    """One conv layer on a strip.

    ``x`` is (h + 2r, W, Cin): the strip's input rows plus r halo rows above and below, already
    edge-replicated where they fall outside the image. Columns are replicate-padded here.
    Returns (h, W, Cout) float32.
    """
    f, _, cin, cout = kernel.shape
    r = (f - 1) // 2
    h, width = x.shape[0] - 2 * r, x.shape[1]
    if f * f * cin <= f * f * cout or f == 1:
        # im2col: window axes come last from sliding_window_view; reorder to (dy, dx, cin)
        # to match the HWIO kernel flattened to (f*f*cin, cout).
        windows = np.lib.stride_tricks.sliding_window_view(_pad_columns(x, r), (f, f), (0, 1))
        cols = windows.transpose(0, 1, 3, 4, 2).reshape(h * width, f * f * cin)
        out = cols.astype(np.float64) @ kernel.reshape(f * f * cin, cout).astype(np.float64)
        out = out.reshape(h, width, cout)
    else:
        # Contribution of each input pixel to each of its f*f neighbours, then shift-add.
        matrix = kernel.transpose(2, 0, 1, 3).reshape(cin, f * f * cout).astype(np.float64)
        taps = x.reshape(-1, cin).astype(np.float64) @ matrix
        taps = _pad_columns(taps.reshape(h + 2 * r, width, f, f, cout), r)
        out = np.zeros((h, width, cout), np.float64)
        for dy in range(f):
            for dx in range(f):
                out += taps[dy : dy + h, dx : dx + width, dy, dx, :]
    out += bias
    out = out.astype(np.float32)
    if relu:
        np.maximum(out, 0.0, out=out)
    return out


class ReferenceBackend:
    """NumPy oracle: bicubic (imageops) then the network, strip by strip."""

    name = "reference"

    def __init__(self, weights: SRCNNWeights) -> None:
        self.weights = weights
        arch = weights.arch
        self._layers = [
            (weights.w1, weights.b1, True),
            (weights.w2, weights.b2, True),
            (weights.w3, weights.b3, False),
        ]
        self._radii = [(arch.f1 - 1) // 2, (arch.f2 - 1) // 2, (arch.f3 - 1) // 2]
        # Per-pixel values alive at the widest step (im2col columns + outputs), each held as
        # float32 and as its float64 copy: 12 bytes.
        self._values_per_pixel = max(
            min(f * f * cin, f * f * cout) + cout
            for f, _, cin, cout in (w.shape for w, _, _ in self._layers)
        )

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 LR luma -> (sH, sW) float32 network output."""
        return self.network(imageops.bicubic_upscale(luma, self.weights.scale))

    def network(self, plane: np.ndarray) -> np.ndarray:
        """The three conv layers on an (H, W) upscaled luma plane; output has the same size."""
        plane = np.asarray(plane, dtype=np.float32)
        height, width = plane.shape
        out = np.empty((height, width), np.float32)
        strip = STRIP_BUDGET_BYTES // (12 * width * self._values_per_pixel)
        for start, stop in row_strips(height, max(strip, 4)):
            ranges = layer_row_ranges(start, stop, self._radii)
            lo, hi = ranges[0]
            x = replicate_rows(plane[:, :, None], lo, hi, 0)
            for (kernel, bias, relu), radius, (out_lo, out_hi) in zip(
                self._layers, self._radii, ranges[1:], strict=True
            ):
                # Compute only the rows inside the image, then replicate the edge rows of
                # this layer's output: that is what the next layer's padding reads.
                in_lo, in_hi = max(out_lo, 0), min(out_hi, height)
                rows = x[in_lo - radius - lo : in_hi + radius - lo]
                y = conv_same_rows(rows, kernel, bias, relu)
                x = replicate_rows(y, out_lo, out_hi, in_lo)
                lo = out_lo
            out[start:stop] = x[:, :, 0]
        return out
