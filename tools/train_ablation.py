"""Measure what buys quality: short x3 training runs from scratch that each change one thing
in the shipped recipe (optimizer and schedule, initialisation, the paper's 10x smaller rate on
the last layer, the amount of augmentation), scored on the T91 hold-out. Set5 is printed for
reference only; no choice is made on it.

    python tools/train_ablation.py [--data ../shared/data] [--out runs/ablation]
                                   [--epochs 8] [--steps 1000]

Every run sees the same number of sub-images (epochs x steps x 16) and the same validation
split; runs are resumable (rerun after an interruption) and skipped when already finished.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from srcnn_fast.evaluate import bicubic_upscaler, evaluate
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import Architecture
from srcnn_fast.train import TrainConfig, build_keras_model, dead_channels, load_dataset, train

PATCH = 48
#: The paper's 1e-4 is for a loss summed over each sub-image's label pixels (Caffe's Euclidean
#: loss); ours is their mean, so the same steps need the rate times the label pixels per patch.
PAPER_SGD_RATE = 1e-4 * (PATCH - 2 * Architecture().radius) ** 2

REVIVE: dict[str, Any] = {"revive_dead": True}
CENTRED: dict[str, Any] = {"input_offset": 0.5}
IDENTITY: dict[str, Any] = {"identity_init": True}
#: The l1-loss variant: the shipped recipe since, which the last variants build on.
L1_RECIPE: dict[str, Any] = {**REVIVE, **CENTRED, **IDENTITY, "loss": "l1"}

# (name, what it changes, TrainConfig fields)
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("recipe", "shipped recipe: Adam 1e-3, cosine to 1e-5, Glorot, full augmentation", {}),
    ("last-layer", "last layer's rate x0.1 (the paper)", {"last_layer_lr_factor": 0.1}),
    ("constant-rate", "no decay: Adam at 1e-3 throughout", {"final_learning_rate": 1e-3}),
    ("gaussian-init", "the paper's init: kernels N(0, 0.001^2), biases 0", {"init_std": 1e-3}),
    (
        "paper-sgd",
        "the paper's SGD: momentum 0.9, fixed 1e-4 (summed loss), last layer x0.1, its init",
        {
            "optimizer": "sgd",
            "learning_rate": PAPER_SGD_RATE,
            "final_learning_rate": PAPER_SGD_RATE,
            "last_layer_lr_factor": 0.1,
            "init_std": 1e-3,
        },
    ),
    (
        "flips-only",
        "augmentation: flips/rotations only, no downscaled copies",
        {"downscales": (1.0,)},
    ),
    ("no-augment", "no augmentation at all", {"augment": False}),
    (
        "revive-dead",
        "dead ReLU channels re-initialised at the start and after each epoch",
        REVIVE,
    ),
    # The levers found after reviving (each on top of revive-dead; the README runs these 16
    # epochs: --epochs 16 --only revive-dead identity-init centred-input ...).
    ("identity-init", "revive-dead, starting from the identity", {**REVIVE, **IDENTITY}),
    ("centred-input", "revive-dead, input luma centred (-0.5)", {**REVIVE, **CENTRED}),
    (
        "centred+identity",
        "revive-dead, centred input, identity start",
        {**REVIVE, **CENTRED, **IDENTITY},
    ),
    (
        "centred-all+identity",
        "centred+identity, conv2's and conv3's inputs centred too",
        {**REVIVE, **CENTRED, **IDENTITY, "centre_hidden": True},
    ),
    (
        "l1-loss",
        "centred+identity, trained on the mean absolute error",
        L1_RECIPE,
    ),
    # Tried on top of l1-loss (the shipped recipe since): --epochs 16 --only l1-loss l1+...
    (
        "l1+flips-only",
        "l1-loss, no downscaled copies",
        {**L1_RECIPE, "downscales": (1.0,)},
    ),
    (
        "l1+centred-all",
        "l1-loss, conv2's and conv3's inputs centred too",
        {**L1_RECIPE, "centre_hidden": True},
    ),
    (
        "l1+rate-2e-3",
        "l1-loss, Adam from 2e-3",
        {**L1_RECIPE, "learning_rate": 2e-3},
    ),
    (
        "psnr-loss",
        "l1-loss with the psnr loss instead",
        {**L1_RECIPE, "loss": "psnr"},
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--only", nargs="*", help="run these variants only")
    args = parser.parse_args()
    base = TrainConfig(
        data=str(Path(args.data) / "T91"),
        scale=3,
        out="",
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch_size=16,
        patch=PATCH,
        seed=0,
        # The README's ablation tables were measured on Pillow-made LR images (the default
        # since is MATLAB's imresize; the two differ by 1 in ~18% of LR pixels).
        downscaler="pillow",
    )
    # Channels never positive on these training sub-images count as dead.
    sample, _ = load_dataset(base).sampler.batch(np.random.default_rng(1), 256, False)
    rows = []
    for name, what, changes in VARIANTS:
        if args.only and name not in args.only:
            continue
        out = Path(args.out) / f"{name}.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(base, out=str(out), **changes)
        weights = train(config, echo=lambda m, name=name: print(f"[{name}] {m}", flush=True))
        up = Upscaler(weights=str(out), backend="cpu")
        set5 = evaluate(Path(args.data) / "Set5", 3, {"srcnn": up, "bicubic": bicubic_upscaler(3)})
        dead = dead_channels(build_keras_model(weights=weights), sample)
        live = f"{weights.arch.n1 - len(dead[0])} / {weights.arch.n2 - len(dead[1])}"
        rows.append((name, what, weights.provenance["val_psnr_db"], live, set5.mean("srcnn").psnr))
    sub_images = args.epochs * args.steps * base.batch_size
    print(f"\nx3, {sub_images:,} sub-images of {PATCH}x{PATCH} per run, seed 0:\n")
    print(
        "| variant | what changes | T91 hold-out PSNR | vs recipe | live conv1 / conv2 channels "
        "| Set5 x3 (report only) |"
    )
    print("|---|---|---|---|---|---|")
    reference = next((r[2] for r in rows if r[0] == "recipe"), None)
    for name, what, val, live, set5_psnr in rows:
        delta = f"{val - reference:+.2f} dB" if reference is not None else ""
        print(f"| {name} | {what} | {val:.2f} dB | {delta} | {live} | {set5_psnr:.2f} dB |")


if __name__ == "__main__":
    main()
