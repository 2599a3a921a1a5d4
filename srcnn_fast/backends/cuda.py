"""CUDA backend: our own kernels (``kernels/*.cu``), compiled with NVRTC and launched via CuPy.

The whole pipeline runs on the GPU: ``srcnn_unpack`` turns packed 8/16-bit (or float) pixels
into luma/chroma/alpha planes, ``srcnn_fused_f32`` runs bicubic + the three convolutions, and
``srcnn_pack`` upscales chroma/alpha, converts back to RGB, rounds and packs. Only packed pixels
cross the bus; CuPy arrays in give CuPy arrays out with no host copy at all.

The host-side logic (constants, launch geometry, buffers) is written against a tiny "device"
interface, so the tests run this exact code with the CUDA-on-CPU harness standing in for CuPy
(``tests/cudacpu``): CuPy is only the thing that owns GPU memory and launches.

Modules, imported one way: :mod:`.cuda_common` (what every precision shares) <- one module per
precision, each building its network kernel (:mod:`.cuda_fp32`, :mod:`.cuda_tensorcore` for
"fp16") <- this one, which picks the precision and runs the pipeline.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import imageops
from ..errors import BackendError, ImageError
from ..model import SRCNNWeights
from .cuda_common import (
    MAX_SCALE,
    THREADS,
    Device,
    Module,
    NetworkKernel,
    bicubic_constants,
    compile_options,
    kernel_dir,
)
from .cuda_fp32 import fp32_network
from .cuda_fp32 import tile_for as tile_for  # re-exported: the tests pick tiles with it
from .cuda_tensorcore import tensorcore_network, tensorcore_problem
from .plans import PlanCache

#: The precision modes and the module that builds each one's network kernel.
PRECISIONS = {"fp32": fp32_network, "fp16": tensorcore_network}


def colour_constants() -> dict[str, np.ndarray]:
    """The BT.601 matrices of imageops for srcnn_pixels.cu."""
    return {
        "c_rgb_to_ycc": imageops.RGB_TO_YCBCR.astype(np.float32).reshape(-1),
        "c_ycc_offset": imageops.YCBCR_OFFSET.astype(np.float32),
        "c_ycc_to_rgb": imageops.YCBCR_TO_RGB.astype(np.float32).reshape(-1),
    }


def network_kernel(
    weights: SRCNNWeights, max_shared_bytes: int, precision: str = "fp32"
) -> NetworkKernel:
    """The network kernel of a precision mode."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r} (use fp32 or fp16)")
    return PRECISIONS[precision](weights, max_shared_bytes)


def pixel_build() -> tuple[Path, tuple[str, ...]]:
    """(source, options) of the unpack/pack kernels."""
    return kernel_dir() / "srcnn_pixels.cu", (f"-DSRCNN_MAX_SCALE={MAX_SCALE}",)


def kernel_builds(
    weights: SRCNNWeights, max_shared_bytes: int, precision: str = "fp32"
) -> list[tuple[Path, tuple[str, ...]]]:
    """Every (source, options) the backend compiles for these weights on such a device."""
    network = network_kernel(weights, max_shared_bytes, precision)
    return [(network.source, network.options), pixel_build()]


@dataclass
class _Buffers:
    planes: Any
    luma: Any


class Pipeline:
    """Host-side driver of the three kernels for one set of weights on one device."""

    def __init__(self, weights: SRCNNWeights, device: Device, precision: str = "fp32") -> None:
        self.weights, self.device, self.scale = weights, device, weights.scale
        self.precision = precision
        if precision == "fp16" and (problem := tensorcore_problem(device)):
            raise BackendError(problem)
        network = network_kernel(weights, device.max_shared_bytes, precision)
        self.tile, self.shared_bytes = network.tile, network.shared_bytes
        self.fused_module = device.compile(network.source, network.options)
        for name, value in network.constants.items():
            self.fused_module.set_constant(name, value)
        self.fused = self.fused_module.get_function(network.name)
        self.fused.max_dynamic_shared_size_bytes = self.shared_bytes
        self.pixel_module = device.compile(*pixel_build())
        bicubic_w, bicubic_origin = bicubic_constants(self.scale)
        self.pixel_module.set_constant("c_bicubic_weight", bicubic_w)
        self.pixel_module.set_constant("c_bicubic_origin", bicubic_origin)
        for name, value in colour_constants().items():
            self.pixel_module.set_constant(name, value)
        self.unpack = self.pixel_module.get_function("srcnn_unpack")
        self.pack = self.pixel_module.get_function("srcnn_pack")
        self._buffers: PlanCache = PlanCache()
        #: Calls share the buffers and launch in order on one stream: one call at a time.
        self.lock = threading.Lock()

    def _buffers_for(self, frames: int, h: int, w: int) -> _Buffers:
        """Planes and HR luma for this batch and frame size, reused for each size in use."""
        xp, s = self.device.xp, self.scale
        return self._buffers.get_or_build(
            (frames, h, w),
            lambda: _Buffers(
                xp.empty((frames, 4, h, w), np.float32),
                xp.empty((frames, h * s, w * s), np.float32),
            ),
        )

    def luma(self, lr: Any, out: Any) -> None:
        """Network on a batch of LR luma planes (frames, h, w) into out (frames, sH, sW)."""
        frames, h, w = lr.shape
        s = self.scale
        grid = (
            -(-w * s // self.tile[1]),
            -(-h * s // self.tile[0]),
            frames,
        )
        self.fused(
            grid,
            (THREADS,),
            (
                lr,
                np.int32(lr.strides[1] // 4),
                np.int64(lr.strides[0] // 4),
                np.int32(h),
                np.int32(w),
                np.int32(s),
                out,
                np.int32(out.strides[1] // 4),
                np.int64(out.strides[0] // 4),
            ),
            shared_mem=self.shared_bytes,
        )

    def pixels(self, image: Any) -> Any:
        """A batch of packed images (frames, h, w, c) -> upscaled (frames, sh, sw, c)."""
        xp, s = self.device.xp, self.scale
        frames, h, w, channels = image.shape
        bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16, np.dtype(np.float32): 32}[
            np.dtype(image.dtype)
        ]
        buffers = self._buffers_for(frames, h, w)
        image = xp.ascontiguousarray(image)
        out = xp.empty((frames, h * s, w * s, channels), image.dtype)
        n, n_hr = h * w, h * w * s * s
        for f in range(frames):
            planes = buffers.planes[f]
            self.unpack(
                (-(-n // THREADS),),
                (THREADS,),
                (image[f], np.int32(bits), np.int32(channels), np.int64(n), planes),
            )
        self.luma(buffers.planes[:, 0], buffers.luma)
        for f in range(frames):
            self.pack(
                (-(-n_hr // THREADS),),
                (THREADS,),
                (
                    buffers.luma[f],
                    buffers.planes[f],
                    np.int32(h),
                    np.int32(w),
                    np.int32(s),
                    np.int32(channels),
                    np.int32(bits),
                    out[f],
                ),
            )
        return out


class CupyDevice:
    """CuPy on the current GPU; compiled modules are cached by CuPy on disk per device."""

    def __init__(self, stream: Any = None) -> None:
        import cupy

        self.xp = cupy
        self.stream = stream
        device = cupy.cuda.Device()
        self.max_shared_bytes = int(
            device.attributes.get("MaxSharedMemoryPerBlockOptin", 48 * 1024)
        )
        self.compute_capability: str = device.compute_capability  # e.g. "80"

    def compile(self, source: Path, options: tuple[str, ...]) -> Module:
        import cupy

        # CuPy's on-disk cache is keyed on the code and options, not on #included files:
        # name the headers' content in the code so a changed header recompiles.
        headers = hashlib.sha256(
            b"".join(h.read_bytes() for h in sorted(source.parent.glob("*.cuh")))
        ).hexdigest()
        code = f"// srcnn-fast headers sha256 {headers}\n{source.read_text()}"
        try:
            raw = cupy.RawModule(code=code, options=compile_options(source, options))
            raw.compile()
        except Exception as exc:  # NVRTC missing or failing, driver mismatch: one line
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BackendError(
                f"cannot compile {source.name} for this GPU ({type(exc).__name__}: {message})"
            ) from None
        return _CupyModule(raw)


class _CupyModule:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def get_function(self, name: str) -> Any:
        return self.raw.get_function(name)

    def set_constant(self, name: str, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array)
        self.raw.get_global(name).copy_from_host(data.ctypes.data, data.nbytes)


@functools.cache
def cuda_problem() -> str | None:
    """None if CuPy and a usable GPU are here, else why not (probed once per process: every
    Upscaler and ``srcnn-fast info`` asks)."""
    # Without the driver library no GPU can run, and importing CuPy to find that out costs
    # about a second of every CPU-only process's start.
    driver = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(driver)
    except OSError:
        return f"no NVIDIA driver ({driver} not found)"
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'srcnn-fast[cuda12]' or '[cuda13]')"
    except Exception as exc:  # a broken CUDA install raises all sorts at import
        return f"CuPy failed to import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no usable NVIDIA GPU ({type(exc).__name__}: {exc})"
    return None if count > 0 else "no NVIDIA GPU found"


def _on(stream: Any) -> Any:
    """Context that makes ``stream`` current for CuPy launches (nothing if None)."""
    return stream if stream is not None else nullcontext()


class CudaBackend:
    """``upscale_luma`` for the common interface, plus ``upscale_pixels`` for the whole image.

    ``precision``: "fp32" (default) or "fp16" (tensor cores, float32 accumulation).
    """

    name = "cuda"

    def __init__(
        self,
        weights: SRCNNWeights,
        device: Device | None = None,
        stream: Any = None,
        precision: str = "fp32",
    ) -> None:
        self.weights = weights
        self.precision = precision
        self.device = device or CupyDevice(stream)
        self.pipeline = Pipeline(weights, self.device, precision)

    def free_memory(self) -> int:
        """Device memory free for our buffers, in bytes: sizes the automatic tiles."""
        xp = self.device.xp
        if xp is np:  # the CPU harness: host memory is the limit, and infer counts it
            return 1 << 62
        free, _ = xp.cuda.runtime.memGetInfo()
        return int(free) + int(xp.get_default_memory_pool().free_bytes())

    def upscale_luma(self, luma: Any) -> Any:
        xp, s = self.device.xp, self.weights.scale
        on_host = isinstance(luma, np.ndarray) and xp is not np
        with self.pipeline.lock, _on(self.device.stream):
            lr = xp.ascontiguousarray(xp.asarray(luma, dtype=np.float32))[None]
            out = xp.empty((1, lr.shape[1] * s, lr.shape[2] * s), np.float32)
            self.pipeline.luma(lr, out)
            return out[0].get() if on_host else out[0]

    def upscale_pixels(self, image: Any) -> Any:
        """(h, w[, c]) or a batch (frames, h, w, c) of packed pixels -> the upscaled pixels.

        uint8, uint16 or float32; c from 1 to 4 (gray, gray + alpha, RGB, RGBA). Safe to call
        from several threads (calls run one at a time).
        """
        xp = self.device.xp
        on_host = isinstance(image, np.ndarray) and xp is not np
        if np.dtype(image.dtype) not in (np.uint8, np.uint16, np.float32):
            raise ImageError(f"unsupported dtype {image.dtype} (use uint8, uint16 or float32)")
        if image.ndim not in (2, 3, 4) or (image.ndim >= 3 and not 1 <= image.shape[-1] <= 4):
            raise ImageError(
                f"unsupported shape {tuple(image.shape)} (use HxW, HxWxC or NxHxWxC, C 1-4)"
            )
        squeeze_channels, single = image.ndim == 2, image.ndim <= 3
        with self.pipeline.lock, _on(self.device.stream):
            batch = xp.asarray(image)
            if squeeze_channels:
                batch = batch[..., None]
            if single:
                batch = batch[None]
            out = self.pipeline.pixels(batch)
            if single:
                out = out[0]
            if squeeze_channels:
                out = out[..., 0]
            return out.get() if on_host else out
