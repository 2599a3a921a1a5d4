"""Inference API: load once, call per image or frame.

>>> from srcnn_fast.infer import Upscaler
>>> up = Upscaler(scale=2)          # shipped x2 weights, best backend available
>>> big = up(image)                 # numpy array in, numpy array of the same kind out

Images are (H, W) luma, (H, W, 3) RGB or (H, W, 4) RGBA (also (H, W, 1) and (H, W, 2) gray +
alpha), uint8, uint16 or float32 in [0, 1]. The result has the same layout and dtype, ``scale``
times larger. Integer results are clipped and rounded half to even; float32 results are the
network's output, unclipped. This module never imports TensorFlow.

Large images are upscaled in tiles (``tile=``; by default only when the image would not fit
the free memory), with a halo from the network's receptive field so that the result is bit
for bit the untiled one; :meth:`Upscaler.upscale_bands` hands the output over in row bands so
that a file writer never holds it whole.

Video frames go through :meth:`Upscaler.upscale_planes` as YUV planes (SRCNN on Y as decoded,
chroma bicubic at its own size, no RGB round trip), and :meth:`Upscaler.stream` upscales an
iterable of frames or planes with decoding, upscaling and consuming overlapped.

JPEG inputs: with the shipped weights, a scale that also ships JPEG-aware weights
(``srcnn_x{S}_jpeg.npz``, trained on JPEG-compressed LR images) has two sets, and
``degradation=`` picks between them ("auto", "clean" or "jpeg"; per call too). "auto" follows
the rules of :mod:`srcnn_fast.weights_choice` on a hint about the input, measured by the code
that reads it: ``hint=`` an :class:`~srcnn_fast.weights_choice.ImageHint` for an image file
(:func:`srcnn_fast.jpeg.image_hint`: the JPEG-aware weights for a JPEG of quality at most the
scale's threshold, 88), a stream's codec and mean quantiser for video
(:meth:`Upscaler.weights_for_video`), and the clean weights for bare arrays, whose history it
cannot know (a caller that does passes ``degradation=``). This module reads no file but
weights, and imports no video code.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from . import imageops, pipeline, tiling
from .backends import BACKEND_ENV, Backend, create_backend
from .errors import ImageError, WeightsError
from .model import SRCNNWeights
from .weights_choice import (
    DEGRADATIONS,
    ImageHint,
    WeightsChoice,
    choose_for_image,
    choose_for_video,
)

__all__ = [
    "DEGRADATIONS",
    "SHIPPED_SCALES",
    "Upscaler",
    "WeightsChoice",
    "load_weights",
    "shipped_jpeg_weights_path",
    "shipped_weights_path",
    "upscale",
]

SHIPPED_SCALES = (2, 3, 4)
DEFAULT_SCALE = 2

WeightsLike = SRCNNWeights | str | os.PathLike[str] | None

#: Working memory per output pixel, in bytes, of the widest step of the pipeline (float32
#: planes for luma, chroma, alpha and their conversions; measured peak for RGBA: ~60).
WORK_BYTES_PER_OUTPUT_PIXEL = 64
#: Most memory the default tiling lets one tile use: bigger tiles gain nothing measurable.
MAX_TILE_BYTES = 1 << 30
#: Smallest automatic tile side, in LR pixels (below it the halo dominates the work).
MIN_AUTO_TILE = 64


def available_memory() -> int:
    """Bytes of RAM available to this process now (MemAvailable), or a cautious guess."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2 << 30


def shipped_weights_path(scale: int, degradation: str = "clean") -> Path:
    """Path of the weights file shipped inside the package for ``scale``: the clean ones, or
    with ``degradation="jpeg"`` the JPEG-aware ones (which may not exist for every scale:
    :func:`shipped_jpeg_weights_path`)."""
    if scale not in SHIPPED_SCALES:
        shipped = ", ".join(map(str, SHIPPED_SCALES))
        raise WeightsError(
            f"no shipped weights for scale {scale} (shipped: {shipped}); pass weights=FILE"
        )
    suffix = "_jpeg" if degradation == "jpeg" else ""
    return Path(str(resources.files("srcnn_fast") / "weights" / f"srcnn_x{scale}{suffix}.npz"))


def shipped_jpeg_weights_path(scale: int) -> Path | None:
    """The shipped JPEG-aware weights for ``scale``, or None where there are none (yet): a
    scale gains them by the file alone."""
    if scale not in SHIPPED_SCALES:
        return None
    path = shipped_weights_path(scale, "jpeg")
    return path if path.is_file() else None


def _check_degradation(degradation: object) -> str:
    if degradation not in DEGRADATIONS:
        raise ImageError(
            f"degradation must be one of {', '.join(DEGRADATIONS)}, not {degradation!r}"
        )
    return str(degradation)


def load_weights(weights: WeightsLike, scale: int | None) -> SRCNNWeights:
    """The weights ``weights`` names (None: the shipped ones for ``scale``, default 2),
    refused if they are for another scale than ``scale`` (None: any)."""
    if weights is None:
        return SRCNNWeights.load(shipped_weights_path(scale or DEFAULT_SCALE))
    if not isinstance(weights, SRCNNWeights):
        weights = SRCNNWeights.load(weights)
    if scale is not None and weights.scale != scale:
        raise WeightsError(f"{weights.source}: weights are for scale {weights.scale}, not {scale}")
    return weights


def check_image(image: object) -> np.ndarray:
    """Validate an input array; raise :class:`ImageError` with a one-line reason.

    numpy arrays, and CuPy arrays (GPU memory, for the ``cuda`` backend), are accepted.
    """
    on_gpu = hasattr(image, "__cuda_array_interface__")
    if not isinstance(image, np.ndarray) and not on_gpu:
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if not image.dtype.isnative and image.dtype.newbyteorder("=") in imageops.SUPPORTED_DTYPES:
        # Big-endian samples (FITS files, np.frombuffer of PNG rows) are the same numbers:
        # take a native copy rather than refuse them with a dtype that reads like uint16.
        image = image.astype(image.dtype.newbyteorder("="))
    if image.dtype not in imageops.SUPPORTED_DTYPES:
        raise ImageError(f"unsupported dtype {image.dtype} (use uint8, uint16 or float32)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"unsupported shape {image.shape} (use HxW, HxWx1, HxWx2, HxWx3 or HxWx4)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image has zero size {image.shape}")
    if image.dtype == np.float32:
        if on_gpu:
            import cupy

            finite = bool(cupy.isfinite(image).all())
        else:
            finite = bool(np.isfinite(image).all())
        if not finite:
            raise ImageError("image contains NaN or infinity")
    return image


class Upscaler:
    """SRCNN upscaler with weights and backend loaded once; call it per image.

    ``weights``: None for the shipped file of ``scale``, a path to a raw-array weights file, or
    an :class:`~srcnn_fast.model.SRCNNWeights`. ``scale`` defaults to the weights' scale (2 for
    the shipped default). ``backend``: ``auto`` (the best available; the ``SRCNN_FAST_BACKEND``
    environment variable overrides it) or a name from :data:`srcnn_fast.backends.BACKEND_NAMES`.
    ``precision``: "fp32", or "fp16" for the CUDA backend's tensor-core mode (float16 inputs and
    weights, float32 accumulation; measured Set5 PSNR cost at most 0.0012 dB), or "bf16" for the
    cpu backend's AVX512_BF16 mode (bfloat16 inputs and weights, float32 accumulation; refused
    on a CPU without AVX512_BF16; its PSNR cost: docs/performance.md), or "int8" for the cpu
    backend's VNNI mode (conv1 and conv2 as 8-bit integer dot products with the scales
    calibrated in the weights file, conv3 in bf16 or float32; refused on a CPU without
    AVX512_VNNI / AVX-VNNI and for weights without int8 calibration).
    ``alpha``: "bicubic" (default) or "network" (alpha through the network as a gray plane).
    ``tile``: LR tile side for large images; None picks one from free memory when the image
    needs it, 0 never tiles.
    ``degradation``: "auto" (default), "clean" or "jpeg": which weights each input gets (see
    the module docstring). ``jpeg_weights``: the JPEG-aware weights paired with ``weights``
    (default: the shipped ones of the scale, when ``weights`` is the shipped default too;
    with ``weights=`` given alone, those serve every input).
    """

    def __init__(
        self,
        scale: int | None = None,
        weights: WeightsLike = None,
        backend: str = "auto",
        precision: str = "fp32",
        alpha: str = "bicubic",
        tile: int | None = None,
        degradation: str = "auto",
        jpeg_weights: WeightsLike = None,
    ) -> None:
        self.degradation = _check_degradation(degradation)
        if scale is not None and (
            not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 1
        ):
            raise WeightsError(f"scale must be a positive integer, got {scale!r}")
        self.weights = load_weights(weights, None if scale is None else int(scale))
        self.scale = self.weights.scale
        if alpha not in imageops.ALPHA_MODES:
            raise ImageError(
                f"alpha must be one of {', '.join(imageops.ALPHA_MODES)}, not {alpha!r}"
            )
        if tile is not None and (not isinstance(tile, (int, np.integer)) or tile < 0):
            raise ImageError(f"tile must be a non-negative integer (0: no tiling), not {tile!r}")
        self.alpha = alpha
        self.tile = tile
        arch = self.weights.arch
        self.halo = tiling.tile_halo(
            [(f - 1) // 2 for f in (arch.f1, arch.f2, arch.f3)], self.scale
        )
        self.backend = create_backend(backend, self.weights, precision)
        # The JPEG-aware pair (the shipped file, or jpeg_weights), its backend built on first use.
        self._user_weights = weights is not None and jpeg_weights is None
        self._jpeg_weights: WeightsLike = jpeg_weights
        if jpeg_weights is None and weights is None:
            self._jpeg_weights = shipped_jpeg_weights_path(self.scale)
        self._jpeg_backend = None
        self._backend_options = (backend, precision)
        self.precision = precision
        self._jpeg_lock = threading.Lock()

    @property
    def has_jpeg_weights(self) -> bool:
        """Whether there are JPEG-aware weights to choose (shipped, or ``jpeg_weights``)."""
        return self._jpeg_weights is not None

    def weights_for(
        self, hint: ImageHint | None = None, degradation: str | None = None
    ) -> WeightsChoice:
        """The weights an image gets, and why. ``hint``: what the file code measured about the
        file the pixels came from (:func:`srcnn_fast.jpeg.image_hint`; None: a bare array);
        ``degradation``: this input's own setting, replacing the upscaler's."""
        if hint is not None and not isinstance(hint, ImageHint):
            raise TypeError(
                f"hint must be an ImageHint (srcnn_fast.jpeg.image_hint(path)), "
                f"not {type(hint).__name__}"
            )
        forced = self._forced_choice(degradation)
        return forced if forced is not None else choose_for_image(hint, self.scale)

    def weights_for_video(self, codec: str, mean_qp: float | None) -> WeightsChoice:
        """The weights a video stream's frames get, and why: ``codec`` (PyAV's decoder name)
        and the mean quantiser of its first frames, as the video code read it
        (:func:`srcnn_fast.video_quantiser.first_frames_mean_qp`; None: not read)."""
        forced = self._forced_choice(None)
        return forced if forced is not None else choose_for_video(codec, mean_qp, self.scale)

    def _forced_choice(self, degradation: str | None) -> WeightsChoice | None:
        """The choice when nothing about the input matters (weights given, a degradation
        asked for, no JPEG-aware weights); None where "auto" must look at the input."""
        wanted = self.degradation if degradation is None else _check_degradation(degradation)
        if self._user_weights:
            return WeightsChoice("given", str(self.weights.source))
        if wanted == "clean":
            return WeightsChoice("clean", "asked for clean")
        if self._jpeg_weights is None:
            return WeightsChoice("clean", f"no JPEG-aware weights for x{self.scale} yet")
        if wanted != "auto":
            return WeightsChoice(wanted, f"asked for {wanted}")
        return None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def __call__(
        self,
        image: np.ndarray,
        tile: int | None = None,
        degradation: str | None = None,
        hint: ImageHint | None = None,
    ) -> np.ndarray:
        """Upscale one image (tiled when it is large; see ``tile`` in the class docstring).
        ``degradation`` and ``hint``: this input's setting and file hint (:meth:`weights_for`)."""
        image = check_image(image)
        backend = self.backend_for(self.weights_for(hint, degradation))
        tile = self.tile_size(image, tile)
        if tile == 0:
            return self._upscale_whole(image, backend)
        out = np.empty(self.output_shape(image), image.dtype)
        for rows, band in self._bands(image, tile, backend):
            out[rows] = band
        return out

    def upscale_bands(
        self,
        image: np.ndarray,
        tile: int | None = None,
        degradation: str | None = None,
        hint: ImageHint | None = None,
    ) -> Iterator[np.ndarray]:
        """The upscaled image as consecutive bands of rows, computed one band at a time."""
        image = check_image(image)
        backend = self.backend_for(self.weights_for(hint, degradation))
        tile = self.tile_size(image, tile)
        if tile == 0:
            yield self._upscale_whole(image, backend)
            return
        for _, band in self._bands(image, tile, backend):
            yield band

    def weights_file(self, choice: WeightsChoice) -> str:
        """Where the weights ``choice`` runs come from: a file's path, or a name
        ("<random>") for weights made in memory (a resume record hashes the file)."""
        if choice.weights == "jpeg" and self._jpeg_weights is not None:
            jpeg = self._jpeg_weights
            return str(jpeg.source if isinstance(jpeg, SRCNNWeights) else os.fspath(jpeg))
        return str(self.weights.source)

    def weights_sha256(self, choice: WeightsChoice) -> str:
        """SHA-256 of the weights ``choice`` runs: of their file, or for weights made in
        memory of their arrays (:meth:`~srcnn_fast.model.SRCNNWeights.content_sha256`)."""
        source = self.weights_file(choice)
        if os.path.isfile(source):
            digest = hashlib.sha256()
            with open(source, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
        jpeg = choice.weights == "jpeg" and self._jpeg_weights is not None
        weights = self._jpeg_weights if jpeg else self.weights
        if not isinstance(weights, SRCNNWeights):
            weights = load_weights(weights, self.scale)
        return weights.content_sha256()

    def backend_for(self, choice: WeightsChoice) -> Backend:
        """The backend that runs ``choice``'s weights (the JPEG-aware one built once, on first
        use, with the same backend and precision: the same architecture runs anywhere). A
        caller that knows its choice early calls this first, so that loading and compiling
        do not stall its first frame."""
        if choice.weights != "jpeg":
            return self.backend
        with self._jpeg_lock:
            if self._jpeg_backend is None:
                jpeg_weights = load_weights(self._jpeg_weights, self.scale)
                if (jpeg_weights.arch, jpeg_weights.scale) != (self.weights.arch, self.scale):
                    # The tiling halo and every backend were sized for the clean weights.
                    raise WeightsError(
                        f"{jpeg_weights.source}: {jpeg_weights.arch.name} x{jpeg_weights.scale}, "
                        f"but the clean weights are {self.weights.arch.name} x{self.scale}"
                    )
                self._jpeg_backend = create_backend(
                    self._backend_options[0], jpeg_weights, self._backend_options[1]
                )
            return self._jpeg_backend

    def output_shape(self, image: np.ndarray) -> tuple[int, ...]:
        return (image.shape[0] * self.scale, image.shape[1] * self.scale, *image.shape[2:])

    def tile_size(self, image: np.ndarray, tile: int | None = None) -> int:
        """The LR tile side used for ``image``: 0 for none (GPU arrays are never tiled)."""
        tile = self.tile if tile is None else tile
        if not isinstance(image, np.ndarray):
            return 0
        if tile is None:
            free = available_memory()
            backend_free = getattr(self.backend, "free_memory", None)
            if backend_free is not None:
                free = min(free, backend_free())
            budget = min(free // 4, MAX_TILE_BYTES)
            out_pixels = image.shape[0] * image.shape[1] * self.scale**2
            if out_pixels * WORK_BYTES_PER_OUTPUT_PIXEL <= budget:
                return 0
            side = int((budget / WORK_BYTES_PER_OUTPUT_PIXEL) ** 0.5) // self.scale
            tile = max(side - 2 * self.halo, MIN_AUTO_TILE)
        return 0 if tile >= max(image.shape[:2]) else int(tile)

    def _bands(self, image: np.ndarray, tile: int, backend) -> Iterator[tuple[slice, np.ndarray]]:
        height, width = image.shape[:2]
        for rows, tiles in tiling.tile_bands(height, width, tile, self.halo, self.scale):
            band = np.empty(
                (rows.stop - rows.start, width * self.scale, *image.shape[2:]), image.dtype
            )
            for t in tiles:
                band[t.target] = self._upscale_whole(image[t.source], backend)[t.keep]
            yield rows, band

    def _upscale_whole(self, image: np.ndarray, backend) -> np.ndarray:
        has_alpha = image.ndim == 3 and image.shape[2] in (2, 4)
        whole_pipeline = getattr(backend, "upscale_pixels", None)
        if whole_pipeline is not None and not (has_alpha and self.alpha == "network"):
            return whole_pipeline(image)
        if not isinstance(image, np.ndarray):
            raise ImageError(f"the {self.backend_name} backend takes numpy arrays, not GPU arrays")
        return imageops.upscale_image(image, self.scale, backend.upscale_luma, self.alpha)

    def upscale_planes(
        self,
        planes: Sequence[np.ndarray],
        bits: int | None = None,
        full_range: bool = False,
        out: Sequence[np.ndarray] | None = None,
        degradation: str | None = None,
    ) -> list[np.ndarray]:
        """Upscale one video frame given as its planes: Y, or Y, U, V (any chroma subsampling).

        Y goes through the network as studio-range luma (see ``imageops.video_luma``; full
        range, ``full_range=True``, is mapped into it and back), U and V are upscaled
        bicubically at their own size. Planes are uint8 or uint16 holding ``bits``-bit samples
        (default 8 for uint8, 16 for uint16; pass 10 for 10-bit video). The result is the
        planes of the ``scale`` times larger frame, same dtypes; chroma of an odd-sized frame
        is ceil(scale * H / subsampling) high. On the ``cuda`` backend NumPy planes are uploaded
        once and downloaded once, CuPy planes stay on the GPU (and come back as CuPy arrays).
        ``out``: arrays of the output planes' shapes and dtype to write into (strided views
        of an encoder frame's planes, say), as NumPy's ``out=``; returned. ``degradation``:
        this frame's hint, as for ``__call__`` (under "auto" bare planes get the clean
        weights; :meth:`weights_for_video` chooses for a whole stream).
        """
        backend = self.backend_for(self.weights_for(None, degradation))
        if len(planes) not in (1, 3):
            raise ImageError(f"expected Y or Y, U, V planes, got {len(planes)} planes")
        y = planes[0]
        dtype = np.dtype(y.dtype)
        if dtype not in imageops.INTEGER_SCALES or any(
            np.dtype(p.dtype) != dtype or p.ndim != 2 or 0 in p.shape for p in planes
        ):
            raise ImageError(
                "planes must be non-empty 2-D uint8 or uint16 arrays of one dtype, got "
                + ", ".join(f"{p.dtype} {tuple(p.shape)}" for p in planes)
            )
        bits = bits if bits is not None else (8 if dtype == np.uint8 else 16)
        if not 8 <= bits <= 8 * dtype.itemsize:
            raise ImageError(f"{bits}-bit samples do not fit {dtype}")
        on_gpu = hasattr(y, "__cuda_array_interface__")
        xp = getattr(getattr(self.backend, "device", None), "xp", None)
        if xp is None or xp is np:
            if on_gpu:
                raise ImageError(
                    f"the {self.backend_name} backend takes numpy arrays, not GPU arrays"
                )
            xp = np
        s = self.scale
        height, width = y.shape
        shapes = [(height * s, width * s)] + [
            (_subsampled(height * s, height, p.shape[0]), _subsampled(width * s, width, p.shape[1]))
            for p in planes[1:]
        ]
        if out is not None and (
            len(out) != len(planes)
            or any(
                o.shape != shape or o.dtype != dtype for o, shape in zip(out, shapes, strict=True)
            )
        ):
            raise ImageError(
                f"out= must be {len(planes)} {dtype} arrays of shapes {shapes}, got "
                + ", ".join(f"{o.dtype} {tuple(o.shape)}" for o in out)
            )
        if xp is np and self.backend_name == "cpu":
            # The samples read and written in place, the passes around the network fused.
            from .backends.cpu_pixels import upscale_planes

            target = list(out) if out is not None else [np.empty(sh, dtype) for sh in shapes]
            return upscale_planes(list(planes), s, bits, full_range, backend.upscale_luma, target)
        planes = [xp.asarray(p) for p in planes]  # the one upload on the cuda backend
        luma = backend.upscale_luma(imageops.video_luma(planes[0], bits, full_range))
        result = [imageops.video_luma_samples(luma, bits, full_range, dtype)]
        for plane, shape in zip(planes[1:], shapes[1:], strict=True):
            result.append(imageops.upscale_chroma(plane, s, shape, bits))
        if xp is not np and not on_gpu:
            result = [o.get() for o in result]  # the one download
        if out is None:
            return result
        for target, values in zip(out, result, strict=True):
            target[...] = values
        return list(out)

    def stream(
        self,
        frames: Iterable[np.ndarray | Sequence[np.ndarray]],
        bits: int | None = None,
        full_range: bool = False,
        depth: int = 2,
        times: pipeline.StageTimes | None = None,
        degradation: str | None = None,
    ) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Upscale a stream of frames, in order, while the caller consumes the results.

        Each item is an image array (as for ``__call__``) or a tuple/list of YUV planes (as
        for :meth:`upscale_planes`, with ``bits`` and ``full_range``). ``frames`` is iterated
        in a thread of its own and the upscaling runs in another, ``depth`` frames ahead at
        most, so a decoder feeding it, the upscale and the caller's loop (an encoder) overlap.
        ``times`` (a :class:`~srcnn_fast.pipeline.StageTimes`) collects which stage held the
        others back. ``degradation``: the frames' hint, as for ``__call__`` (a decoder's
        frames under "auto" get the clean weights; :meth:`weights_for_video` chooses from a
        stream's quantiser). Closing the generator stops both threads.
        """
        if degradation is not None:  # refused here, not in the upscale thread
            _check_degradation(degradation)

        def one(frame: np.ndarray | Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
            if isinstance(frame, (tuple, list)):
                return self.upscale_planes(frame, bits, full_range, degradation=degradation)
            return self(frame, degradation=degradation)

        return pipeline.pipelined(frames, one, depth, times)

    def __repr__(self) -> str:
        return (
            f"Upscaler(scale={self.scale}, weights={self.weights.source!r}, "
            f"backend={self.backend_name!r})"
        )


def _subsampled(full: int, full_input: int, plane_input: int) -> int:
    """Size of a chroma axis of a ``full``-pixel frame, subsampled as ``plane_input`` is in a
    ``full_input``-pixel one (by 1, 2 or 4; sizes rounded up, as FFmpeg's formats do)."""
    factor = 1
    while -(-full_input // factor) > plane_input:
        factor *= 2
    return -(-full // factor)


_cache: dict[tuple[object, ...], Upscaler] = {}
_cache_lock = threading.Lock()


def upscale(
    image: np.ndarray,
    scale: int | None = None,
    weights: WeightsLike = None,
    backend: str = "auto",
) -> np.ndarray:
    """One-call form of :class:`Upscaler` (``scale``: the weights' own, or 2 for the shipped).

    For shipped or file weights the upscaler is cached per (scale, weights file, backend), so
    repeated calls pay the loading cost once; a weights object builds a fresh one.
    """
    if isinstance(weights, SRCNNWeights):
        return Upscaler(scale, weights, backend)(image)
    path = None if weights is None else os.path.abspath(os.fspath(weights))
    key = (scale, path, backend, os.environ.get(BACKEND_ENV))
    with _cache_lock:
        upscaler = _cache.get(key)
        if upscaler is None:
            upscaler = _cache[key] = Upscaler(scale, weights, backend)
    return upscaler(image)
