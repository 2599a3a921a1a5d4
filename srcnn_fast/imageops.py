"""The one definition of DESIGN.md section 1: colour, bicubic upscaling and bit depths.

Every backend, the trainer and the evaluator call these functions; nothing else in the package
re-implements them. Conventions:

* Float images are float32 in [0, 1]: 8-bit divides by 255, 16-bit by 65535.
* Colour is BT.601 studio range, exactly MATLAB's ``rgb2ycbcr`` (Y in [16, 235] / 255).
* Bicubic is Keys' cubic with a = -0.5, half-pixel centres, edge pixels replicated: MATLAB's
  and Pillow's upscale.
* Converting back to integers clips to [0, 1] and rounds half to even (``np.rint``), everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from .errors import ImageError

#: Integer dtypes the pipeline reads and writes, with their full-scale value.
INTEGER_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

# MATLAB rgb2ycbcr for R, G, B in [0, 1]: ycbcr = offset + M @ rgb (float64; the CUDA kernels
# get these as float32 constants).
RGB_TO_YCBCR = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ],
        dtype=np.float64,
    )
    / 255.0
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64) / 255.0
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


# --- bit depths ------------------------------------------------------------------------------


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float32 array -> float32 in [0, 1] (float32 passes through unchanged)."""
    if image.dtype == np.float32:
        return image
    scale = INTEGER_SCALES.get(image.dtype)
    if scale is None:
        raise ImageError(f"unsupported dtype {image.dtype} (use uint8, uint16 or float32)")
    return image.astype(np.float32) * np.float32(1.0 / scale)


def from_float(image: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """float32 -> ``dtype``. Integers: clip to [0, 1], scale, round half to even.

    A float32 target returns the values unclipped: only integer outputs are clipped.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return image.astype(np.float32, copy=False)
    scale = INTEGER_SCALES.get(dtype)
    if scale is None:
        raise ImageError(f"unsupported dtype {dtype} (use uint8, uint16 or float32)")
    scaled = np.clip(image, 0.0, 1.0) * np.float32(scale)
    return np.rint(scaled).astype(dtype)


# --- colour ----------------------------------------------------------------------------------


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """float RGB (..., 3) in [0, 1] -> float32 YCbCr (..., 3), BT.601 studio range."""
    m = RGB_TO_YCBCR.astype(np.float32)
    return rgb.astype(np.float32, copy=False) @ m.T + YCBCR_OFFSET.astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """float32 YCbCr (..., 3) -> float32 RGB (..., 3), unclipped."""
    m = YCBCR_TO_RGB.astype(np.float32)
    return (ycbcr.astype(np.float32, copy=False) - YCBCR_OFFSET.astype(np.float32)) @ m.T


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Y of BT.601 studio range, the channel the network and the PSNR protocol use."""
    return rgb_to_ycbcr(rgb)[..., 0]


# A gray plane is mapped into the range the network was trained on, studio-range Y in
# [16, 235] / 255, and back: exactly what happens to the RGB image with three equal channels,
# whose Y is 16/255 + (219/255) gray (the luma row sums to 219/255) and whose Cb = Cr = 128/255
# put nothing back into R, G or B. Fed in full range instead, black (0) comes out near 15/255:
# the network never saw a Y below 16/255. Alpha through the network is a gray plane too.
GRAY_TO_LUMA_GAIN = float(RGB_TO_YCBCR[0].sum())
LUMA_TO_GRAY_GAIN = float(YCBCR_TO_RGB[0, 0])  # = 1 / GRAY_TO_LUMA_GAIN = 255/219


def gray_to_luma(gray: np.ndarray) -> np.ndarray:
    """float gray plane in [0, 1] -> float32 studio-range Y (16/255 for black, 235/255 white)."""
    return gray.astype(np.float32, copy=False) * np.float32(GRAY_TO_LUMA_GAIN) + np.float32(
        YCBCR_OFFSET[0]
    )


def luma_to_gray(luma: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gray_to_luma` (float32, unclipped)."""
    return (luma - np.float32(YCBCR_OFFSET[0])) * np.float32(LUMA_TO_GRAY_GAIN)


def image_luma(values: np.ndarray) -> np.ndarray:
    """The network's input plane of a float image: studio-range Y of RGB(A) or of gray."""
    if values.ndim == 3 and values.shape[2] >= 3:
        return rgb_to_luma(values[..., :3])
    return gray_to_luma(values if values.ndim == 2 else values[..., 0])


# --- bicubic ---------------------------------------------------------------------------------


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5: MATLAB, Pillow)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2.0) * ax3 - (a + 3.0) * ax2 + 1.0
    far = a * ax3 - 5.0 * a * ax2 + 8.0 * a * ax - 4.0 * a
    return np.where(ax <= 1.0, near, np.where(ax < 2.0, far, 0.0))


#: Tap offsets of the 4-tap kernel relative to floor(source position).
BICUBIC_OFFSETS = np.array([-1, 0, 1, 2])


def bicubic_phase_weights(scale: int) -> np.ndarray:
    """(scale, 4) float64 weights: output pixel ``x`` with ``x % scale == p`` uses row ``p``.

    Output x samples input position (x + 0.5) / scale - 0.5 (half-pixel centres); the taps sit
    at floor(position) + (-1, 0, 1, 2). For an integer scale the fractional part depends only on
    the phase p, which is what lets fast paths fold the upscale into conv1 (polyphase).
    """
    phase = np.arange(scale)
    position = (phase + 0.5) / scale - 0.5
    frac = position - np.floor(position)
    return keys_cubic(frac[:, None] - BICUBIC_OFFSETS[None, :])


def bicubic_phase_origin(scale: int) -> np.ndarray:
    """(scale,) int: floor of the source position of phase p's output pixel in LR block 0."""
    phase = np.arange(scale)
    return np.floor((phase + 0.5) / scale - 0.5).astype(np.int64)


@lru_cache(maxsize=64)
def bicubic_taps(size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (n, 4) and float32 weights (n, 4) upscaling an axis of ``size`` pixels.

    Indices are clamped to [0, size - 1]: the edge pixel is replicated beyond the border.
    """
    out = np.arange(size * scale)
    block, phase = np.divmod(out, scale)
    start = block + bicubic_phase_origin(scale)[phase]
    index = np.clip(start[:, None] + BICUBIC_OFFSETS[None, :], 0, size - 1)
    weights = bicubic_phase_weights(scale)[phase].astype(np.float32)
    index.setflags(write=False)
    weights.setflags(write=False)
    return index, weights


def array_module(array: object):
    """``numpy``, or ``cupy`` for an array in GPU memory (imported only then): the plane
    functions below run where their input lives, so a GPU frame never visits the host."""
    if hasattr(array, "__cuda_array_interface__"):
        import cupy

        return cupy
    return np


def _upscale_axis(image: np.ndarray, scale: int, axis: int) -> np.ndarray:
    xp = array_module(image)
    index, weights = bicubic_taps(image.shape[axis], scale)
    index, weights = xp.asarray(index), xp.asarray(weights)
    shape = [1] * image.ndim
    shape[axis] = -1
    result = xp.take(image, index[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, 4):
        result += xp.take(image, index[:, k], axis=axis) * weights[:, k].reshape(shape)
    return result


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Upscale an (H, W) or (H, W, C) float image by an integer factor; returns float32.

    Separable: rows (axis 0) first, then columns, accumulated in float32. A CuPy array is
    upscaled on its GPU.
    """
    xp = array_module(image)
    image = xp.asarray(image, dtype=np.float32)
    return _upscale_axis(_upscale_axis(image, scale, 0), scale, 1)


@lru_cache(maxsize=64)
def _matlab_downscale_matrix(size: int, scale: int) -> np.ndarray:
    """(size // scale, size) float64: MATLAB ``imresize(x, 1/scale)``'s bicubic taps for one
    axis, the kernel stretched by ``scale`` (antialiasing), each row summing to 1, indices
    beyond the border mirrored (MATLAB's symmetric extension)."""
    out = np.arange(size // scale)
    centre = (out + 0.5) * scale - 0.5  # source position of each output pixel, 0-based
    taps = np.floor(centre - 2 * scale)[:, None] + np.arange(4 * scale + 2)[None, :]
    weights = keys_cubic((centre[:, None] - taps) / scale) / scale
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(size), np.arange(size - 1, -1, -1)])
    index = mirrored[np.mod(taps, 2 * size).astype(np.int64)]
    matrix = np.zeros((len(out), size))
    np.add.at(matrix, (np.repeat(out, taps.shape[1]), index.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def matlab_downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Downscale an 8-bit (H, W) or (H, W, C) image by an integer factor as MATLAB's
    ``imresize(image, 1/scale)`` does (bicubic, antialiased): the way the benchmark sets' LR
    files were made (``../shared/data/README.md``), so training pairs made with it match them.

    Rows first, then columns, each pass rounded to uint8 (half away from zero) as MATLAB's
    uint8 path does; H and W are first cropped to multiples of ``scale``. Pillow's BICUBIC
    resize has the same kernel but goes columns first and clamps at the border: it differs from
    the LR files in ~18% of their pixels (by 1 mostly), this in ~1%.
    """
    if image.dtype != np.uint8:
        raise ImageError(f"matlab_downscale takes 8-bit images, not {image.dtype}")
    height, width = (image.shape[0] // scale) * scale, (image.shape[1] // scale) * scale
    values = image[:height, :width].astype(np.float64)
    for axis in (0, 1):
        matrix = _matlab_downscale_matrix(values.shape[axis], scale)
        values = np.moveaxis(np.tensordot(matrix, values, axes=(1, axis)), 0, axis)
        values = np.clip(np.floor(values + 0.5), 0, 255)
    return values.astype(np.uint8)


# --- the pipeline around the network --------------------------------------------------------

LumaUpscaler = Callable[[np.ndarray], np.ndarray]


#: How alpha is upscaled: bicubically like chroma, or through the network as a gray plane.
ALPHA_MODES = ("bicubic", "network")


def upscale_gray(gray: np.ndarray, upscale_luma: LumaUpscaler) -> np.ndarray:
    """A float gray plane through ``upscale_luma`` in the network's range, mapped back."""
    return luma_to_gray(upscale_luma(np.ascontiguousarray(gray_to_luma(gray))))


def upscale_image(
    image: np.ndarray, scale: int, upscale_luma: LumaUpscaler, alpha: str = "bicubic"
) -> np.ndarray:
    """Section 1 end to end, with the luma path supplied by the caller.

    ``image`` is (H, W) luma, (H, W, 1), (H, W, 2) luma + alpha, (H, W, 3) RGB or (H, W, 4)
    RGBA; uint8, uint16 or float32. ``upscale_luma`` maps an (H, W) float32 luma plane to the
    (sH, sW) float32 result (bicubic + network for SRCNN, bicubic alone for the baseline).
    Chroma is upscaled bicubically, alpha too unless ``alpha="network"`` (sharper edges in
    masks, through ``upscale_luma`` as a gray plane). Gray planes go through the network as
    studio-range Y (:func:`gray_to_luma`), as the equal-channel RGB image would. The result has
    the input's layout and dtype.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, not {alpha!r}")
    values = to_float(image)
    has_alpha = values.ndim == 3 and values.shape[2] in (2, 4)
    if has_alpha and alpha == "network":
        upscaled_alpha = upscale_gray(values[..., -1], upscale_luma)
        rest = upscale_image(image[..., :-1], scale, upscale_luma)
        alpha_pixels = from_float(np.clip(upscaled_alpha, 0.0, 1.0), image.dtype)
        return np.concatenate([rest.reshape(*rest.shape[:2], -1), alpha_pixels[..., None]], -1)
    if values.ndim == 2:
        return from_float(upscale_gray(values, upscale_luma), image.dtype)
    channels = values.shape[2]
    if channels in (1, 2):
        planes = [upscale_gray(values[..., 0], upscale_luma)]
        if channels == 2:
            planes.append(bicubic_upscale(values[..., 1], scale))
        return from_float(np.stack(planes, axis=-1), image.dtype)
    ycbcr = rgb_to_ycbcr(values[..., :3])
    luma = upscale_luma(np.ascontiguousarray(ycbcr[..., 0]))
    # Chroma (and alpha) share one separable pass: they are only interpolated.
    rest = np.concatenate([ycbcr[..., 1:], values[..., 3:]], axis=-1)
    rest_up = bicubic_upscale(rest, scale)
    rgb = ycbcr_to_rgb(np.concatenate([luma[..., None], rest_up[..., :2]], axis=-1))
    return from_float(np.concatenate([rgb, rest_up[..., 2:]], axis=-1), image.dtype)


# --- video planes (YUV as decoded; no RGB round trip) ---------------------------------------
#
# A video frame's Y plane is fed to the network as it is, as studio-range luma: for BT.601
# studio-range video that is exactly the Y the image path computes from RGB (section 1); for
# BT.709/BT.2020 video it is that standard's luma, which the network treats the same way (it
# was trained on a luma plane, not on RGB). Limited-range ("tv") samples of b bits hold
# Y * 255 * 2**(b - 8): 8-bit 16..235 and 10-bit 64..940 both map to [16, 235] / 255, so a
# 10-bit plane is divided by 1020, not 1023. Full-range ("pc", yuvj) luma is a gray plane:
# mapped into studio range and back as gray images are (gray_to_luma / luma_to_gray). Chroma
# is only interpolated (bicubic at its own subsampled size), like the image path's Cb and Cr.


def limited_gain(bits: int) -> float:
    """What a limited-range sample of ``bits`` bits holds per unit of studio-range Y."""
    return 255.0 * 2.0 ** (bits - 8)


def video_luma(plane: np.ndarray, bits: int, full_range: bool) -> np.ndarray:
    """An integer Y plane of ``bits`` bits -> float32 studio-range Y, the network's input."""
    values = plane.astype(np.float32)
    if full_range:
        return gray_to_luma(values * np.float32(1.0 / (2**bits - 1)))
    return values * np.float32(1.0 / limited_gain(bits))


def _to_samples(values: np.ndarray, bits: int, dtype: np.dtype | type) -> np.ndarray:
    """float32 sample values -> integers of ``bits`` bits: clipped, rounded half to even."""
    xp = array_module(values)
    return xp.rint(xp.clip(values, 0.0, float(2**bits - 1))).astype(dtype)


def video_luma_samples(
    luma: np.ndarray, bits: int, full_range: bool, dtype: np.dtype | type
) -> np.ndarray:
    """Inverse of :func:`video_luma` on the network's output: an integer Y plane."""
    if full_range:
        values = luma_to_gray(luma) * np.float32(2**bits - 1)
    else:
        values = luma * np.float32(limited_gain(bits))
    return _to_samples(values, bits, dtype)


def upscale_chroma(plane: np.ndarray, scale: int, shape: tuple[int, int], bits: int) -> np.ndarray:
    """An integer chroma plane upscaled bicubically at its own size, cut to ``shape`` (the
    output frame's chroma size: ceil(scale * H / subsampling), which is smaller than scale
    times the input's rounded-up chroma size where H is odd)."""
    upscaled = bicubic_upscale(plane, scale)[: shape[0], : shape[1]]
    return _to_samples(upscaled, bits, plane.dtype)
