"""Training SRCNN with Keras (TensorFlow imported lazily: inference never loads it).

The model is the seed's: three Conv2D layers, ReLU after the first two, 'valid' padding, trained
on random luma sub-images (33x33 by default, the paper's size) against the centre of the HR
sub-image, with flips/rotations and downscaled copies of the images as augmentation.
Training is resumable: after every epoch a checkpoint is written beside ``train.log``.

Imports run one way, each module from those above it:

- :mod:`.config`: :class:`TrainConfig`, each field documented once (``srcnn-fast train``
  derives its options from them);
- :mod:`.data`: training pairs made as inference sees images, the hold-out split, sub-images;
- :mod:`.keras_model`: the Keras model, its weights in and out, initialisations, dead channels;
- :mod:`.loop`: the training loop, its schedule, losses and checkpoints.

Names with a leading underscore are the package's own (shared between its modules); the names
below are its public interface.
"""

from .config import DOWNSCALERS, LOSSES, OPTIMIZERS, TrainConfig
from .data import (
    HOLDOUT_SEED,
    Dataset,
    PatchSampler,
    dihedral,
    image_files,
    load_dataset,
    make_training_pair,
)
from .keras_model import (
    IDENTITY_BIAS,
    REVIVE_SAMPLE,
    build_keras_model,
    dead_channels,
    recentre,
    revive_dead_channels,
    set_model_weights,
    weights_from_model,
)
from .loop import PSNR_LOSS_FLOOR, continued_provenance, learning_rate_at, psnr_valid, train

__all__ = [
    "DOWNSCALERS",
    "HOLDOUT_SEED",
    "IDENTITY_BIAS",
    "LOSSES",
    "OPTIMIZERS",
    "PSNR_LOSS_FLOOR",
    "REVIVE_SAMPLE",
    "Dataset",
    "PatchSampler",
    "TrainConfig",
    "build_keras_model",
    "continued_provenance",
    "dead_channels",
    "dihedral",
    "image_files",
    "learning_rate_at",
    "load_dataset",
    "make_training_pair",
    "psnr_valid",
    "recentre",
    "revive_dead_channels",
    "set_model_weights",
    "train",
    "weights_from_model",
]
