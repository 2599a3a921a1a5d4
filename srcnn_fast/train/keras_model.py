"""The seed's Keras SRCNN and what training does to it besides gradient steps: moving weights
in and out (with the centring folded into the biases), the initialisations, and reviving dead
channels. TensorFlow is imported only when a function here runs (:func:`import_keras`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import DataError
from ..model import Architecture, SRCNNWeights
from .data import PatchSampler


def import_keras():
    """Import Keras on the TensorFlow backend, using both cores well (DESIGN.md section 8)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise DataError("training needs TensorFlow: pip install 'srcnn-fast[train]'") from None
    try:
        # The cores this process may run on (taskset, cgroups), not the machine's count: two
        # runs pinned to one core each must not oversubscribe.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        tf.config.threading.set_intra_op_parallelism_threads(cores or os.cpu_count() or 2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier call in this process
    import keras

    return tf, keras


def _replicate_pad_layer(keras):
    class ReplicatePad2D(keras.layers.Layer):
        """Edge-replicate padding by ``pad`` pixels on each side of H and W (NHWC)."""

        def __init__(self, pad: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pad = pad

        def call(self, x):
            ops, p = keras.ops, self.pad
            x = ops.concatenate(
                [ops.repeat(x[:, :1], p, axis=1), x, ops.repeat(x[:, -1:], p, axis=1)], axis=1
            )
            return ops.concatenate(
                [ops.repeat(x[:, :, :1], p, axis=2), x, ops.repeat(x[:, :, -1:], p, axis=2)],
                axis=2,
            )

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "pad": self.pad}

    return ReplicatePad2D


def _centre_layer(keras):
    class Centre(keras.layers.Layer):
        """Subtracts a per-channel constant (not trained) from a conv layer's input."""

        def __init__(self, channels: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.channels = channels

        def build(self, input_shape) -> None:
            self.mean = self.add_weight(
                shape=(self.channels,), initializer="zeros", trainable=False, name="mean"
            )

        def call(self, x):
            return x - self.mean

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "channels": self.channels}

    return Centre


def build_keras_model(
    arch: Architecture | None = None,
    padding: str = "valid",
    weights: SRCNNWeights | None = None,
    input_offset: float = 0.0,
    centre_hidden: bool = False,
):
    """The seed's Keras SRCNN. ``padding='replicate'`` adds explicit edge-replicate padding
    before each conv, which makes it compute exactly what srcnn-fast's backends compute.

    For training, a conv layer's input can be centred: ``input_offset`` is subtracted from the
    luma before conv1, and with ``centre_hidden`` conv2 and conv3 read their input minus a
    per-channel mean (set by :func:`recentre`). The same function, better conditioned:
    with inputs that are never negative (luma, ReLU outputs) every weight into a unit gets a
    gradient of one sign, so each Adam step moves the unit's response to a flat input by the
    sum of them, and it dies. A constant taken from a conv's input is a constant taken from
    its bias (replicate padding keeps a constant plane constant), so the centring is folded
    into the biases when weights are read out and unfolded when they are set: the model
    computes what the raw-array weights compute either way.
    """
    _, keras = import_keras()
    arch = weights.arch if weights is not None else (arch or Architecture())
    if padding not in ("valid", "replicate"):
        raise ValueError(f"padding must be 'valid' or 'replicate', not {padding!r}")
    pad_layer, centre_layer = _replicate_pad_layer(keras), _centre_layer(keras)
    layers: list[Any] = [keras.Input((None, None, 1))]
    specs = [(1, arch.n1, arch.f1, "relu"), (arch.n1, arch.n2, arch.f2, "relu")]
    specs.append((arch.n2, 1, arch.f3, None))
    for i, (fan_in, filters, size, activation) in enumerate(specs, start=1):
        if (i == 1 and input_offset) or (i > 1 and centre_hidden):
            layers.append(centre_layer(fan_in, name=f"{_CENTRE}{i}"))
        if padding == "replicate" and size > 1:
            layers.append(pad_layer((size - 1) // 2, name=f"pad{i}"))
        layers.append(
            keras.layers.Conv2D(
                filters, size, activation=activation, padding="valid", name=f"conv{i}"
            )
        )
    model = keras.Sequential(layers, name="srcnn")
    if input_offset:
        model.get_layer(f"{_CENTRE}1").mean.assign([input_offset])
    if weights is not None:
        set_model_weights(model, weights)
    return model


#: Names of the layers that centre conv i's input: ``centre1`` ... (see build_keras_model).
_CENTRE = "centre"


def _conv_layers(model) -> list[Any]:
    return [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]


def _centring(model) -> list[np.ndarray]:
    """What the model subtracts from each conv layer's input, per input channel (float64;
    zeros where it subtracts nothing)."""
    names = {layer.name for layer in model.layers}
    return [
        np.asarray(model.get_layer(f"{_CENTRE}{i}").mean, np.float64)
        if f"{_CENTRE}{i}" in names
        else np.zeros(conv.get_weights()[0].shape[2])
        for i, conv in enumerate(_conv_layers(model), start=1)
    ]


def _bias_shift(kernel: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """What a conv's output loses when ``mean`` (per input channel) leaves its input."""
    return np.einsum("hwcd,c->d", kernel.astype(np.float64), mean)


def set_model_weights(model, weights: SRCNNWeights) -> None:
    arrays = weights.arrays()
    for i, (layer, mean) in enumerate(
        zip(_conv_layers(model), _centring(model), strict=True), start=1
    ):
        kernel, bias = arrays[f"w{i}"], arrays[f"b{i}"]
        layer.set_weights([kernel, (bias + _bias_shift(kernel, mean)).astype(np.float32)])


def weights_from_model(model, scale: int, provenance: dict[str, Any] | None = None) -> SRCNNWeights:
    """The raw-array weights of a Keras SRCNN built by :func:`build_keras_model` (its
    centring folded into the biases, in float64 and rounded once)."""
    convs = _conv_layers(model)
    arrays: dict[str, np.ndarray] = {}
    for i, (layer, mean) in enumerate(zip(convs, _centring(model), strict=True), start=1):
        kernel, bias = layer.get_weights()
        arrays[f"w{i}"] = kernel.astype(np.float32)
        arrays[f"b{i}"] = (bias - _bias_shift(kernel, mean)).astype(np.float32)
    f1, f2, f3 = (layer.kernel_size[0] for layer in convs)
    arch = Architecture(f1=f1, n1=convs[0].filters, f2=f2, n2=convs[1].filters, f3=f3)
    return SRCNNWeights(arch=arch, scale=scale, provenance=provenance or {}, **arrays)


def recentre(model, inputs: np.ndarray) -> None:
    """Set conv2's and conv3's centring to the mean of their inputs on ``inputs`` (N, H, W,
    1), moving those layers' biases so that the network computes exactly what it did."""
    x = inputs
    for layer in model.layers:
        if layer.name in (f"{_CENTRE}2", f"{_CENTRE}3"):
            conv = model.get_layer(f"conv{layer.name[-1]}")
            new = np.asarray(x, np.float64).mean(axis=(0, 1, 2))
            change = new - np.asarray(layer.mean, np.float64)
            kernel, bias = conv.get_weights()
            conv.set_weights([kernel, (bias + _bias_shift(kernel, change)).astype(np.float32)])
            layer.mean.assign(new.astype(np.float32))
        x = layer(x)


def gaussian_init(model, std: float, seed: int) -> None:
    """The paper's initialisation: kernels from N(0, std^2), biases 0 (seeded)."""
    rng = np.random.default_rng([seed, 91])
    for layer in _conv_layers(model):
        kernel, bias = layer.get_weights()
        layer.set_weights(
            [rng.normal(0.0, std, kernel.shape).astype(np.float32), np.zeros_like(bias)]
        )


#: Bias that keeps the identity channel (see :func:`identity_init`) positive, so its ReLUs
#: pass it unchanged: bicubic luma undershoots 0 by far less than this.
IDENTITY_BIAS = 0.5


def identity_init(model) -> None:
    """Make the network compute its input exactly: conv1 channel 0 is a centred delta plus
    :data:`IDENTITY_BIAS`, conv2 channel 0 copies it, conv3 reads only it (a centred delta)
    and its bias removes the offset. The other channels keep their random kernels; as conv3
    reads none of them yet, training grows the residual from zero, through plain 9-1-5
    weights."""
    conv1, conv2, conv3 = _conv_layers(model)
    m1, m2, m3 = _centring(model)
    w1, b1 = conv1.get_weights()
    w1[..., 0] = 0.0
    w1[w1.shape[0] // 2, w1.shape[1] // 2, 0, 0] = 1.0
    b1[0] = IDENTITY_BIAS  # h1 = x - m1 + IDENTITY_BIAS
    conv1.set_weights([w1, b1])
    w2, b2 = conv2.get_weights()
    w2[..., 0] = 0.0
    w2[w2.shape[0] // 2, w2.shape[1] // 2, 0, 0] = 1.0
    b2[0] = m2[0]  # h2 = (h1 - m2) + m2 = h1
    conv2.set_weights([w2, b2])
    w3, b3 = conv3.get_weights()
    w3[...] = 0.0
    w3[w3.shape[0] // 2, w3.shape[1] // 2, 0, 0] = 1.0
    b3[...] = m1[0] - IDENTITY_BIAS + m3[0]  # out = (h2 - m3) + b3 = x
    conv3.set_weights([w3, b3])


#: Sub-images on which a channel must stay at zero to count as dead.
REVIVE_SAMPLE = 256


def revive_dead_channels(model, sampler: PatchSampler, rng: np.random.Generator) -> list[int]:
    """Give dead ReLU channels of conv1 and conv2 fresh kernels; return how many per layer.

    SRCNN's input is luma in [0, 1], never centred, so a conv1 kernel whose taps sum below zero
    (half of them, at a random start) outputs a negative value for every input, its ReLU is 0
    everywhere and it never gets a gradient: a trained 9-1-5 keeps only ~25 of its 64 filters.
    A dead channel gets a zero-sum random kernel (it responds to structure, not brightness)
    with the mean norm of the layer's live kernels (a weaker one is soon killed again by
    Adam's steps, which do not shrink with the gradient) and the bias that makes it fire on
    half the sampled positions; the next layer's weights from it are set to 0, so the network
    computes exactly what it did, and training grows them from zero.
    """
    from keras import ops

    convs = _conv_layers(model)
    x, _ = sampler.batch(rng, REVIVE_SAMPLE, False)
    # Found before any change: reviving conv1 channels leaves conv2's output as it was.
    all_dead = dead_channels(model, x)
    revived = dict(zip(convs[:2], zip(convs[1:], all_dead, strict=True), strict=True))
    for layer in model.layers:
        successor, dead = revived.get(layer, (None, ()))
        if len(dead):
            kernel, bias = layer.get_weights()
            rows, cols, fan_in, fan_out = kernel.shape
            limit = math.sqrt(6.0 / (rows * cols * (fan_in + fan_out)))  # Glorot-uniform's
            fresh = rng.uniform(-limit, limit, (rows, cols, fan_in, len(dead)))
            fresh -= fresh.mean(axis=(0, 1, 2), keepdims=True)
            alive = np.setdiff1d(np.arange(fan_out), dead)
            if len(alive):  # as strong as the living: Adam's steps would kill a weak channel
                norm = np.linalg.norm(kernel[..., alive].reshape(-1, len(alive)), axis=0).mean()
                fresh *= norm / np.linalg.norm(fresh.reshape(-1, len(dead)), axis=0)
            fresh = fresh.astype(np.float32)
            response = np.asarray(ops.conv(x, fresh, padding="valid"))
            kernel[..., dead] = fresh
            bias[dead] = -np.median(response.reshape(-1, len(dead)), axis=0)
            next_kernel, next_bias = successor.get_weights()
            next_kernel[:, :, dead, :] = 0.0
            layer.set_weights([kernel, bias])
            successor.set_weights([next_kernel, next_bias])
        x = layer(x)
    return [len(dead) for dead in all_dead]


def dead_channels(model, inputs: np.ndarray) -> list[np.ndarray]:
    """For conv1 and conv2, the channels whose ReLU output is 0 at every position of
    ``inputs`` (N, H, W, 1)."""
    from keras import ops

    dead = []
    first_two = _conv_layers(model)[:2]
    for layer in model.layers[: model.layers.index(first_two[-1]) + 1]:
        inputs = layer(inputs)
        if layer in first_two:
            dead.append(np.flatnonzero(np.asarray(ops.max(inputs, axis=(0, 1, 2))) <= 0))
    return dead
