"""Training SRCNN with Keras (TensorFlow imported lazily: inference never loads it).

The model is the seed's: three Conv2D layers, ReLU after the first two, 'valid' padding, trained
on random luma sub-images (33x33 by default, the paper's size) against the centre of the HR
sub-image, with flips/rotations and downscaled copies of the images as augmentation.
Each training pair is made exactly as inference sees images: the HR image (cropped to a multiple
of the scale) is downscaled with Pillow's antialiased BICUBIC to 8 bits, converted to luma and
upscaled with :func:`srcnn_fast.imageops.bicubic_upscale`.

Training is resumable: after every epoch ``checkpoint.npz`` (model and optimizer variables,
epoch, history) is written atomically in the checkpoint folder, beside ``train.log``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import imageops
from .errors import DataError
from .imagefile import IMAGE_EXTENSIONS, read_image
from .model import Architecture, SRCNNWeights


def _import_keras():
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


# --- the Keras model -------------------------------------------------------------------------


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
    _, keras = _import_keras()
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


# --- data ------------------------------------------------------------------------------------


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


#: How training makes an LR image: "matlab" is :func:`srcnn_fast.imageops.matlab_downscale`,
#: how the benchmark sets' LR files were made; "pillow" is Pillow's BICUBIC resize (the same
#: antialiased kernel, another pass order and border: what the weights before it used).
DOWNSCALERS = ("matlab", "pillow")


def make_training_pair(
    hr: np.ndarray, scale: int, downscaler: str = "matlab"
) -> tuple[np.ndarray, np.ndarray]:
    """HR image (uint8/uint16, gray or RGB[A]) -> (bicubic-upscaled LR luma, HR luma), float32.

    The LR image is the HR image downscaled by ``downscaler`` (see :data:`DOWNSCALERS`) to 8
    bits, as a saved file would be; both are then converted to luma like inference does.
    """
    if downscaler not in DOWNSCALERS:
        raise DataError(f"unknown downscaler {downscaler!r}: choose {' or '.join(DOWNSCALERS)}")
    if hr.dtype == np.uint16:  # both downscalers take 8-bit images; the training sets are 8-bit
        hr = (hr // 257).astype(np.uint8)
    height, width = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = hr[:height, :width]
    if hr.ndim == 3:
        hr = hr[..., :3]
    if downscaler == "matlab":
        lr = imageops.matlab_downscale(hr, scale)
    else:
        from PIL import Image

        size = (width // scale, height // scale)
        lr = np.asarray(Image.fromarray(hr).resize(size, Image.Resampling.BICUBIC))

    def luma(image: np.ndarray) -> np.ndarray:
        return imageops.image_luma(imageops.to_float(image))

    return imageops.bicubic_upscale(luma(lr), scale), luma(hr)


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (k in 0..7)."""
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, k % 4, axes=(-2, -1))


class PatchSampler:
    """Random sub-images: an image chosen in proportion to its number of positions, a uniform
    position, and (with ``augment``) one of the 8 flips/rotations. Labels are the centre that a
    'valid' network produces: ``patch - 2 * shrink`` pixels on a side."""

    def __init__(self, planes: list[tuple[np.ndarray, np.ndarray]], patch: int, shrink: int):
        self.planes = [p for p in planes if min(p[0].shape) >= patch]
        if not self.planes:
            raise DataError(f"no training image is at least {patch} pixels on a side")
        self.patch, self.shrink = patch, shrink
        positions = np.array(
            [(u.shape[0] - patch + 1) * (u.shape[1] - patch + 1) for u, _ in self.planes], float
        )
        self.weights = positions / positions.sum()

    def batch(
        self, rng: np.random.Generator, size: int, augment: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.shrink
        inner = p - 2 * s
        x = np.empty((size, p, p, 1), np.float32)
        y = np.empty((size, inner, inner, 1), np.float32)
        for i, which in enumerate(rng.choice(len(self.planes), size, p=self.weights)):
            up, hr = self.planes[which]
            r = rng.integers(up.shape[0] - p + 1)
            c = rng.integers(up.shape[1] - p + 1)
            xi, yi = up[r : r + p, c : c + p], hr[r + s : r + p - s, c + s : c + p - s]
            if augment:
                k = int(rng.integers(8))
                xi, yi = dihedral(xi, k), dihedral(yi, k)
            x[i, :, :, 0], y[i, :, :, 0] = xi, yi
        return x, y


@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded in the weights' provenance)."""

    data: str
    scale: int
    out: str
    epochs: int = 40
    steps_per_epoch: int = 1000
    batch_size: int = 16
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-5
    #: The paper trains the last layer 10x slower; with Adam this needs its own optimizer.
    last_layer_lr_factor: float = 1.0
    patch: int = 33
    #: Flips/rotations of every sub-image, and downscaled copies of every HR image (FSRCNN).
    augment: bool = True
    downscales: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6)
    #: How LR images are made from HR ones (:data:`DOWNSCALERS`).
    downscaler: str = "matlab"
    val_fraction: float = 0.1
    seed: int = 0
    arch: Architecture = field(default_factory=Architecture)
    #: "adam", or "sgd": the paper's SGD with momentum 0.9 (Caffe's), at the same rates.
    optimizer: str = "adam"
    #: None: Glorot-uniform kernels (Keras's default); a number: the paper's Gaussian kernels of
    #: this standard deviation (0.001), biases 0.
    init_std: float | None = None
    #: Re-initialise the conv1/conv2 channels that are dead (never positive on a sample of
    #: training sub-images) before the first epoch and after each one, keeping the network's
    #: output unchanged (see :func:`revive_dead_channels`).
    revive_dead: bool = False
    #: "mse" (what PSNR measures), or "l1": mean absolute error, which weighs small errors
    #: (flat regions, where PSNR is high) relatively more.
    loss: str = "mse"
    #: Subtracted from the input luma before conv1 during training (folded into conv1's bias
    #: in the written weights): a centred input, so no conv1 filter starts out negative
    #: everywhere.
    input_offset: float = 0.0
    #: Centre conv2's and conv3's inputs too (each channel minus its mean on a sample of
    #: training sub-images, re-estimated at the start and after each epoch; folded into the
    #: biases of the written weights): see :func:`build_keras_model`.
    centre_hidden: bool = False
    #: Start from the identity: conv1 and conv2 channel 0 pass the centre pixel through,
    #: conv3 adds it back and reads nothing else, so the untrained network outputs its bicubic
    #: input exactly and training learns the residual (VDSR's insight, within 9-1-5).
    identity_init: bool = False
    #: Weights to start from (e.g. another scale's), instead of a random initialisation.
    init: str | None = None
    checkpoint_dir: str | None = None

    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir or f"{self.out}.ckpt")


@dataclass
class Dataset:
    sampler: PatchSampler
    val_images: list[tuple[np.ndarray, np.ndarray]]
    train_files: list[str]
    val_files: list[str]


def _downscaled(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    if factor == 1.0:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


#: Seeds the hold-out split, which ``--seed`` does not change: a run that starts from another
#: run's weights (``--init``) with another seed still validates on images neither trained on.
HOLDOUT_SEED = 0


def load_dataset(config: TrainConfig) -> Dataset:
    """Training planes (augmented) and whole validation images, split by a fixed seeded choice
    (the same for every ``--seed`` and scale)."""
    files = image_files(config.data)
    rng = np.random.default_rng(HOLDOUT_SEED)
    n_val = round(len(files) * config.val_fraction) if len(files) > 1 else 0
    val_index = set(rng.choice(len(files), size=n_val, replace=False).tolist())
    factors = config.downscales if config.augment else (1.0,)
    planes, val = [], []
    train_files, val_files = [], []
    for i, path in enumerate(files):
        image = read_image(path)
        if image.ndim == 3:
            image = image[..., :3]
        if i in val_index:
            val.append(make_training_pair(image, config.scale, config.downscaler))
            val_files.append(path.name)
            continue
        planes.extend(
            make_training_pair(_downscaled(image, f), config.scale, config.downscaler)
            for f in factors
        )
        train_files.append(path.name)
    sampler = PatchSampler(planes, config.patch, config.arch.radius)
    return Dataset(sampler, val, train_files, val_files)


# --- training loop ---------------------------------------------------------------------------


#: Recipe fields added after checkpoints were first written, with the value those old
#: checkpoints were trained with: an old checkpoint still resumes.
_RECIPE_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "init_std": None,
    "revive_dead": False,
    "loss": "mse",
    "input_offset": 0.0,
    "centre_hidden": False,
    "identity_init": False,
    "downscaler": "pillow",
}

OPTIMIZERS = ("adam", "sgd")
LOSSES = ("mse", "l1", "psnr")

#: The "psnr" loss's floor on each sub-image's MSE (luma in [0, 1]): it caps a sub-image's PSNR
#: at 50 dB, so a flat sub-image the network already gets right stops pulling on the weights.
PSNR_LOSS_FLOOR = 1e-5


def _loss(tf, name: str, error, mse):
    """The training loss of a batch's errors (N, H, W, 1). "psnr" is minus the mean PSNR of the
    sub-images, each weighted as the evaluation's mean PSNR over images weighs them: an error
    counts in proportion to 1 / its sub-image's MSE, where MSE weighs every pixel alike."""
    if name == "mse":
        return mse
    if name == "l1":
        return tf.reduce_mean(tf.abs(error))
    per_image = tf.reduce_mean(tf.square(error), axis=[1, 2, 3])
    return tf.reduce_mean(tf.math.log(PSNR_LOSS_FLOOR + per_image)) * (10.0 / math.log(10.0))


def _make_optimizer(keras, name: str, learning_rate: float):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    raise DataError(f"unknown optimizer {name!r}: choose {' or '.join(OPTIMIZERS)}")


def _gaussian_init(model, std: float, seed: int) -> None:
    """The paper's initialisation: kernels from N(0, std^2), biases 0 (seeded)."""
    rng = np.random.default_rng([seed, 91])
    for layer in _conv_layers(model):
        kernel, bias = layer.get_weights()
        layer.set_weights(
            [rng.normal(0.0, std, kernel.shape).astype(np.float32), np.zeros_like(bias)]
        )


#: Bias that keeps the identity channel (see :func:`_identity_init`) positive, so its ReLUs
#: pass it unchanged: bicubic luma undershoots 0 by far less than this.
IDENTITY_BIAS = 0.5


def _identity_init(model) -> None:
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


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``learning_rate`` to ``final_learning_rate`` over the run."""
    t = epoch / max(config.epochs - 1, 1)
    lo, hi = config.final_learning_rate, config.learning_rate
    return lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * t))


def psnr_valid(model, images: list[tuple[np.ndarray, np.ndarray]], shrink: int) -> float:
    """Mean PSNR (dB, luma in [0, 1]) of the 'valid' model on whole validation images."""
    scores = []
    for up, hr in images:
        pred = np.asarray(model(up[None, :, :, None], training=False))[0, :, :, 0]
        target = hr[shrink : hr.shape[0] - shrink, shrink : hr.shape[1] - shrink]
        mse = float(np.mean((np.clip(pred, 0, 1) - target) ** 2))
        scores.append(10 * math.log10(1.0 / max(mse, 1e-12)))
    return float(np.mean(scores)) if scores else float("nan")


class _Log:
    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.path.open("a") as f:
            f.write(f"{stamp} {message}\n")
        self.echo(message)


def _save_checkpoint(path: Path, model, optimizers, state: dict[str, Any]) -> None:
    arrays = {f"model_{i}": np.asarray(v) for i, v in enumerate(model.weights)}
    for k, optimizer in enumerate(optimizers):
        arrays.update({f"opt{k}_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    meta = np.frombuffer(json.dumps(state).encode(), np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, state=meta, **arrays)
    os.replace(tmp, path)


def _checkpoint_state(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as ckpt:
        return json.loads(ckpt["state"].tobytes().decode())


def _load_checkpoint(path: Path, model, optimizers) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as ckpt:
        for i, variable in enumerate(model.weights):
            variable.assign(ckpt[f"model_{i}"])
        for k, optimizer in enumerate(optimizers):
            for i, variable in enumerate(optimizer.variables):
                variable.assign(ckpt[f"opt{k}_{i}"])
        return json.loads(ckpt["state"].tobytes().decode())


def continued_provenance(init: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """What a run started from other weights adds to its provenance: the starting weights'
    own provenance (minus the long image lists) and the totals over the whole chain of runs."""
    earlier = {k: v for k, v in init.items() if k not in ("train_images", "val_images")}
    return {
        "init_provenance": earlier,
        "total_epochs": state["epoch"] + int(init.get("total_epochs", init.get("epochs", 0))),
        "total_train_seconds": round(
            state["seconds"] + float(init.get("total_train_seconds", init.get("train_seconds", 0))),
            1,
        ),
    }


def train(
    config: TrainConfig,
    resume: bool = True,
    echo: Callable[[str], None] = print,
    progress: bool | None = None,
) -> SRCNNWeights:
    """Train, checkpointing every epoch; returns (and writes to ``config.out``) the weights."""
    if not 0.0 <= config.val_fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), not {config.val_fraction}")
    if config.patch <= 2 * config.arch.radius:
        raise DataError(
            f"sub-images of {config.patch} pixels are too small for {config.arch.name}: "
            f"they must exceed {2 * config.arch.radius}"
        )
    tf, keras = _import_keras()
    ckpt_dir = config.checkpoint_path()
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{ckpt_dir}: cannot create the checkpoint folder ({exc})") from None
    ckpt_file = ckpt_dir / "checkpoint.npz"
    log = _Log(ckpt_dir / "train.log", echo)
    keras.utils.set_random_seed(config.seed)

    t0 = time.perf_counter()
    data = load_dataset(config)
    log(
        f"data: {len(data.train_files)} train images -> {len(data.sampler.planes)} planes "
        f"(augment={config.augment}), sub-images {config.patch}x{config.patch}, "
        f"{len(data.val_files)} validation images ({time.perf_counter() - t0:.1f} s)"
    )
    if config.loss not in LOSSES:
        raise DataError(f"unknown loss {config.loss!r}: choose {' or '.join(LOSSES)}")
    model = build_keras_model(
        config.arch,
        padding="valid",
        input_offset=config.input_offset,
        centre_hidden=config.centre_hidden,
    )
    init_weights = SRCNNWeights.load(config.init) if config.init else None
    if init_weights is not None:
        set_model_weights(model, init_weights)
        seen = sorted(set(data.val_files) & set(init_weights.provenance.get("train_images", ())))
        if seen:
            # Not refused (a user may mean it), but the validation PSNR no longer measures
            # images the network has never seen, and the log should say so.
            log(
                f"warning: {config.init} was trained on {len(seen)} of the validation images "
                f"({', '.join(seen[:3])}{', ...' if len(seen) > 3 else ''}): the validation "
                "PSNR will flatter it"
            )
    elif config.init_std is not None:
        _gaussian_init(model, config.init_std, config.seed)
    if config.identity_init and init_weights is None:
        _identity_init(model)
    body, head = model.trainable_variables[:-2], model.trainable_variables[-2:]
    optimizers = [
        _make_optimizer(keras, config.optimizer, config.learning_rate),
        _make_optimizer(
            keras, config.optimizer, config.learning_rate * config.last_layer_lr_factor
        ),
    ]
    optimizers[0].build(body)
    optimizers[1].build(head)
    # What a checkpoint must agree on to be resumed (epochs may grow, paths may move).
    recipe = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("epochs", "out", "checkpoint_dir", "init")
    }
    recipe["downscales"] = list(config.downscales)
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0, "recipe": recipe}
    if resume and ckpt_file.exists():
        previous = _checkpoint_state(ckpt_file).get("recipe")
        current = json.loads(json.dumps(recipe))
        previous = None if previous is None else {**_RECIPE_DEFAULTS, **previous}
        if previous is not None and previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise DataError(
                f"{ckpt_file}: made by a different training setup ({', '.join(changed)} "
                f"differ); use --restart or another --checkpoint-dir"
            )
        state = _load_checkpoint(ckpt_file, model, optimizers)
        state["recipe"] = recipe
        log(f"resumed from {ckpt_file} after epoch {state['epoch']}")

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            error = model(x, training=True) - y
            mse = tf.reduce_mean(tf.square(error))
            loss = _loss(tf, config.loss, error, mse)
        grads = tape.gradient(loss, body + head)
        optimizers[0].apply_gradients(zip(grads[:-2], body, strict=True))
        optimizers[1].apply_gradients(zip(grads[-2:], head, strict=True))
        return mse  # logged as the training PSNR, whatever the loss

    def revive(when: str, epoch: int) -> None:
        """Between epochs: revive dead channels, then re-centre (a revived channel's mean
        changes), neither changing what the network computes."""
        if config.revive_dead:
            counts = revive_dead_channels(
                model, data.sampler, np.random.default_rng([config.seed, epoch, 17])
            )
            log(f"{when}: revived {counts[0]} dead conv1 and {counts[1]} dead conv2 channels")
        if config.centre_hidden:
            rng = np.random.default_rng([config.seed, epoch, 23])
            recentre(model, data.sampler.batch(rng, REVIVE_SAMPLE, False)[0])

    show_bar = sys.stderr.isatty() if progress is None else progress
    if state["epoch"] == 0:
        revive("start", 0)
    for epoch in range(state["epoch"], config.epochs):
        lr = learning_rate_at(config, epoch)
        optimizers[0].learning_rate.assign(lr)
        optimizers[1].learning_rate.assign(lr * config.last_layer_lr_factor)
        rng = np.random.default_rng([config.seed, epoch])
        start = time.perf_counter()
        steps = range(config.steps_per_epoch)
        if show_bar:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        total = 0.0
        for _ in steps:
            x, y = data.sampler.batch(rng, config.batch_size, config.augment)
            total += float(step(x, y))
        seconds = time.perf_counter() - start
        val_psnr = psnr_valid(model, data.val_images, config.arch.radius)
        train_psnr = 10 * math.log10(1.0 / max(total / config.steps_per_epoch, 1e-12))
        state["epoch"] = epoch + 1
        state["seconds"] += seconds
        state["history"].append(
            {"epoch": epoch + 1, "lr": lr, "train_psnr": train_psnr, "val_psnr": val_psnr}
        )
        if epoch + 1 < config.epochs:
            revive(f"after epoch {epoch + 1}", epoch + 1)
        _save_checkpoint(ckpt_file, model, optimizers, state)
        patches = config.steps_per_epoch * config.batch_size
        log(
            f"epoch {epoch + 1}/{config.epochs}: lr {lr:.2e}, train {train_psnr:.2f} dB, "
            f"val {val_psnr:.2f} dB, {patches / seconds:.0f} patches/s, {seconds:.0f} s"
        )

    history = state["history"]
    provenance: dict[str, Any] = {
        "recipe": "srcnn-fast train",
        "config": {**asdict(config), "arch": asdict(config.arch)},
        "train_images": data.train_files,
        "val_images": data.val_files,
        "epochs": state["epoch"],
        "train_seconds": round(state["seconds"], 1),
        "val_psnr_db": history[-1]["val_psnr"] if history else None,
        "framework": f"keras {keras.__version__}, tensorflow {tf.__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    if init_weights is not None:
        provenance.update(continued_provenance(init_weights.provenance, state))
    weights = weights_from_model(model, config.scale, provenance)
    weights.save(config.out)
    log(f"wrote {config.out}")
    return weights
