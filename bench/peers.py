"""Peers: other engines running the same SRCNN, with the same weights, on the already-upscaled
luma plane (so they skip the bicubic step that our backends include in their time).

Each peer builds the network with explicit edge-replicate padding before every conv, exactly
DESIGN.md section 1, so its output is checked against the NumPy reference before it is timed.
A peer whose engine is not installed is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from srcnn_fast.model import SRCNNWeights

THREADS = os.cpu_count() or 2
Runner = Callable[[np.ndarray], np.ndarray]


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


def onnxruntime_peer(weights: SRCNNWeights) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.enable_cpu_mem_arena = False  # give the memory back between runs and tests
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_model(weights), options, providers=["CPUExecutionProvider"])
    return lambda plane: session.run(None, {"luma": plane[None, None]})[0][0, 0]


def opencv_peer(weights: SRCNNWeights) -> Runner:
    import cv2

    cv2.setNumThreads(THREADS)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_model(weights), np.uint8))

    def run(plane: np.ndarray) -> np.ndarray:
        net.setInput(plane[None, None])
        return np.asarray(net.forward())[0, 0]

    return run


def tensorflow_peer(weights: SRCNNWeights) -> Runner:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from srcnn_fast.train import build_keras_model

    model = build_keras_model(padding="replicate", weights=weights)
    spec = tf.TensorSpec([1, None, None, 1], tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
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


def pytorch_peer(weights: SRCNNWeights) -> Runner:
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


#: name -> (module that must import, factory)
PEERS: dict[str, tuple[str, Callable[[SRCNNWeights], Runner]]] = {
    "onnxruntime": ("onnxruntime", onnxruntime_peer),
    "tensorflow": ("tensorflow", tensorflow_peer),
    "opencv-dnn": ("cv2", opencv_peer),
    "pytorch": ("torch", pytorch_peer),
    "cudnn-nchw": ("torch", lambda w: cudnn_peer(w, channels_last=False)),
    "cudnn-nhwc": ("torch", lambda w: cudnn_peer(w, channels_last=True)),
    "cudnn-nchw-fp16": ("torch", lambda w: cudnn_peer(w, channels_last=False, fp16=True)),
    "cudnn-nhwc-fp16": ("torch", lambda w: cudnn_peer(w, channels_last=True, fp16=True)),
}
#: Peers that run on a GPU: compared with our GPU backend, not the CPU one.
GPU_PEERS = {"cudnn-nchw", "cudnn-nhwc", "cudnn-nchw-fp16", "cudnn-nhwc-fp16"}
#: Peers that compute in float16: compared with our fp16 precision mode.
FP16_PEERS = {"cudnn-nchw-fp16", "cudnn-nhwc-fp16"}
