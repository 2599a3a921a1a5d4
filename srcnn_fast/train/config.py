"""What determines a training run: :class:`TrainConfig`, each of its fields documented once.

A field's documentation lives in its metadata (an :class:`About`), not in a comment, because
``srcnn-fast train`` makes its options from the fields: their spellings, types, choices, limits,
defaults and help texts all come from here, so the command line cannot drift from the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from ..model import Architecture

#: The ways of making LR images from HR ones (:attr:`TrainConfig.downscaler` says how each works).
DOWNSCALERS = ("matlab", "pillow")
#: The optimizers (:attr:`TrainConfig.optimizer`).
OPTIMIZERS = ("adam", "sgd")
#: The training losses (:attr:`TrainConfig.loss`).
LOSSES = ("mse", "l1", "psnr")


@dataclass(frozen=True)
class Check:
    """A condition on a field's value that the command line enforces, and what it says when a
    value fails it. (The library itself accepts more: ``epochs=0`` writes the initial weights.)
    """

    holds: Callable[[Any], bool]
    message: str


#: Counts (epochs, batches, pixels, the scale).
AT_LEAST_ONE = Check(lambda value: value >= 1, "must be at least 1")
#: A JPEG quality as Pillow takes it.
JPEG_QUALITY = Check(lambda value: 1 <= value <= 100, "a JPEG quality must be in 1..100")
#: A share of something, 0..1.
SHARE = Check(lambda value: 0.0 <= value <= 1.0, "must be in [0, 1]")
#: A factor by which an HR image is shrunk for augmentation; 1 is the image itself.
DOWNSCALE_FACTOR = Check(lambda value: 0.0 < value <= 1.0, "a downscale factor must be in (0, 1]")


@dataclass(frozen=True)
class About:
    """A :class:`TrainConfig` field's documentation, and how ``srcnn-fast train`` spells it."""

    #: What the field means: a phrase, as ``--help`` shows it (for a bool that defaults to
    #: True, a noun phrase: its option is ``--no-NAME``, explained as "no " + doc).
    doc: str
    #: The option's spellings, where they are not ``--field-name``.
    flags: tuple[str, ...] = ()
    #: The values it may take; None: any of its type.
    choices: tuple[str, ...] | None = None
    #: A condition on each value (for a dataclass-valued field, on each of its fields).
    check: Check | None = None


def about(config_field: Any) -> About:
    """The :class:`About` of a field of :class:`TrainConfig` (``dataclasses.fields``)."""
    return config_field.metadata["about"]


def _metadata(doc: str, **cli: Any) -> dict[str, About]:
    """A field's metadata: its documentation; ``cli`` holds the rest of its :class:`About`."""
    return {"about": About(doc, **cli)}


def _field(default: Any, doc: str, **cli: Any) -> Any:
    """A documented field (``default`` MISSING: a required one)."""
    return field(default=default, metadata=_metadata(doc, **cli))


@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded in the weights' provenance)."""

    data: str = _field(MISSING, "folder of training images (e.g. T91)")
    scale: int = _field(
        MISSING, "the upscaling factor to train for", flags=("-s", "--scale"), check=AT_LEAST_ONE
    )
    out: str = _field(MISSING, "weights file to write (.npz)")
    epochs: int = _field(
        40, "epochs to train, over which the learning rate decays", check=AT_LEAST_ONE
    )
    steps_per_epoch: int = _field(1000, "batches per epoch", flags=("--steps",), check=AT_LEAST_ONE)
    batch_size: int = _field(16, "sub-images per batch", check=AT_LEAST_ONE)
    learning_rate: float = _field(
        1e-3, "initial learning rate, decaying along a cosine", flags=("--lr",)
    )
    final_learning_rate: float = _field(
        1e-5, "learning rate at the last epoch", flags=("--final-lr",)
    )
    last_layer_lr_factor: float = _field(
        1.0,
        "factor on the last layer's learning rate (the paper trains it 10x slower: 0.1); with "
        "Adam, whose steps do not scale with the gradient, this needs the layer's own optimizer",
        flags=("--last-layer-lr",),
    )
    patch: int = _field(
        33, "sub-image size in pixels (the default is the paper's)", check=AT_LEAST_ONE
    )
    augment: bool = _field(
        True,
        "augmentation: flips/rotations of every sub-image, and copies of every HR image "
        "downscaled by the downscales factors (FSRCNN's)",
    )
    downscales: tuple[float, ...] = _field(
        (1.0, 0.9, 0.8, 0.7, 0.6),
        "with augmentation, train on copies of each image downscaled by these factors "
        "(1: the image itself)",
        check=DOWNSCALE_FACTOR,
    )
    downscaler: str = _field(
        "matlab",
        "how LR images are made from HR ones: matlab (srcnn_fast.imageops.matlab_downscale, as "
        "MATLAB's imresize made the benchmark sets' LR files) or pillow (Pillow's BICUBIC "
        "resize: the same antialiased kernel, another pass order and border; what the weights "
        "before matlab used)",
        choices=DOWNSCALERS,
    )
    jpeg_qualities: tuple[int, ...] = _field(
        (),
        "train for JPEG inputs: each LR image, as 8-bit RGB, saved as a JPEG by Pillow at one of "
        "these qualities (drawn uniformly, one per copy: see --jpeg-copies) and decoded before "
        "its luma is upscaled; the hold-out images are scored at every one of them (none: clean "
        "LR images)",
        flags=("--jpeg",),
        check=JPEG_QUALITY,
    )
    jpeg_copies: int = _field(
        4,
        "with --jpeg, the compressed copies made of each training image (each at its own "
        "quality), made once when the data is loaded so drawing sub-images stays fast",
        check=AT_LEAST_ONE,
    )
    jpeg_clean_share: float = _field(
        0.0,
        "with --jpeg, the share of copies left uncompressed (the hold-out adds clean LR images "
        "when it is above 0)",
        check=SHARE,
    )
    val_fraction: float = _field(0.1, "share of the images held out for validation")
    seed: int = _field(
        0, "seeds the initial weights and the sub-images drawn (not the hold-out split)"
    )
    arch: Architecture = field(
        default_factory=Architecture,
        metadata=_metadata(
            "the network: f1 x f1 kernels to n1 maps, f2 x f2 to n2 maps, f3 x f3 to the output",
            check=AT_LEAST_ONE,
        ),
    )
    optimizer: str = _field(
        "adam",
        "adam, or sgd: the paper's SGD with momentum 0.9 (Caffe's), at the same rates",
        choices=OPTIMIZERS,
    )
    init_std: float | None = _field(
        None,
        "the paper's initialisation: Gaussian kernels of this standard deviation (0.001), "
        "biases 0; unset: Glorot-uniform kernels (Keras's default)",
    )
    revive_dead: bool = _field(
        False,
        "re-initialise the conv1/conv2 channels that are dead (never positive on a sample of "
        "training sub-images) before the first epoch and after each one, keeping the network's "
        "output unchanged (see revive_dead_channels)",
    )
    loss: str = _field(
        "mse",
        "mse (what PSNR measures), l1 (mean absolute error, which weighs small errors, in flat "
        "regions where PSNR is high, relatively more) or psnr (minus the sub-images' mean PSNR)",
        choices=LOSSES,
    )
    input_offset: float = _field(
        0.0,
        "subtracted from the input luma before conv1 while training (folded into conv1's bias "
        "in the written weights): a centred input, so no conv1 filter starts out negative "
        "everywhere",
    )
    centre_hidden: bool = _field(
        False,
        "centre conv2's and conv3's inputs too while training (each channel minus its mean on a "
        "sample of training sub-images, re-estimated at the start and after each epoch; folded "
        "into the biases of the written weights): see build_keras_model",
    )
    identity_init: bool = _field(
        False,
        "start from the identity: conv1 and conv2 channel 0 pass the centre pixel through, "
        "conv3 adds it back and reads nothing else, so the untrained network outputs its "
        "bicubic input exactly and training learns the residual (VDSR's insight, within 9-1-5)",
    )
    init: str | None = _field(
        None, "weights to start from (e.g. another scale's), instead of a random initialisation"
    )
    checkpoint_dir: str | None = _field(
        None, "folder of the checkpoints and train.log (default: OUT.ckpt)"
    )

    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint_dir or f"{self.out}.ckpt")
