"""Would a deblocking pass before the network buy what the 9-1-5 JPEG-aware weights alone fall
short of at x3 and x4 (docs/training.md, "JPEG-aware weights")? Or a wider network, or a
self-ensemble? Five probes, each scored as
``tools/quality_table.py --jpeg`` scores (Set5+Set14, each LR image saved by Pillow at the
quality, gain over bicubic in dB). Nothing here is chosen or shipped, so Set5/Set14 are only
read, never used to pick anything; every fit and every training run uses the T91 images the
shipped JPEG-aware weights trained on (their hold-out is left out).

    python tools/jpeg_prepass_probe.py linear [--scale 4] [--quality 75] [--retrain EPOCHS]
    python tools/jpeg_prepass_probe.py network --deblocker FILE [--scale 4] [--retrain EPOCHS]
    python tools/jpeg_prepass_probe.py joint --out PREFIX [--scale 4] [--epochs 12]
    python tools/jpeg_prepass_probe.py wider --retrain EPOCHS [--scale 4]
    python tools/jpeg_prepass_probe.py ensemble [--scale 4]

* ``linear``: a filter that knows where the 8x8 blocks lie. For each of the 64 positions in
  a block and each quality, the least-squares 7x7 linear filter from the decoded LR luma to
  the clean LR luma.
* ``network``: a 9-1-5 network at scale 1 trained to undo JPEG (at LR size its 13x13 window
  spans more than a block), e.g. ``srcnn-fast train -s 1 --out runs/deblock_x1.npz --init
  srcnn_fast/weights/srcnn_x2_jpeg.npz --jpeg 55 60 65 70 75 80 85 --jpeg-copies 6 --patch 48
  --steps 1300 --revive-dead --input-offset 0.5 --loss mse --lr 3e-4 --final-lr 1e-5
  --epochs 15 --seed 3``.
* ``--retrain N``: then fine-tunes the shipped JPEG-aware weights on LR images that went
  through the pass (tools/train_jpeg.sh's second stage, N epochs), so that the network is not
  judged on inputs it never saw.
* ``joint``: the two networks trained together, end to end (LR JPEG luma -> 9-1-5 at scale 1
  -> bicubic -> 9-1-5 at scale S -> HR luma, MSE): the pass starts as the identity and the
  second network as the shipped JPEG-aware weights, so training starts from today's result.
* ``wider``: no pass; the middle layer widened from 1x1 to 5x5 (9-5-5, the TPAMI paper's
  best, 25 times its weights), started from the shipped JPEG-aware weights (the 1x1 kernel at
  the centre of zeros: the same output) and retrained as ``--retrain`` does.
* ``ensemble``: no pass, no training; the shipped JPEG-aware weights run on the 8 flips and
  rotations of the input, averaged (self-ensemble, 8 times the work).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from srcnn_fast import imageops
from srcnn_fast.backends import create_backend
from srcnn_fast.evaluate import find_pairs, psnr, score
from srcnn_fast.imagefile import read_image
from srcnn_fast.infer import shipped_weights_path
from srcnn_fast.jpeg import jpeg_roundtrip
from srcnn_fast.model import SRCNNWeights
from srcnn_fast.train import data as train_data

HERE = Path(__file__).resolve().parents[1]
#: The qualities of tools/train_jpeg.sh's second stage at x3 and x4.
QUALITIES = (55, 60, 65, 70, 75, 80, 85)
RADIUS = 3  # the linear filter: 7x7
LumaPass = Callable[[np.ndarray, int], np.ndarray]  # (LR luma, JPEG quality) -> LR luma


def luma(image: np.ndarray) -> np.ndarray:
    return imageops.image_luma(imageops.to_float(image))


def training_files(data: Path, scale: int) -> list[Path]:
    """T91 less the hold-out of the shipped JPEG-aware weights of ``scale``."""
    held_out = set(SRCNNWeights.load(shipped_weights_path(scale, "jpeg")).provenance["val_images"])
    return [f for f in train_data.image_files(data) if f.name not in held_out]


# --- the linear pass ------------------------------------------------------------------------


def _neighbourhoods(y: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 50): each pixel's 7x7 edge-replicated neighbourhood, and a 1."""
    k = 2 * RADIUS + 1
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(y, RADIUS, mode="edge"), (k, k))
    return np.concatenate([windows.reshape(*y.shape, k * k), np.ones((*y.shape, 1))], -1)


def _block_position(shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(shape[0])[:, None] % 8) * 8 + np.arange(shape[1])[None, :] % 8


def fit_linear_pass(files: list[Path], qualities: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per quality, (64, 50) filters: the least-squares correction of the decoded luma towards
    the clean LR luma, one per position in the block, over LR images at x2, x3 and x4."""
    taps = (2 * RADIUS + 1) ** 2 + 1
    gram = {q: np.zeros((64, taps, taps)) for q in qualities}
    cross = {q: np.zeros((64, taps)) for q in qualities}
    for path in files:
        hr = read_image(path)[..., :3]
        for s in (2, 3, 4):
            lr = imageops.matlab_downscale(hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s], s)
            clean = luma(lr).astype(np.float64)
            for q in qualities:
                decoded = luma(jpeg_roundtrip(lr, q)).astype(np.float64)
                features, where = _neighbourhoods(decoded), _block_position(decoded.shape)
                for p in range(64):
                    x, t = features[where == p], (clean - decoded)[where == p]
                    gram[q][p] += x.T @ x
                    cross[q][p] += x.T @ t
    ridge = 1e-6 * np.eye(taps)
    return {
        q: np.stack([np.linalg.solve(gram[q][p] + ridge, cross[q][p]) for p in range(64)])
        for q in qualities
    }


def linear_pass(filters: dict[int, np.ndarray]) -> LumaPass:
    def run(y: np.ndarray, quality: int) -> np.ndarray:
        y = y.astype(np.float64)
        f = filters[quality][_block_position(y.shape)]
        return (y + np.einsum("hwk,hwk->hw", _neighbourhoods(y), f)).astype(np.float32)

    return run


def network_pass(weights: SRCNNWeights) -> LumaPass:
    backend = create_backend("cpu", weights, "fp32")
    return lambda y, quality: np.clip(backend.upscale_luma(y), 0.0, 1.0).astype(np.float32)


# --- scoring --------------------------------------------------------------------------------


def gains(
    data: Path,
    scale: int,
    quality: int,
    prepass: LumaPass | None,
    networks: dict[str, SRCNNWeights],
    ensembles: tuple[str, ...] = (),
) -> dict[str, float]:
    """Mean PSNR gain over bicubic on Set5+Set14 at ``quality``: bicubic after the pass, and
    each network without the pass and after it; first, the pass's own gain on the LR luma.
    The networks named in ``ensembles`` also run as a self-ensemble."""
    backends: dict[str, object] = {
        name: create_backend("cpu", w, "fp32") for name, w in networks.items()
    }
    for name in ensembles:
        backends[f"{name}, 8 flips/rotations averaged"] = SelfEnsemble(backends[name])
    rows: dict[str, list[float]] = {}
    lr_change = []  # what the pass does to the LR luma itself, against the clean LR luma
    for folder in ("Set5", "Set14"):
        for pair in find_pairs(data / folder, scale):
            lr, hr = read_image(pair.lr), read_image(pair.hr)
            decoded = jpeg_roundtrip(lr, quality)
            runs: list[tuple[str, bool, object]] = [("bicubic", False, None)]
            runs += [(name, False, b) for name, b in backends.items()]
            if prepass is not None:
                clean_luma, decoded_luma = 255 * luma(lr), luma(decoded)
                lr_change.append(
                    psnr(255 * prepass(decoded_luma, quality), clean_luma)
                    - psnr(255 * decoded_luma, clean_luma)
                )
                runs += [("pass + bicubic", True, None)]
                runs += [(f"pass + {name}", True, b) for name, b in backends.items()]
            for label, with_pass, backend in runs:

                def upscale_luma(y: np.ndarray, with_pass=with_pass, backend=backend) -> np.ndarray:
                    if with_pass and prepass is not None:
                        y = prepass(y, quality)
                    if backend is None:
                        return imageops.bicubic_upscale(y, scale)
                    return backend.upscale_luma(y)

                out = imageops.upscale_image(decoded, scale, upscale_luma)
                rows.setdefault(label, []).append(score(out, hr, scale)[0])
    base = float(np.mean(rows["bicubic"]))
    result = {label: float(np.mean(v)) - base for label, v in rows.items()}
    if not lr_change:
        return result
    return {"the LR luma after the pass (LR PSNR)": float(np.mean(lr_change)), **result}


class SelfEnsemble:
    """A network run on the 8 flips and rotations of its input, the outputs turned back and
    averaged (8 times the work)."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def upscale_luma(self, y: np.ndarray) -> np.ndarray:
        outputs = []
        for k in range(8):
            out = self.backend.upscale_luma(np.ascontiguousarray(train_data.dihedral(y, k)))
            out = np.rot90(out, -(k % 4), axes=(-2, -1))  # dihedral's inverse: unrotate, unflip
            outputs.append(out[..., ::-1] if k >= 4 else out)
        return np.mean(outputs, axis=0).astype(np.float32)


def show(title: str, result: dict[str, float]) -> None:
    print(title)
    for label, gain in result.items():
        print(f"  {label:<48} {gain:+.3f} dB")


# --- retraining behind a pass ---------------------------------------------------------------


def retrain(
    scale: int,
    data: Path,
    prepass: LumaPass | None,
    epochs: int,
    out: Path,
    init: SRCNNWeights | None = None,
) -> SRCNNWeights:
    """tools/train_jpeg.sh's second stage from the shipped JPEG-aware weights (or ``init``,
    whatever its architecture), with every JPEG LR luma going through ``prepass`` before its
    bicubic upscale (the training data's pair maker swapped for this run only)."""
    from srcnn_fast.cli import main as cli_main

    if init is None:
        start = str(shipped_weights_path(scale, "jpeg"))
    else:
        start = str(out.with_name(f"{out.stem}_init.npz"))
        init.save(start)
    arch = init.arch if init is not None else SRCNNWeights.load(start).arch
    shape = ["--f1", str(arch.f1), "--n1", str(arch.n1), "--f2", str(arch.f2)]
    shape += ["--n2", str(arch.n2), "--f3", str(arch.f3)]

    def pairs_after_pass(hr, scale, downscaler="matlab", jpeg_qualities=(None,)):
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        hr = hr[..., :3] if hr.ndim == 3 else hr
        lr = imageops.matlab_downscale(hr, scale)
        truth = luma(hr)
        made = []
        for q in jpeg_qualities:
            y = luma(lr) if q is None else prepass(luma(jpeg_roundtrip(lr, q)), q)
            made.append((imageops.bicubic_upscale(y, scale), truth))
        return made

    original = train_data.make_training_pairs
    if prepass is not None:
        train_data.make_training_pairs = pairs_after_pass
    try:
        # fmt: off
        cli_main([
            "train", "--data", str(data / "T91"), "-s", str(scale), "--out", str(out),
            "--init", start, *shape, "--patch", "48",
            "--batch-size", "16", "--steps", "1300", "--seed", "2", "--revive-dead",
            "--input-offset", "0.5", "--loss", "mse", "--downscaler", "matlab",
            "--jpeg", *map(str, QUALITIES), "--jpeg-copies", "6",
            "--lr", "1e-4", "--final-lr", "1e-5", "--epochs", str(epochs),
        ])
        # fmt: on
    finally:
        train_data.make_training_pairs = original
    return SRCNNWeights.load(out)


def widened(weights: SRCNNWeights, f2: int) -> SRCNNWeights:
    """The same function with an f2 x f2 middle layer: the 1x1 kernel at the centre of zeros,
    so training starts from exactly the given weights' output."""
    arch = dataclasses.replace(weights.arch, f2=f2)
    w2 = np.zeros(arch.shapes()["w2"], np.float32)
    w2[f2 // 2, f2 // 2] = weights.w2[0, 0]
    arrays = {**weights.arrays(), "w2": w2}
    return SRCNNWeights(arch, weights.scale, **arrays, provenance=dict(weights.provenance))


# --- both networks trained together ---------------------------------------------------------


def identity_network(like: SRCNNWeights) -> SRCNNWeights:
    """A 9-1-5 at scale 1 that passes its input through (luma >= 0, so the ReLUs are exact);
    the other channels start tiny, so that gradients reach them."""
    rng = np.random.default_rng(0)
    shapes = like.arch.shapes()
    w1 = rng.normal(0, 1e-3, shapes["w1"]).astype(np.float32)
    w2 = rng.normal(0, 1e-3, shapes["w2"]).astype(np.float32)
    w3 = np.zeros(shapes["w3"], np.float32)
    c1, c3 = like.arch.f1 // 2, like.arch.f3 // 2
    w1[..., 0] = 0.0
    w1[c1, c1, 0, 0] = 1.0
    w2[0, 0, :, 0] = 0.0
    w2[0, 0, 0, 0] = 1.0
    w3[c3, c3, 0, 0] = 1.0
    zeros = {name: np.zeros(shapes[name], np.float32) for name in ("b1", "b2", "b3")}
    return SRCNNWeights(like.arch, 1, w1, zeros["b1"], w2, zeros["b2"], w3, zeros["b3"])


def train_jointly(
    scale: int, data: Path, epochs: int, steps: int, out: str
) -> tuple[SRCNNWeights, SRCNNWeights]:
    """Adam 1e-4 -> 1e-5 (cosine), batches of 16 LR sub-images, MSE on the HR luma; both
    networks' arrays written to ``OUT_pass.npz`` / ``OUT_sr.npz`` after every epoch."""
    from srcnn_fast.train.keras_model import import_keras

    tf, keras = import_keras()
    sr = SRCNNWeights.load(shipped_weights_path(scale, "jpeg"))
    lr_side = {2: 40, 3: 36, 4: 32}.get(scale, 32)  # LR sub-image
    mid = lr_side - 12  # after the pass (valid convolutions)
    crop = 2 * scale  # HR pixels whose bicubic taps reach past the pass's output
    label = scale * mid - 2 * crop - 12
    offset = 6 * scale + crop + 6  # the label's first HR pixel, from the sub-image's
    rng = np.random.default_rng(5)
    planes = []
    for path in training_files(data / "T91", scale):
        image = read_image(path)[..., :3]
        for factor in (1.0, 0.9, 0.8, 0.7, 0.6):
            hr = train_data._downscaled(image, factor)
            hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
            if min(hr.shape[:2]) < scale * lr_side:
                continue
            lr = imageops.matlab_downscale(hr, scale)
            for _ in range(6):
                q = int(rng.choice(QUALITIES))
                planes.append((luma(jpeg_roundtrip(lr, q)), luma(hr)))
    sizes = np.array([(a.shape[0] - lr_side + 1) * (a.shape[1] - lr_side + 1) for a, _ in planes])
    chance = sizes / sizes.sum()

    def batch(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((size, lr_side, lr_side, 1), np.float32)
        y = np.empty((size, label, label, 1), np.float32)
        for i, k in enumerate(rng.choice(len(planes), size, p=chance)):
            a, b = planes[k]
            r, c = rng.integers(a.shape[0] - lr_side + 1), rng.integers(a.shape[1] - lr_side + 1)
            xi = a[r : r + lr_side, c : c + lr_side]
            yi = b[r * scale + offset :, c * scale + offset :][:label, :label]
            k8 = int(rng.integers(8))
            xi, yi = train_data.dihedral(xi, k8), train_data.dihedral(yi, k8)
            x[i, :, :, 0], y[i, :, :, 0] = xi, yi
        return x, y

    index, taps = imageops.bicubic_taps(mid, scale)
    upscale = np.zeros((scale * mid, mid), np.float32)
    for row in range(scale * mid):
        for j in range(4):
            upscale[row, index[row, j]] += taps[row, j]
    upscale_t = tf.constant(upscale[crop : scale * mid - crop])
    names = ("w1", "b1", "w2", "b2", "w3", "b3")
    variables = [tf.Variable(getattr(w, n)) for w in (identity_network(sr), sr) for n in names]

    def network(x, v):
        x = tf.nn.relu(tf.nn.conv2d(x, v[0], 1, "VALID") + v[1])
        x = tf.nn.relu(tf.nn.conv2d(x, v[2], 1, "VALID") + v[3])
        return tf.nn.conv2d(x, v[4], 1, "VALID") + v[5]

    optimizer = keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            cleaned = network(x, variables[:6])
            up = tf.einsum("ij,bjkc,lk->bilc", upscale_t, cleaned, upscale_t)
            loss = tf.reduce_mean((network(up, variables[6:]) - y) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    for epoch in range(epochs):
        rate = 1e-5 + 0.5 * (1e-4 - 1e-5) * (1 + np.cos(np.pi * epoch / max(epochs - 1, 1)))
        optimizer.learning_rate.assign(rate)
        started, total = time.perf_counter(), 0.0
        for _ in range(steps):
            total += float(step(*batch()))
        mse = total / steps
        print(
            f"epoch {epoch + 1}/{epochs}: lr {rate:.2e}, train {-10 * np.log10(mse):.2f} dB, "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        arrays = [v.numpy() for v in variables]
        first = SRCNNWeights(sr.arch, 1, *arrays[:6])
        second = SRCNNWeights(sr.arch, scale, *arrays[6:], provenance=dict(sr.provenance))
        first.save(f"{out}_pass.npz")
        second.save(f"{out}_sr.npz")
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("linear", "network", "joint", "wider", "ensemble"))
    parser.add_argument("--data", type=Path, default=HERE.parent / "shared/data")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--quality", type=int, default=75, choices=QUALITIES)
    parser.add_argument("--deblocker", help="network: the scale-1 9-1-5 weights")
    parser.add_argument("--retrain", type=int, default=0, help="epochs (0: no retraining)")
    parser.add_argument("--out", default="runs/prepass", help="where trained weights go")
    parser.add_argument("--epochs", type=int, default=12, help="joint: epochs")
    parser.add_argument("--steps", type=int, default=1300, help="joint: batches an epoch")
    args = parser.parse_args()
    scale, data = args.scale, args.data
    os.makedirs(Path(args.out).parent, exist_ok=True)
    networks = {
        "clean weights": SRCNNWeights.load(shipped_weights_path(scale)),
        "JPEG-aware weights": SRCNNWeights.load(shipped_weights_path(scale, "jpeg")),
    }
    prepass: LumaPass | None = None
    ensembles: tuple[str, ...] = ()
    if args.probe == "ensemble":
        ensembles = ("JPEG-aware weights",)
    elif args.probe == "wider":
        wide = widened(networks["JPEG-aware weights"], 5)
        out = Path(f"{args.out}_x{scale}_955.npz")
        networks["9-5-5, retrained"] = retrain(scale, data, None, args.retrain, out, init=wide)
    elif args.probe == "joint":
        first, second = train_jointly(scale, data, args.epochs, args.steps, args.out)
        networks["jointly trained"] = second
        prepass = network_pass(first)
    elif args.probe == "linear":
        prepass = linear_pass(fit_linear_pass(training_files(data / "T91", scale), QUALITIES))
    else:
        if not args.deblocker:
            sys.exit("network: give --deblocker FILE (a 9-1-5 trained at scale 1)")
        prepass = network_pass(SRCNNWeights.load(args.deblocker))
    if args.retrain and prepass is not None:
        out = Path(f"{args.out}_x{scale}_retrained.npz")
        networks["retrained behind the pass"] = retrain(scale, data, prepass, args.retrain, out)
    show(
        f"x{scale}, JPEG q={args.quality}, Set5+Set14: gain over bicubic",
        gains(data, scale, args.quality, prepass, networks, ensembles),
    )


if __name__ == "__main__":
    main()
