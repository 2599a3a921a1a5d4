"""Peers: other engines running the same SRCNN, with the same weights, on the already-upscaled
luma plane (so they skip the bicubic step that our backends include in their time).

Each peer builds the network with explicit edge-replicate padding before every conv, exactly
DESIGN.md section 1, so its output is checked against the NumPy reference before it is timed.
A peer whose engine is not installed is skipped with the reason.

Each peer is set up as its own users would set it up for speed on one frame size: the engine's
defaults (ONNX Runtime keeps its memory arena), the input shape fixed before compiling where the
engine can use it (OpenVINO, TensorFlow), the latency settings its documentation recommends.
Freeing memory between tests is the bench's job (each test builds a fresh runner and drops it).

The int8 peers are post-training quantised as each engine's documentation shows, calibrated on
crops of T91 (the network's training set, ``../shared/data/T91``; they are skipped without it)
made into the network's input as inference makes it: OpenVINO's through NNCF (``nncf.quantize``),
ONNX Runtime's through its own ``quantize_static``. Each quantises once per weights and scale in a
session, the shape left dynamic, and is then fixed to the frame's shape like the float peers.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srcnn_fast.model import SRCNNWeights

THREADS = os.cpu_count() or 2
Runner = Callable[[np.ndarray], np.ndarray]
#: A peer factory: the weights and the (height, width) of the plane every call will pass.
Factory = Callable[[SRCNNWeights, tuple[int, int]], Runner]


def _layers(weights: SRCNNWeights) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    return [
        (weights.w1, weights.b1, True),
        (weights.w2, weights.b2, True),
        (weights.w3, weights.b3, False),
    ]


def onnx_model(weights: SRCNNWeights) -> bytes:
    """The network as an ONNX graph (opset 17): Pad(edge) + Conv (+ Relu) per layer."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initialisers, x = [], [], "luma"
    for i, (kernel, bias, relu) in enumerate(_layers(weights)):
        radius = (kernel.shape[0] - 1) // 2
        if radius:
            pads = np.array([0, 0, radius, radius, 0, 0, radius, radius], np.int64)
            initialisers.append(numpy_helper.from_array(pads, f"pads{i}"))
            nodes.append(helper.make_node("Pad", [x, f"pads{i}"], [f"pad{i}"], mode="edge"))
            x = f"pad{i}"
        initialisers.append(numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), f"w{i}"))
        initialisers.append(numpy_helper.from_array(bias, f"b{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"conv{i}"]))
        x = f"conv{i}"
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"]))
            x = f"relu{i}"
    nodes.append(helper.make_node("Identity", [x], ["out"]))
    shape = [1, 1, "height", "width"]
    graph = helper.make_graph(
        nodes,
        "srcnn",
        [helper.make_tensor_value_info("luma", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def onnxruntime_peer(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
    """ONNX Runtime's CPU provider with its defaults (memory arena on, all graph
    optimisations), one intra-op thread per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(onnx_model(weights), options, providers=["CPUExecutionProvider"])
    return lambda plane: session.run(None, {"luma": plane[None, None]})[0][0, 0]


def openvino_peer(weights: SRCNNWeights, shape: tuple[int, int], precision: str) -> Runner:
    """OpenVINO's CPU plugin as its latency guide sets it up: the input shape fixed before
    compiling (a known frame size), the ``LATENCY`` performance hint, one infer request reused;
    ``precision`` ("f32" or "bf16") is its ``INFERENCE_PRECISION_HINT``."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(onnx_model(weights), b"")
    model.reshape([1, 1, *shape])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    compiled = core.compile_model(model, "CPU", config)
    actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if {"f32": "float32", "bf16": "bfloat16"}[precision] not in actual:
        raise RuntimeError(f"asked for {precision}, the CPU plugin runs {actual}")
    request = compiled.create_infer_request()
    # share_inputs: no copy of the plane in; the output is copied out of the request's buffer,
    # which the next call overwrites (as ONNX Runtime returns a fresh array).
    return lambda plane: request.infer({0: plane[None, None]}, share_inputs=True)[0][0, 0]


#: The int8 peers' calibration images (beside the checkout, where tests/conftest.py finds them).
T91 = Path(__file__).resolve().parents[2] / "shared" / "data" / "T91"
#: Side of the square calibration crops of the upscaled plane: every T91 image is at least 78
#: pixels on a side, so every image gives at least one.
CALIBRATION_CROP = 72
#: Calibration crops, spread evenly over all images: NNCF's default ``subset_size``.
CALIBRATION_SAMPLES = 300
#: CPU flags of 8-bit dot products that accumulate without saturating (VNNI, AMX): where one is
#: present, both engines' guides quantise weights to the full 8-bit range (NNCF
#: ``OverflowFix.DISABLE``, ONNX Runtime ``reduce_range=False``); without, to half of it where
#: they say so (NNCF's default ``FIRST_LAYER``, ``reduce_range=True``).
VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


class MissingData(RuntimeError):
    """The calibration images are not there (the bench skips the peer with this message)."""


def _has_vnni() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: assume the saturating kind, as the engines do
        return False
    return any(
        flag in VNNI_FLAGS
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split()
    )


@functools.cache
def calibration_planes(scale: int) -> tuple[np.ndarray, ...]:
    """Up to :data:`CALIBRATION_SAMPLES` crops, :data:`CALIBRATION_CROP` square, of T91's
    images made into the network's input at ``scale`` as training and inference make it (LR by
    MATLAB's bicubic, studio-range luma, our bicubic upscale), spread evenly over the images:
    the LR planes our own int8 calibration uses (``srcnn_fast.calibrate``)."""
    from srcnn_fast import imageops
    from srcnn_fast.calibrate import calibration_images
    from srcnn_fast.errors import DataError

    try:
        images = calibration_images(T91, scale)
    except DataError:
        raise MissingData(f"int8 calibration images (T91) not found at {T91}") from None
    side, crops = CALIBRATION_CROP, []
    for lr, _ in images:
        plane = imageops.bicubic_upscale(lr, scale)
        height, width = plane.shape
        crops += [
            plane[y : y + side, x : x + side]
            for y in range(0, height - side + 1, side)
            for x in range(0, width - side + 1, side)
        ]
    chosen = np.linspace(0, len(crops) - 1, min(len(crops), CALIBRATION_SAMPLES))
    return tuple(np.ascontiguousarray(crops[i]) for i in chosen.round().astype(int))


@functools.cache
def openvino_int8_model(model: bytes, scale: int):
    """(the NNCF-quantised OpenVINO model of the ONNX graph ``model``, dynamic shape; seconds
    NNCF took). The graph goes through ``ov.convert_model`` as OpenVINO's guide converts one
    (``core.read_model`` keeps the ONNX importer's bias Reshape, behind which NNCF finds no bias
    to correct: 36.7 dB against the float output on Set14 x3 instead of 48.2). Default preset
    (symmetric, per-channel weights), ``subset_size`` the number of crops, and two advanced
    parameters that change no speed, only the accuracy: ``OverflowFix.DISABLE`` where the CPU
    has VNNI or AMX (:data:`VNNI_FLAGS`), and the global min/max of the activations
    (``RangeEstimatorParametersSet.MINMAX``) for the mean over samples of each sample's extremes,
    NNCF's default, that clips frames with more detail than T91's crops: the bench plane came
    out 0.30 off in max |diff| with it, 0.07 without."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "srcnn.onnx"
        path.write_bytes(model)
        converted = ov.convert_model(path)
    samples = calibration_planes(scale)
    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.DISABLE if _has_vnni() else None,
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
    )
    start = time.perf_counter()
    quantized = nncf.quantize(
        converted,
        nncf.Dataset(samples, lambda plane: plane[None, None]),
        subset_size=len(samples),
        advanced_parameters=advanced,
    )
    return quantized, time.perf_counter() - start


def openvino_int8_peer(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
    """The NNCF-quantised model (:func:`openvino_int8_model`), reshaped to ``shape`` and compiled
    as the float OpenVINO peers (``LATENCY`` hint, one infer request reused) with the plugin's
    default inference precision for what stays in float, as a user of an int8 model has it.
    Refused unless the compiled model runs every convolution in 8 bits."""
    import openvino as ov

    quantized, seconds = openvino_int8_model(onnx_model(weights), weights.scale)
    model = quantized.clone()
    model.reshape([1, 1, *shape])
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    convs = [
        str(op.get_rt_info()["runtimePrecision"].astype(str))
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    ]
    if not convs or any(p not in ("u8", "i8") for p in convs):
        raise RuntimeError(f"asked for int8, the CPU plugin runs its convolutions in {convs}")
    request = compiled.create_infer_request()

    def run(plane: np.ndarray) -> np.ndarray:
        return request.infer({0: plane[None, None]}, share_inputs=True)[0][0, 0]

    run.info = {
        "calibration_s": seconds,
        "calibration_samples": len(calibration_planes(weights.scale)),
        "runtime_precision": convs,
    }
    return run


@functools.cache
def onnxruntime_int8_model(model: bytes, scale: int) -> tuple[bytes, float]:
    """(the ONNX graph ``model`` quantised by ONNX Runtime's ``quantize_static``, seconds it
    took) as its guide sets it up for a CPU: the model pre-processed (``quant_pre_process``,
    ONNX's shape inference: the symbolic one needs SymPy, and this graph's shapes need no
    more), QDQ format, per-channel int8 weights, uint8 activations, MinMax calibration through a
    ``CalibrationDataReader`` over the T91 crops, ``reduce_range`` only without VNNI."""
    from onnxruntime import quantization as q

    samples = calibration_planes(scale)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.planes = iter(samples)

        def get_next(self) -> dict | None:
            plane = next(self.planes, None)
            return None if plane is None else {"luma": plane[None, None]}

    with tempfile.TemporaryDirectory() as tmp:
        source, ready, out = (Path(tmp) / name for name in ("f32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(model)
        start = time.perf_counter()
        q.quant_pre_process(str(source), str(ready), skip_symbolic_shape=True)
        q.quantize_static(
            str(ready),
            str(out),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=not _has_vnni(),
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
        )
        return out.read_bytes(), time.perf_counter() - start


def onnxruntime_int8_peer(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
    """The statically quantised graph (:func:`onnxruntime_int8_model`) in a session set up as the
    float ONNX Runtime peer's (its defaults: the graph optimisations fuse each DequantizeLinear
    -> Conv -> QuantizeLinear into a QLinearConv)."""
    import onnxruntime as ort

    model, seconds = onnxruntime_int8_model(onnx_model(weights), weights.scale)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def run(plane: np.ndarray) -> np.ndarray:
        return session.run(None, {"luma": plane[None, None]})[0][0, 0]

    run.info = {
        "calibration_s": seconds,
        "calibration_samples": len(calibration_planes(weights.scale)),
    }
    return run


def opencv_peer(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
    import cv2

    cv2.setNumThreads(THREADS)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_model(weights), np.uint8))

    def run(plane: np.ndarray) -> np.ndarray:
        net.setInput(plane[None, None])
        return np.asarray(net.forward())[0, 0]

    return run


def tensorflow_peer(weights: SRCNNWeights, shape: tuple[int, int], xla: bool = False) -> Runner:
    """The Keras model in a ``tf.function`` traced once for the fixed input shape; with ``xla``,
    compiled by XLA (``jit_compile=True``; the fixed signature keeps it from recompiling)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from srcnn_fast.train import build_keras_model

    model = build_keras_model(padding="replicate", weights=weights)
    spec = tf.TensorSpec([1, *shape, 1], tf.float32)
    forward = tf.function(
        lambda x: model(x, training=False), input_signature=[spec], jit_compile=xla
    )
    return lambda plane: forward(plane[None, :, :, None]).numpy()[0, :, :, 0]


def _torch_runner(weights: SRCNNWeights, device: str, memory_format, dtype=None) -> Runner:
    """The network in PyTorch (replicate pad + conv2d per layer) on ``device``, computing in
    ``dtype`` (default float32; the float32 plane is converted on the device, inside the time)."""
    import torch
    import torch.nn.functional as F

    dtype = dtype or torch.float32
    layers = [
        (
            torch.from_numpy(k.transpose(3, 2, 0, 1).copy()).to(
                device, dtype, memory_format=memory_format
            ),
            torch.from_numpy(b).to(device, dtype),
            relu,
        )
        for k, b, relu in _layers(weights)
    ]

    def run(plane: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(plane).to(device)[None, None]
            x = x.to(dtype, memory_format=memory_format)
            for kernel, bias, relu in layers:
                r = (kernel.shape[-1] - 1) // 2
                if r:
                    x = F.pad(x, (r, r, r, r), mode="replicate")
                x = F.conv2d(x, kernel, bias)
                if relu:
                    x = F.relu(x)
            return x[0, 0].float().cpu().numpy()

    return run


def pytorch_peer(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
    import torch

    torch.set_num_threads(THREADS)
    return _torch_runner(weights, "cpu", torch.contiguous_format)


def cudnn_peer(weights: SRCNNWeights, channels_last: bool, fp16: bool = False) -> Runner:
    """cuDNN through PyTorch on the GPU, TF32 allowed (its fastest FP32-input mode); with
    ``fp16``, float16 data and weights (tensor cores, as our fp16 precision mode)."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA GPU")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return _torch_runner(weights, "cuda", fmt, torch.float16 if fp16 else torch.float32)


@dataclass(frozen=True)
class Peer:
    """How to build a peer: the modules that must import (space-separated), the factory, the
    precision class it computes in (its ratios are taken against ours of the same class) and
    whether it runs on a GPU (compared with our GPU backend, not the CPU one)."""

    module: str
    factory: Factory
    precision: str = "fp32"
    gpu: bool = False


def _cudnn(channels_last: bool, fp16: bool = False) -> Peer:
    def factory(weights: SRCNNWeights, shape: tuple[int, int]) -> Runner:
        return cudnn_peer(weights, channels_last, fp16)

    return Peer("torch", factory, "fp16" if fp16 else "fp32", gpu=True)


PEERS: dict[str, Peer] = {
    "onnxruntime": Peer("onnxruntime", onnxruntime_peer),
    "openvino-f32": Peer("openvino", lambda w, shape: openvino_peer(w, shape, "f32")),
    "openvino-bf16": Peer("openvino", lambda w, shape: openvino_peer(w, shape, "bf16"), "bf16"),
    "openvino-int8": Peer("openvino nncf", openvino_int8_peer, "int8"),
    "onnxruntime-int8": Peer("onnxruntime onnx", onnxruntime_int8_peer, "int8"),
    "tensorflow": Peer("tensorflow", tensorflow_peer),
    "tensorflow-xla": Peer("tensorflow", lambda w, shape: tensorflow_peer(w, shape, xla=True)),
    "opencv-dnn": Peer("cv2", opencv_peer),
    "pytorch": Peer("torch", pytorch_peer),
    "cudnn-nchw": _cudnn(channels_last=False),
    "cudnn-nhwc": _cudnn(channels_last=True),
    "cudnn-nchw-fp16": _cudnn(channels_last=False, fp16=True),
    "cudnn-nhwc-fp16": _cudnn(channels_last=True, fp16=True),
}
CPU_PEERS = [name for name, p in PEERS.items() if not p.gpu]
