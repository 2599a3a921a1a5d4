"""The training loop: a run's optimizers, compiled step, schedule and validation, with a
checkpoint after every epoch (model and optimizer variables, epoch, history, written atomically
as ``checkpoint.npz`` in the checkpoint folder, beside ``train.log``), so a run resumes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..model import SRCNNWeights
from .config import LOSSES, OPTIMIZERS, TrainConfig
from .data import Dataset, load_dataset
from .keras_model import (
    REVIVE_SAMPLE,
    build_keras_model,
    gaussian_init,
    identity_init,
    import_keras,
    recentre,
    revive_dead_channels,
    set_model_weights,
    weights_from_model,
)

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
    "jpeg_qualities": [],
    "jpeg_copies": 4,
    "jpeg_clean_share": 0.0,
}


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


def _compiled_step(tf, model, optimizers: list[Any], loss: str) -> Callable[[Any, Any], Any]:
    """One XLA-compiled training step on a batch (x, y); returns the batch's MSE. The last
    layer's kernel and bias are stepped by ``optimizers[1]``, everything else by ``[0]``."""
    body, head = model.trainable_variables[:-2], model.trainable_variables[-2:]

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            error = model(x, training=True) - y
            mse = tf.reduce_mean(tf.square(error))
            value = _loss(tf, loss, error, mse)
        grads = tape.gradient(value, body + head)
        optimizers[0].apply_gradients(zip(grads[:-2], body, strict=True))
        optimizers[1].apply_gradients(zip(grads[-2:], head, strict=True))
        return mse  # logged as the training PSNR, whatever the loss

    return step


def _recipe(config: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (epochs may grow, paths may move)."""
    recipe = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("epochs", "out", "checkpoint_dir", "init")
    }
    recipe["downscales"] = list(config.downscales)
    return recipe


class _Run:
    """One run's model, optimizers and progress. ``state`` is what a checkpoint holds besides
    the variables: epochs done, their history, seconds spent and the recipe."""

    def __init__(self, config: TrainConfig, model, data: Dataset, log: _Log) -> None:
        tf, keras = import_keras()
        self.config, self.model, self.data, self.log = config, model, data, log
        # The last layer has its own optimizer: with Adam, a rate factor needs one.
        self.optimizers = [
            _make_optimizer(keras, config.optimizer, config.learning_rate),
            _make_optimizer(
                keras, config.optimizer, config.learning_rate * config.last_layer_lr_factor
            ),
        ]
        self.optimizers[0].build(model.trainable_variables[:-2])
        self.optimizers[1].build(model.trainable_variables[-2:])
        self.step = _compiled_step(tf, model, self.optimizers, config.loss)
        self.state: dict[str, Any] = {
            "epoch": 0,
            "history": [],
            "seconds": 0.0,
            "recipe": _recipe(config),
        }

    def resume(self, ckpt_file: Path) -> None:
        """Continue from ``ckpt_file``, refusing one made by another recipe."""
        recipe = self.state["recipe"]
        previous = _checkpoint_state(ckpt_file).get("recipe")
        current = json.loads(json.dumps(recipe))
        previous = None if previous is None else {**_RECIPE_DEFAULTS, **previous}
        if previous is not None and previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise DataError(
                f"{ckpt_file}: made by a different training setup ({', '.join(changed)} "
                f"differ); use --restart or another --checkpoint-dir"
            )
        self.state = _load_checkpoint(ckpt_file, self.model, self.optimizers)
        self.state["recipe"] = recipe
        self.log(f"resumed from {ckpt_file} after epoch {self.state['epoch']}")

    def run(self, ckpt_file: Path, show_bar: bool) -> None:
        """The remaining epochs, each followed by a checkpoint."""
        config = self.config
        if self.state["epoch"] == 0:
            self._between_epochs("start", 0)
        for epoch in range(self.state["epoch"], config.epochs):
            lr = learning_rate_at(config, epoch)
            train_psnr, seconds = self._epoch(epoch, lr, show_bar)
            val_psnr = psnr_valid(self.model, self.data.val_images, config.arch.radius)
            self.state["epoch"] = epoch + 1
            self.state["seconds"] += seconds
            self.state["history"].append(
                {"epoch": epoch + 1, "lr": lr, "train_psnr": train_psnr, "val_psnr": val_psnr}
            )
            if epoch + 1 < config.epochs:
                self._between_epochs(f"after epoch {epoch + 1}", epoch + 1)
            _save_checkpoint(ckpt_file, self.model, self.optimizers, self.state)
            patches = config.steps_per_epoch * config.batch_size
            self.log(
                f"epoch {epoch + 1}/{config.epochs}: lr {lr:.2e}, train {train_psnr:.2f} dB, "
                f"val {val_psnr:.2f} dB, {patches / seconds:.0f} patches/s, {seconds:.0f} s"
            )

    def _epoch(self, epoch: int, lr: float, show_bar: bool) -> tuple[float, float]:
        """One epoch's steps at rate ``lr``; returns (training PSNR in dB, seconds)."""
        config = self.config
        self.optimizers[0].learning_rate.assign(lr)
        self.optimizers[1].learning_rate.assign(lr * config.last_layer_lr_factor)
        rng = np.random.default_rng([config.seed, epoch])
        start = time.perf_counter()
        steps: Any = range(config.steps_per_epoch)
        if show_bar:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        total = 0.0
        for _ in steps:
            x, y = self.data.sampler.batch(rng, config.batch_size, config.augment)
            total += float(self.step(x, y))
        seconds = time.perf_counter() - start
        train_psnr = 10 * math.log10(1.0 / max(total / config.steps_per_epoch, 1e-12))
        return train_psnr, seconds

    def _between_epochs(self, when: str, epoch: int) -> None:
        """Revive dead channels, then re-centre (a revived channel's mean changes), neither
        changing what the network computes."""
        config, sampler = self.config, self.data.sampler
        if config.revive_dead:
            counts = revive_dead_channels(
                self.model, sampler, np.random.default_rng([config.seed, epoch, 17])
            )
            self.log(f"{when}: revived {counts[0]} dead conv1 and {counts[1]} dead conv2 channels")
        if config.centre_hidden:
            rng = np.random.default_rng([config.seed, epoch, 23])
            recentre(self.model, sampler.batch(rng, REVIVE_SAMPLE, False)[0])


def _check_shapes(config: TrainConfig) -> None:
    """Refuse, before anything is loaded, a hold-out share or sub-image size that cannot work."""
    if not 0.0 <= config.val_fraction < 1.0:
        raise DataError(f"the validation fraction must be in [0, 1), not {config.val_fraction}")
    if config.patch <= 2 * config.arch.radius:
        raise DataError(
            f"sub-images of {config.patch} pixels are too small for {config.arch.name}: "
            f"they must exceed {2 * config.arch.radius}"
        )


def _checkpoint_folder(config: TrainConfig) -> Path:
    ckpt_dir = config.checkpoint_path()
    try:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{ckpt_dir}: cannot create the checkpoint folder ({exc})") from None
    return ckpt_dir


def _logged_dataset(config: TrainConfig, log: _Log) -> Dataset:
    t0 = time.perf_counter()
    data = load_dataset(config)
    log(
        f"data: {len(data.train_files)} train images -> {len(data.sampler.planes)} planes "
        f"(augment={config.augment}), sub-images {config.patch}x{config.patch}, "
        f"{len(data.val_files)} validation images ({time.perf_counter() - t0:.1f} s)"
    )
    return data


def _initial_model(
    config: TrainConfig, data: Dataset, log: _Log
) -> tuple[Any, SRCNNWeights | None]:
    """The 'valid' Keras model, initialised as the config says; and the weights it started
    from (``--init``), if any."""
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
        gaussian_init(model, config.init_std, config.seed)
    if config.identity_init and init_weights is None:
        identity_init(model)
    return model, init_weights


def _provenance(
    config: TrainConfig,
    data: Dataset,
    state: dict[str, Any],
    init_weights: SRCNNWeights | None,
) -> dict[str, Any]:
    """What the written weights record about how they were made."""
    tf, keras = import_keras()
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
    return provenance


def train(
    config: TrainConfig,
    resume: bool = True,
    echo: Callable[[str], None] = print,
    progress: bool | None = None,
) -> SRCNNWeights:
    """Train, checkpointing every epoch; returns (and writes to ``config.out``) the weights.

    ``resume``: continue from the checkpoint folder's checkpoint if there is one; ``echo``:
    where log lines go besides ``train.log``; ``progress``: a progress bar per epoch (default:
    when stderr is a terminal).
    """
    _check_shapes(config)
    _, keras = import_keras()
    ckpt_dir = _checkpoint_folder(config)
    ckpt_file = ckpt_dir / "checkpoint.npz"
    log = _Log(ckpt_dir / "train.log", echo)
    keras.utils.set_random_seed(config.seed)
    data = _logged_dataset(config, log)
    if config.loss not in LOSSES:
        raise DataError(f"unknown loss {config.loss!r}: choose {' or '.join(LOSSES)}")
    model, init_weights = _initial_model(config, data, log)
    run = _Run(config, model, data, log)
    if resume and ckpt_file.exists():
        run.resume(ckpt_file)
    run.run(ckpt_file, sys.stderr.isatty() if progress is None else progress)
    weights = weights_from_model(
        model, config.scale, _provenance(config, data, run.state, init_weights)
    )
    weights.save(config.out)
    log(f"wrote {config.out}")
    return weights
