"""Training: data made as inference sees it, a short real run, resume, and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close

from srcnn_fast import imageops
from srcnn_fast.cli import main
from srcnn_fast.imagefile import write_image
from srcnn_fast.model import Architecture, SRCNNWeights
from srcnn_fast.train import (
    PatchSampler,
    TrainConfig,
    build_keras_model,
    dihedral,
    learning_rate_at,
    load_dataset,
    make_training_pair,
    revive_dead_channels,
    train,
)
from srcnn_fast.train.keras_model import _conv_layers

pytest.importorskip("tensorflow")

TINY = Architecture(f1=3, n1=8, f2=1, n2=4, f3=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five smooth synthetic RGB images (no dependency on ../shared/data)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:72] / 9.0
    for i in range(5):
        phase = rng.random(3) * 6
        rgb = 0.5 + 0.4 * np.sin(xx[..., None] * (1 + i / 3) + yy[..., None] + phase)
        write_image(root / f"img{i}.png", (rgb * 255).astype(np.uint8))
    return root


def test_training_pair_is_what_inference_sees() -> None:
    from PIL import Image

    from srcnn_fast.errors import DataError

    hr = np.random.default_rng(1).integers(0, 256, (31, 40, 3)).astype(np.uint8)
    pillow = np.asarray(Image.fromarray(hr[:30, :39]).resize((13, 10), Image.Resampling.BICUBIC))
    for downscaler, lr in (
        ("matlab", imageops.matlab_downscale(hr, 3)),
        ("pillow", pillow),
    ):
        up, hr_y = make_training_pair(hr, 3, downscaler)
        assert up.shape == hr_y.shape == (30, 39)
        expected = imageops.bicubic_upscale(imageops.rgb_to_luma(imageops.to_float(lr)), 3)
        assert_close(up, expected, 0.0, f"upscaled LR luma ({downscaler})")
    np.testing.assert_array_equal(
        make_training_pair(hr, 3)[0], make_training_pair(hr, 3, "matlab")[0]
    )
    with pytest.raises(DataError, match="unknown downscaler 'nearest'"):
        make_training_pair(hr, 3, "nearest")


@pytest.mark.parametrize("augment", [False, True])
def test_patches_align_with_the_valid_output(augment: bool) -> None:
    up = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    sampler = PatchSampler([(up, up + 0.5), (up[:30, :20], up[:30, :20] + 0.5)], 17, 6)
    x, y = sampler.batch(np.random.default_rng(0), 64, augment)
    assert x.shape == (64, 17, 17, 1) and y.shape == (64, 5, 5, 1)
    np.testing.assert_array_equal(y, x[:, 6:-6, 6:-6] + 0.5)
    kinds = {tuple(np.sign(np.diff(b[:, :, 0], axis=a)[0, 0]) for a in (0, 1)) for b in x}
    assert len(kinds) == (4 if augment else 1), kinds


def test_dihedral_group() -> None:
    a = np.arange(6).reshape(2, 3)
    seen = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(seen) == 8


def test_learning_rate_schedule() -> None:
    config = TrainConfig(
        data="", scale=2, out="", epochs=5, learning_rate=1e-3, final_learning_rate=1e-5
    )
    rates = [learning_rate_at(config, e) for e in range(5)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in itertools.pairwise(rates))


def test_short_run_resumes_and_records_provenance(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    config = TrainConfig(
        data=str(folder),
        scale=2,
        out=str(out),
        epochs=1,
        batch_size=8,
        steps_per_epoch=20,
        patch=17,
        val_fraction=0.2,
        arch=TINY,
        last_layer_lr_factor=0.1,
    )
    lines: list[str] = []
    first = train(config, echo=lines.append, progress=False)
    assert first.arch == TINY and out.exists()
    config.epochs = 2
    second = train(config, echo=lines.append, progress=False)
    log = (tmp_path / "w.npz.ckpt" / "train.log").read_text()
    assert "resumed from" in log and "epoch 2/2" in log and "epoch 1/2" not in log
    assert not np.array_equal(first.w1, second.w1), "the resumed run kept training"
    loaded = SRCNNWeights.load(out)
    prov = loaded.provenance
    assert prov["epochs"] == 2 and len(prov["val_images"]) == 1 and len(prov["train_images"]) == 4
    assert prov["config"]["seed"] == 0 and np.isfinite(prov["val_psnr_db"])
    json.dumps(prov)
    assert "init_provenance" not in prov and "total_epochs" not in prov

    # Continued from those weights: the provenance chains back to the first run.
    config.init, config.out, config.checkpoint_dir = str(out), str(tmp_path / "c.npz"), None
    config.epochs = 1
    chained = train(config, echo=lines.append, progress=False).provenance
    assert (
        chained["init_provenance"]["epochs"] == 2
        and "train_images" not in chained["init_provenance"]
    )
    assert chained["total_epochs"] == 3
    assert chained["total_train_seconds"] > prov["train_seconds"]


def test_holdout_split_ignores_the_seed(folder: Path, tmp_path: Path) -> None:
    """--seed changes the initial weights and the sub-images, never the hold-out split: a run
    continued from another seed's weights still validates on images neither run trained on."""
    base = {"data": str(folder), "scale": 2, "out": str(tmp_path / "w.npz"), "val_fraction": 0.4}
    splits = {
        seed: load_dataset(TrainConfig(**base, seed=seed)).val_files for seed in (0, 1, 7, 1234)
    }
    assert len(splits[0]) == 2 and all(v == splits[0] for v in splits.values()), splits

    # Weights that did train on a validation image: the continued run says so in its log.
    init = SRCNNWeights.random(arch=TINY, scale=2, seed=5)
    init.provenance = {"train_images": [splits[0][1], "other.png"]}
    init.save(tmp_path / "init.npz")
    config = TrainConfig(
        **{**base, "seed": 3},
        init=str(tmp_path / "init.npz"),
        epochs=1,
        batch_size=4,
        steps_per_epoch=2,
        patch=17,
        arch=TINY,
    )
    lines: list[str] = []
    train(config, echo=lines.append, progress=False)
    warned = [line for line in lines if line.startswith("warning:")]
    assert len(warned) == 1 and f"1 of the validation images ({splits[0][1]})" in warned[0], lines


def test_train_command(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.npz"
    argv = [
        "train",
        "--data",
        str(folder),
        "--scale",
        "3",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--patch",
        "21",
        "--steps",
        "5",
        "--f1",
        "3",
        "--n1",
        "4",
        "--n2",
        "4",
        "--f3",
        "3",
    ]
    assert main(argv) == 0
    assert SRCNNWeights.load(out).scale == 3
    assert "epoch 1/1" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "none"), "--scale", "3", "--out", str(out)]) == 1
    assert main([*argv[:9], "--f1", "4"]) == 2


def test_refusals(folder: Path, tmp_path: Path) -> None:
    from srcnn_fast.errors import DataError

    base = {
        "data": str(folder),
        "scale": 2,
        "out": str(tmp_path / "w.npz"),
        "arch": TINY,
        "epochs": 1,
        "steps_per_epoch": 2,
        "patch": 17,
    }
    with pytest.raises(DataError, match="validation fraction"):
        train(TrainConfig(**{**base, "val_fraction": 1.5}), progress=False)
    with pytest.raises(DataError, match="too small"):
        train(TrainConfig(**{**base, "patch": 4}), progress=False)
    train(TrainConfig(**base), echo=lambda _: None, progress=False)
    with pytest.raises(DataError, match=r"different training setup \(scale differ"):
        train(TrainConfig(**{**base, "scale": 3}), echo=lambda _: None, progress=False)
    with pytest.raises(DataError, match="unknown optimizer 'rmsprop'"):
        train(TrainConfig(**{**base, "optimizer": "rmsprop"}), echo=lambda _: None)


def test_paper_optimizer_and_initialisation(folder: Path, tmp_path: Path) -> None:
    """SGD with momentum and Gaussian N(0, std^2) kernels (zero biases) train and resume."""
    config = TrainConfig(
        data=str(folder),
        scale=2,
        out=str(tmp_path / "sgd.npz"),
        arch=TINY,
        epochs=0,
        steps_per_epoch=2,
        patch=17,
        optimizer="sgd",
        init_std=1e-3,
        learning_rate=1e-4,
    )
    untrained = train(config, echo=lambda _: None, progress=False)
    for i in (1, 2, 3):
        kernel, bias = getattr(untrained, f"w{i}"), getattr(untrained, f"b{i}")
        assert not bias.any(), f"b{i} starts at 0"
        assert 0.5e-3 < float(kernel.std()) < 2e-3, f"w{i} std {kernel.std():.2e}, want ~1e-3"
    config.epochs = 1
    trained = train(config, echo=lambda _: None, progress=False)
    assert not np.array_equal(trained.w1, untrained.w1), "SGD moved the weights"
    assert trained.provenance["config"]["optimizer"] == "sgd"


def test_checkpoints_from_before_the_optimizer_option_resume(folder: Path, tmp_path: Path) -> None:
    """A checkpoint whose recipe lacks the fields added later resumes as their defaults."""
    from srcnn_fast.train.loop import _checkpoint_state

    out = tmp_path / "old.npz"
    config = TrainConfig(
        data=str(folder), scale=2, out=str(out), arch=TINY, epochs=1, steps_per_epoch=2, patch=17
    )
    train(config, echo=lambda _: None, progress=False)
    ckpt = tmp_path / "old.npz.ckpt" / "checkpoint.npz"
    with np.load(ckpt) as data:
        arrays = dict(data)
    state = _checkpoint_state(ckpt)
    for key in ("optimizer", "init_std"):
        del state["recipe"][key]
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
    np.savez(ckpt, **arrays)
    config.epochs = 2
    lines: list[str] = []
    train(config, echo=lines.append, progress=False)
    assert any("resumed from" in line for line in lines), lines


def test_reviving_dead_channels_keeps_the_output(folder: Path) -> None:
    """Dead conv1/conv2 channels get live kernels; the network's output does not change."""
    arch = Architecture(f1=3, n1=8, f2=1, n2=6, f3=3)
    data = load_dataset(TrainConfig(data=str(folder), scale=2, out="", arch=arch, patch=17))
    weights = SRCNNWeights.random(arch=arch, scale=2, seed=3)
    weights.b1[:3] = -100.0  # conv1 channels 0-2 and conv2 channels 0-1 can never fire
    weights.b2[:2] = -100.0
    model = build_keras_model(weights=weights)
    x, _ = data.sampler.batch(np.random.default_rng(0), 32, False)
    before = np.asarray(model(x))
    # At least the forced ones: a random start on [0, 1] luma also kills others (the point).
    revived = revive_dead_channels(model, data.sampler, np.random.default_rng(1))
    assert revived[0] >= 3 and revived[1] >= 2, revived
    assert_close(np.asarray(model(x)), before, atol=0.0, what="output after reviving")
    conv1, conv2, _ = _conv_layers(model)
    h1 = np.asarray(conv1(x))
    assert (h1.max(axis=(0, 1, 2)) > 0).all(), "every conv1 channel fires somewhere"
    assert (np.asarray(conv2(h1)).max(axis=(0, 1, 2)) > 0).all(), "every conv2 channel fires"
    assert revive_dead_channels(model, data.sampler, np.random.default_rng(2)) == [0, 0]


def test_centring_is_folded_into_the_biases() -> None:
    """A model that centres its conv layers' inputs computes what its raw weights compute:
    weights_from_model folds the centring into the biases, set_model_weights unfolds it, and
    recentre moves the means to the data's without changing the output."""
    from srcnn_fast.train import recentre, set_model_weights, weights_from_model
    from srcnn_fast.train.keras_model import _centring

    weights = SRCNNWeights.random(arch=TINY, scale=2, seed=5)
    weights.b1[:] = np.abs(weights.b1) + 0.1  # most channels alive, so the means matter
    weights.b2[:] = np.abs(weights.b2) + 0.1
    plain = build_keras_model(weights=weights)
    centred = build_keras_model(TINY, input_offset=0.45, centre_hidden=True)
    assert [float(m[0]) for m in _centring(centred)] == [pytest.approx(0.45), 0.0, 0.0]
    assert all(not m.any() for m in _centring(plain))
    set_model_weights(centred, weights)
    x = np.random.default_rng(0).uniform(0.06, 0.92, (4, 20, 20, 1)).astype(np.float32)
    expected = np.asarray(plain(x))
    # float32 sums in another order: a few ULP of outputs near 1
    assert_close(np.asarray(centred(x)), expected, 1e-6, "centred vs plain model")
    recentre(centred, x)
    means = _centring(centred)
    h1 = np.asarray(_conv_layers(plain)[0](x))
    assert_close(means[1], h1.mean(axis=(0, 1, 2)), 1e-6, "conv2's centring: conv1's mean")
    assert means[2].any(), "conv3's input centred too"
    assert_close(np.asarray(centred(x)), expected, 2e-6, "output after recentre")
    back = weights_from_model(centred, 2)
    for name in ("w1", "b1", "w2", "b2", "w3", "b3"):
        assert_close(getattr(back, name), getattr(weights, name), 2e-6, f"{name} round trip")


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_identity_start_outputs_the_bicubic_input(folder: Path, tmp_path: Path, offset) -> None:
    """--identity-init: the untrained weights, run by the NumPy reference with its replicate
    padding, return their input plane (the ReLUs pass the identity channel untouched)."""
    from srcnn_fast.backends.reference import ReferenceBackend

    config = TrainConfig(
        data=str(folder),
        scale=2,
        out=str(tmp_path / "id.npz"),
        arch=Architecture(f1=5, n1=8, f2=1, n2=4, f3=3),
        epochs=0,
        patch=17,
        identity_init=True,
        input_offset=offset,
        centre_hidden=bool(offset),
    )
    weights = train(config, echo=lambda _: None, progress=False)
    assert weights.provenance["config"]["identity_init"] is True
    plane = np.random.default_rng(1).uniform(0.0, 1.0, (23, 31)).astype(np.float32)
    out = ReferenceBackend(weights).network(plane)
    assert_close(out, plane, 1e-6, "identity-initialised network vs its input")
    # Training from it moves away from the identity, through plain 9-1-5 weights.
    config.epochs, config.steps_per_epoch = 1, 5
    trained = train(config, echo=lambda _: None, progress=False)
    assert not np.array_equal(trained.w3, weights.w3)


def test_loss_values() -> None:
    import tensorflow as tf

    from srcnn_fast.train.loop import PSNR_LOSS_FLOOR, _loss

    error = np.random.default_rng(4).normal(0, 0.05, (3, 5, 5, 1)).astype(np.float32)
    mse = float(np.mean(error.astype(np.float64) ** 2))
    values = {name: float(_loss(tf, name, tf.constant(error), mse)) for name in ("l1", "psnr")}
    assert abs(values["l1"] - np.mean(np.abs(error))) < 1e-6, values
    per_image = np.mean(error.astype(np.float64) ** 2, axis=(1, 2, 3))
    minus_psnr = np.mean(10 * np.log10(PSNR_LOSS_FLOOR + per_image))
    assert abs(values["psnr"] - minus_psnr) < 1e-4, (values, minus_psnr)


@pytest.mark.parametrize("loss", ["l1", "psnr"])
def test_other_losses_train_and_log_the_mse(folder: Path, tmp_path: Path, loss: str) -> None:
    from srcnn_fast.errors import DataError

    base = {
        "data": str(folder),
        "scale": 2,
        "arch": TINY,
        "epochs": 1,
        "steps_per_epoch": 5,
        "patch": 17,
    }
    lines: list[str] = []
    weights = train(TrainConfig(**base, out=str(tmp_path / "w.npz"), loss=loss), echo=lines.append)
    assert weights.provenance["config"]["loss"] == loss
    assert any("epoch 1/1" in line and "train" in line for line in lines), lines
    with pytest.raises(DataError, match="unknown loss 'huber'"):
        train(TrainConfig(**base, out=str(tmp_path / "h.npz"), loss="huber"), echo=print)


def test_train_command_recipe_options(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "opts.npz"
    argv = ["train", "--data", str(folder), "-s", "2", "--out", str(out), "--epochs", "1"]
    argv += ["--steps", "2", "--patch", "17", "--f1", "3", "--n1", "4", "--n2", "4", "--f3", "3"]
    argv += ["--loss", "l1", "--input-offset", "0.5", "--centre-hidden", "--identity-init"]
    argv += ["--downscales", "1", "0.75", "--downscaler", "pillow"]
    assert main(argv) == 0
    config = SRCNNWeights.load(out).provenance["config"]
    names = ("loss", "input_offset", "centre_hidden", "identity_init", "downscales", "downscaler")
    assert [config[k] for k in names] == ["l1", 0.5, True, True, [1.0, 0.75], "pillow"]
    bad_options = (["--loss", "huber"], ["--downscales", "1.5"], ["--downscales", "x"])
    for bad in (*bad_options, ["--downscaler", "nearest"]):
        with pytest.raises(SystemExit) as refused:  # argparse's usage error
            main([*argv[:-11], *bad])
        assert refused.value.code == 2
