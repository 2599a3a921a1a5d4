"""Polyphase folding of "bicubic x s, then conv1" into small filters on the LR image.

Bicubic upscaling by an integer s and conv1 are both linear, so each conv1 output is a linear
function of a T x T window of LR pixels (T = 8, 7, 6 at s = 2, 3, 4, against 9 x 9 = 81 taps
on the upscaled image). The window and its weights depend on the HR row only through a *row
class*, and likewise for columns:

* an interior HR row Y (r1 <= Y < sH - r1, r1 = conv1's radius) has class ``Y % s``: the s
  phases of the upscale;
* each of the (at most 2 r1) rows nearer the border has a class of its own, because conv1's
  edge-replicate padding of the *upscaled* image breaks the phase structure there.

The window of HR row Y starts at LR row ``base(Y) = floor((Y - r1 + 0.5) / s - 0.5) - 1``, the
same formula for every row; LR reads are clamped to the image (bicubic's own edge replicate), so
the folding is exact for any image size, 1 x 1 included. The folded weight of class pair
(rc, cc) is ``K[ti, tj, c] = sum_{dy,dx} A_rc[dy, ti] * w1[dy, dx, c] * A_cc[dx, tj]`` with
``A[d, t]`` the bicubic weight of window row t in conv1 input row d. Both the Numba and the CUDA
backend use these tables; the tests check them against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imageops import bicubic_phase_origin, bicubic_phase_weights


def _source_floor(hr: np.ndarray, scale: int) -> np.ndarray:
    """floor of the LR position sampled by HR index ``hr`` (half-pixel centres)."""
    return np.floor((hr + 0.5) / scale - 0.5).astype(np.int64)


def window_size(scale: int, radius: int) -> int:
    """T: LR pixels spanned by the conv1 window of any HR pixel (interior or border)."""
    phases = np.arange(scale)
    span = _source_floor(phases + radius, scale) - _source_floor(phases - radius, scale)
    return int(span.max()) + 4


def phase_window_starts(scale: int, f: int) -> np.ndarray:
    """(scale,) int64: window start minus j for the interior HR index s*j + q, per phase q."""
    return _source_floor(np.arange(scale) - (f - 1) // 2, scale) - 1


@dataclass(frozen=True)
class AxisGeometry:
    """Per HR index along one axis: its class, and where its LR window starts."""

    classes: np.ndarray  # (n_hr,) int32 class id; ids < scale are the interior phases
    base: np.ndarray  # (n_hr,) int64 first LR index of the window (may be < 0 or past the end)
    weights: np.ndarray  # (n_classes, f, T) float64: A[class, d, t]
    interior: np.ndarray  # (n_hr,) bool: class is a phase (no replicate padding involved)
    #: (n_classes, 2) int64: [first, stop) of the window taps whose weight is not exactly zero.
    #: At x3 the phases that sample 1/3 pixel off an LR pixel span 6 of the T = 7 taps (the
    #: middle phase samples LR pixels exactly, whose outer bicubic weights are 0), so skipping
    #: the zero taps saves 18% of conv1 with no change to the result.
    spans: np.ndarray


def axis_geometry(lr_size: int, scale: int, f: int) -> AxisGeometry:
    """Classes, window starts and folding weights along one axis of ``lr_size`` LR pixels."""
    radius = (f - 1) // 2
    n_hr = lr_size * scale
    t_size = window_size(scale, radius)
    hr = np.arange(n_hr)
    base = _source_floor(hr - radius, scale) - 1
    interior = (hr >= radius) & (hr < n_hr - radius)
    border = np.flatnonzero(~interior)
    classes = np.where(interior, hr % scale, 0).astype(np.int32)
    classes[border] = scale + np.arange(len(border), dtype=np.int32)

    phase_weights = bicubic_phase_weights(scale)  # (s, 4)
    origin = bicubic_phase_origin(scale)  # (s,)
    weights = np.zeros((scale + len(border), f, t_size))
    # Interior class p is represented by any interior HR index of that phase; the result
    # depends only on the phase (checked by the tests), so build it from an unclamped one.
    representatives = [(p, p + scale * (radius // scale + 1)) for p in range(scale)]
    representatives += [(int(classes[y]), int(y)) for y in border]
    for cls, y in representatives:
        y_base = _source_floor(np.array(y - radius), scale) - 1
        for d in range(f):
            src = y + d - radius
            if cls >= scale:  # border class: conv1 reads the upscaled image edge-replicated
                src = min(max(src, 0), n_hr - 1)
            block, phase = divmod(src, scale)
            first = block + origin[phase] - 1 - y_base
            for k in range(4):
                weights[cls, d, first + k] += phase_weights[phase, k]
    spans = np.zeros((len(weights), 2), np.int64)
    for cls, used in enumerate(np.any(weights != 0, axis=1)):
        taps = np.flatnonzero(used)
        spans[cls] = (taps[0], taps[-1] + 1) if len(taps) else (0, 0)
    return AxisGeometry(classes, base, weights, interior, spans)


def fold_conv1(w1: np.ndarray, rows: AxisGeometry, cols: AxisGeometry) -> np.ndarray:
    """Folded conv1 weights K[rc, cc, ti, tj, c] (float32) for every pair of classes."""
    kernel = w1[:, :, 0, :].astype(np.float64)  # (f, f, n1)
    folded = np.einsum("rdt,dec,keu->rktuc", rows.weights, kernel, cols.weights)
    return np.ascontiguousarray(folded, dtype=np.float32)
