"""Speed of a whole frame, RGB uint8 in and RGB uint8 out, ours against peers in one run: what
the luma rows of test_speed hide (colour conversion, chroma, rounding and packing).

Ours is ``Upscaler(scale, backend="cpu")`` called on the frame (``cpu-bf16``: the same with
``precision="bf16"``, ``cpu-int8`` with ``"int8"``; each skipped with the backend's refusal
where the CPU lacks it). ``cpu-gray`` is the same Upscaler on the frame as one gray plane: one
network pass and little else, so 1 - gray / RGB, printed on the ``cpu`` row, is the share of
the frame's time spent outside the network (it has no peer ratio of its own); ``cpu-int8-gray``
the same for ``cpu-int8``.

Each peer is its network (the engines of peers.py, built for the upscaled frame's shape) plus
what a user puts around it with OpenCV: ``cvtColor`` to YCrCb on the float frame, ``resize``
with ``INTER_CUBIC`` of all three planes, Y through the network, ``cvtColor`` back to RGB,
round and clip to uint8.

Checks, before timing, against ``Upscaler(backend="reference")`` on the same frame:

- ours must match it to 1 level per channel (the float outputs differ by ~1e-6, which moves
  a value lying on a rounding boundary by one level), plus, for bf16, the network's tolerance
  carried into RGB (conftest.TOLERANCE["bf16"] x 255 x 255/219: YCbCr -> RGB multiplies a luma
  error by 255/219);
- a peer computes something else that no setting removes: OpenCV's YCrCb is full-range
  BT.601 (Y = 0.299 R + 0.587 G + 0.114 B in [0, 1], where the network was trained on studio
  range [16, 235] / 255) and ``INTER_CUBIC`` is Keys' cubic with a = -0.75 (ours, MATLAB's
  and Pillow's use a = -0.5). So a peer is held to a mean absolute difference of at most
  ``PEER_MEAN_LEVELS`` levels and a PSNR against our reference of at least ``PEER_PSNR_DB``
  (measured at 640x360 x3: 1.40 levels and 42.9 dB for the fp32 peers, 1.51 and 42.3 dB for
  OpenVINO bf16, max 15 levels); both are printed, and a broken pipeline (swapped channels, a
  wrong range) is far outside them.

Which peer network is fastest is settled by the luma rows (test_speed); these rows show how
much of a frame's time the rest takes, for us and for a user of each engine.
"""

from __future__ import annotations

import functools
import gc
import math

import cv2
import numpy as np
import pytest
from conftest import TOLERANCE, make_lr_plane, ours, peer_runner, rounds_for
from peers import CPU_PEERS, PEERS, Runner

from srcnn_fast.imageops import LUMA_TO_GRAY_GAIN
from srcnn_fast.infer import Upscaler, shipped_weights_path
from srcnn_fast.model import SRCNNWeights

#: (LR width, height), scale: 1080p from 360p at x3, 1440p from 720p at x2.
FRAMES = [((640, 360), 3), ((1280, 720), 2)]
#: Ours: name -> precision ("cpu-gray" is the cpu row's frame as one gray plane, and
#: "cpu-int8-gray" the cpu-int8 row's).
OURS = {
    "cpu": "fp32",
    "cpu-bf16": "bf16",
    "cpu-int8": "int8",
    "cpu-gray": "fp32",
    "cpu-int8-gray": "int8",
}
PEER_MEAN_LEVELS = 2.5
PEER_PSNR_DB = 38.0
#: An int8 peer adds its own quantisation: held to 3.5 levels and 36 dB instead (measured at
#: 640x360 x3 on a Zen 4: ONNX Runtime's quantize_static model 2.88 levels and 37.3 dB;
#: OpenVINO's NNCF model within the float bounds).
INT8_PEER_MEAN_LEVELS = 3.5
INT8_PEER_PSNR_DB = 36.0


def make_rgb_frame(width: int, height: int) -> np.ndarray:
    """A deterministic uint8 RGB frame: a shared smooth + detail plane (the luma structure)
    with a smaller one of its own per channel (colour that changes from pixel to pixel)."""
    base = make_lr_plane(width, height)
    channels = [0.7 * base + 0.3 * make_lr_plane(width, height, seed=c) for c in (1, 2, 3)]
    return np.rint(np.stack(channels, axis=-1) * 255).astype(np.uint8)


@functools.cache
def frame_case(size: tuple[int, int], scale: int):
    """Shipped weights, the frame, and the reference pipeline's result (computed once)."""
    weights = SRCNNWeights.load(shipped_weights_path(scale))
    frame = make_rgb_frame(*size)
    return weights, frame, Upscaler(scale, weights, backend="reference")(frame)


def opencv_frame_pipeline(network: Runner, scale: int) -> Runner:
    """A frame through ``network`` with the colour handling a user writes with OpenCV."""

    def run(frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        ycrcb = cv2.cvtColor(frame.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2YCrCb)
        big = cv2.resize(ycrcb, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
        big[..., 0] = network(np.ascontiguousarray(big[..., 0]))
        rgb = cv2.cvtColor(big, cv2.COLOR_YCrCb2RGB)
        return np.clip(np.rint(rgb * np.float32(255)), 0, 255).astype(np.uint8)

    return run


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


PARAMS = [
    pytest.param(size, scale, impl, id=f"frame-{size[0]}x{size[1]}-x{scale}-{impl}")
    for size, scale in FRAMES
    for impl in [*OURS, *CPU_PEERS]
]


@pytest.mark.parametrize(("size", "scale", "impl"), PARAMS)
def test_frame(benchmark, size: tuple[int, int], scale: int, impl: str) -> None:
    weights, frame, expected = frame_case(size, scale)
    info = {}
    if impl in OURS:
        precision = OURS[impl]
        upscaler = ours(impl, "cpu", lambda: Upscaler(scale, weights, "cpu", precision))
        gray = impl.endswith("-gray")
        if gray:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            info["gray_of"] = impl.removesuffix("-gray")
        holder = [upscaler]
        kind = "aux" if gray else "ours"
    else:
        out_shape = (size[1] * scale, size[0] * scale)
        holder = [opencv_frame_pipeline(peer_runner(impl, weights, out_shape), scale)]
        precision, kind = PEERS[impl].precision, "peer"

    def run() -> np.ndarray:
        return holder[0](frame)

    got = run()  # also the warm-up: compiles, allocates, builds plans
    assert got.shape == expected.shape[: got.ndim] and got.dtype == np.uint8, got.shape
    if kind != "aux":  # a gray frame has no RGB reference; its network is its row's
        levels = np.abs(got.astype(np.int16) - expected.astype(np.int16))
        info.update(max_diff=int(levels.max()), mean_diff=float(levels.mean()))
        info["psnr_vs_reference"] = psnr(got, expected)
        where = f"{impl} {size} x{scale}: {info}"
        if kind == "ours":
            allowed = int(1 + TOLERANCE[precision] * 255 * LUMA_TO_GRAY_GAIN)
            assert info["max_diff"] <= allowed, f"{where}; allowed max {allowed} levels"
        else:
            int8 = precision == "int8"
            levels = INT8_PEER_MEAN_LEVELS if int8 else PEER_MEAN_LEVELS
            floor = INT8_PEER_PSNR_DB if int8 else PEER_PSNR_DB
            assert info["mean_diff"] <= levels, f"{where}; {levels} allowed"
            assert info["psnr_vs_reference"] >= floor, f"{where}; {floor} dB floor"
        print(where)
    benchmark.group = f"frame {size[0]}x{size[1]} x{scale}"
    pixels = int(np.prod(expected.shape[:2]))
    benchmark.extra_info.update(
        impl=impl, kind=kind, gpu=False, precision=precision, pixels=pixels, **info
    )
    del got
    rounds = rounds_for(run)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    holder.clear()  # the benchmark session keeps `run`; drop the engine it points to
    gc.collect()
