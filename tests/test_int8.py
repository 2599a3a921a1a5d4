"""int8 calibration and its storage (``srcnn_fast.calibrate``, ``model.Int8Calibration``), the
int8 emulation against float32, and ``srcnn-fast calibrate``. The kernel against the
emulation: tests/test_cpu_int8.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from srcnn_fast import calibrate as cal
from srcnn_fast.backends import int8
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.cli import main
from srcnn_fast.errors import WeightsError
from srcnn_fast.infer import shipped_jpeg_weights_path, shipped_weights_path
from srcnn_fast.model import Architecture, SRCNNWeights

SMALL = Architecture(f1=5, n1=8, n2=8, f3=3)


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory) -> Path:
    """Four small natural-looking PNGs (smooth gradients with edges and noise)."""
    from srcnn_fast.imagefile import write_image

    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:48, 0:60] / 60.0
    for i in range(4):
        base = 0.5 + 0.3 * np.sin(6 * x + i) * np.cos(4 * y - i) + 0.2 * (x > 0.3 + 0.1 * i)
        rgb = np.stack([base, base * 0.8 + 0.1, 1 - base], axis=-1)
        rgb = rgb + rng.normal(0, 0.03, rgb.shape)
        write_image(folder / f"t{i}.png", (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def calibrated(calibration_folder: Path) -> SRCNNWeights:
    weights = SRCNNWeights.random(SMALL, scale=3, seed=3)
    weights.int8 = cal.calibrate(weights, calibration_folder, input_bits=8)
    return weights


# --- GPTQ and the clip search ---------------------------------------------------------------


def test_gptq_with_uncorrelated_inputs_is_rounding_to_nearest() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 5))
    scale = np.abs(w).max(axis=0) / int8.WEIGHT_MAX
    hessian = np.diag(rng.uniform(1, 3, 12))
    expected = np.clip(np.rint(w / scale), -127, 127)
    np.testing.assert_array_equal(cal.gptq(w, hessian, scale), expected)


def test_gptq_beats_rounding_to_nearest_on_correlated_inputs() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 16)) @ rng.normal(size=(16, 16))  # correlated inputs
    w = rng.normal(size=(16, 6)) * 0.05
    scale = np.abs(w).max(axis=0) / int8.WEIGHT_MAX * 8  # coarse: rounding matters
    hessian = x.T @ x

    def error(q: np.ndarray) -> float:
        return float(np.sum((x @ (w - q * scale)) ** 2))

    rtn = np.clip(np.rint(w / scale), -127, 127)
    ours, theirs = error(cal.gptq(w, hessian, scale)), error(rtn)
    assert ours < 0.7 * theirs, f"GPTQ output error {ours:.4g} vs rounding to nearest {theirs:.4g}"


def test_percentile_clip_values_per_channel() -> None:
    rng = np.random.default_rng(2)
    z1 = np.stack([rng.uniform(0, 1, 100_000), np.zeros(100_000), rng.exponential(1, 100_000)])
    clip = cal.clip_values(z1.T, "99.99 th percentile")
    assert clip[0] == pytest.approx(1.0, abs=1e-3)  # uniform: the percentile is the top
    assert clip[1] == 1.0  # a dead channel: any positive clip
    # exponential: the 99.99th percentile is ln(10^4) = 9.2, below the sample's maximum
    assert clip[2] == pytest.approx(9.2, rel=0.1) and clip[2] < z1[2].max()


def test_squared_error_clip_values_per_channel() -> None:
    rng = np.random.default_rng(3)
    uniform = rng.uniform(0, 1, 100_000)
    # One outlier at 50 in a million: clipping it to t costs (50 - t)^2 / 1e6, steps of t / 255
    # cost t^2 / (12 * 255^2) for every sample; the sum is least near t = 22.
    tailed = np.concatenate([rng.uniform(0, 1, 1_000_000), [50.0]])
    z1 = np.zeros((len(tailed), 3))
    z1[: len(uniform), 0], z1[:, 2] = uniform, tailed
    clip = cal.clip_values(z1, "squared-error optimum")
    assert clip[0] == pytest.approx(uniform.max(), rel=0.05)
    assert clip[1] == 1.0
    assert clip[2] == pytest.approx(22.3, rel=0.06)


# --- the calibration --------------------------------------------------------------------------


def test_calibration_is_deterministic_and_consistent(calibration_folder, calibrated) -> None:
    c = calibrated.int8
    again = cal.calibrate(calibrated, calibration_folder, input_bits=8)
    for name in c.ARRAYS:
        np.testing.assert_array_equal(getattr(again, name), getattr(c, name), err_msg=name)
    assert c.weights_sha256 == calibrated.fingerprint()
    assert c.provenance["images"] == 4 and "GPTQ" in c.provenance["method"]
    # The integers stay near the float weights (GPTQ moves a weight by a few steps at most)
    # and the folded filters' structural zeros stay zero.
    fold = int8.interior_fold(calibrated)
    moved = np.abs(c.w1q - fold / c.s1) / 1.0
    assert moved.max() <= 8, f"conv1 integers moved {moved.max():.1f} steps from the weights"
    np.testing.assert_array_equal(c.w1q[fold == 0], 0)
    assert np.all(c.clip1 > 0) and np.abs(c.w2q).max() <= int8.WEIGHT_MAX


def test_input_goes_to_16_bits_only_where_8_lose_too_much(calibration_folder, monkeypatch):
    weights = SRCNNWeights.random(SMALL, scale=2, seed=4)
    losses = {8: 0.5, 16: 0.01}
    monkeypatch.setattr(cal, "psnr_loss", lambda w, ims, f2s, params: losses[params.input_bits])
    chosen = cal.calibrate(weights, calibration_folder, limit=1)
    assert chosen.input_bits == 16 and chosen.provenance["loss_db"] == 0.01
    losses[8] = cal.BUDGET_DB
    assert cal.calibrate(weights, calibration_folder, limit=1).input_bits == 8
    assert cal.calibrate(weights, calibration_folder, limit=1, input_bits=16).input_bits == 16


def test_psnr_loss_is_the_emulation_against_float32(calibrated, calibration_folder) -> None:
    pairs = cal.calibration_images(calibration_folder, 3, limit=2)
    params = int8.params_for(calibrated)
    net = ReferenceBackend(calibrated)
    images, f2s, expected = [], [], []
    for lr, hr in pairs:
        exact = net.upscale_luma(lr)
        images.append(cal.CalibrationImage(lr, hr, exact, cal._psnr(exact, hr, 3)))
        f2s.append(int8.conv2_output(calibrated, lr, params))
        quantised = int8.emulate(calibrated, lr, params, int8.conv3_in_bf16(3))
        expected.append(cal._psnr(exact, hr, 3) - cal._psnr(quantised, hr, 3))
    got = cal.psnr_loss(calibrated, images, f2s, params)
    assert got == pytest.approx(np.mean(expected))


def test_the_refitted_conv3_brings_the_output_closer_to_float32(calibrated, calibration_folder):
    lr, _ = cal.calibration_images(calibration_folder, 3, limit=1)[0]
    exact = ReferenceBackend(calibrated).upscale_luma(lr).astype(np.float64)
    params = int8.params_for(calibrated)
    refitted = int8.emulate(calibrated, lr, params)
    plain = int8.emulate(calibrated, lr, params._replace(w3=None, b3=None))
    ours, before = np.mean((refitted - exact) ** 2), np.mean((plain - exact) ** 2)
    assert ours < before, f"refitted conv3: MSE {ours:.3g} vs the float conv3's {before:.3g}"


def test_the_emulation_stays_close_to_float32(calibrated, calibration_folder) -> None:
    # The int8 network's output against float32's on a calibration image. Each of the 8 conv1
    # channels of these random weights adds rounding noise of ~1/255 of its range, and the
    # input's rounding ~1/255 of its; through a random network whose output spans only ~0.13
    # that is a few per cent of the span: bound the RMS error by 2% of it and the largest by
    # 8% (measured: 4.3% largest). The accuracy that matters, on Set5 and Set14 with the
    # shipped weights, is tests/test_quality.py's.
    lr, _ = cal.calibration_images(calibration_folder, 3, limit=1)[0]
    exact = ReferenceBackend(calibrated).upscale_luma(lr).astype(np.float64)
    got = int8.emulate(calibrated, lr, int8.params_for(calibrated))
    span, error = np.ptp(exact), np.abs(got - exact)
    rms = float(np.sqrt(np.mean(error**2)))
    assert rms <= 0.02 * span and error.max() <= 0.08 * span, (
        f"int8 off float32 by {error.max():.4g} at most, {rms:.4g} RMS (output span {span:.4g})"
    )


# --- the weights file ------------------------------------------------------------------------


def test_the_calibration_survives_a_save_and_load(calibrated, tmp_path) -> None:
    path = tmp_path / "w.npz"
    calibrated.save(path)
    loaded = SRCNNWeights.load(path)
    for name in loaded.int8.ARRAYS:
        np.testing.assert_array_equal(getattr(loaded.int8, name), getattr(calibrated.int8, name))
    assert loaded.int8.provenance == calibrated.int8.provenance
    params, expected = int8.params_for(loaded), int8.params_for(calibrated)
    for a, b in zip(params, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_version_1_files_still_load_without_calibration(tmp_path) -> None:
    weights = SRCNNWeights.random(scale=2)
    meta = {**weights.metadata(), "format_version": 1}
    path = tmp_path / "v1.npz"
    np.savez(path, metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8), **weights.arrays())
    loaded = SRCNNWeights.load(path)
    assert loaded.int8 is None
    np.testing.assert_array_equal(loaded.w1, weights.w1)


def test_uncalibrated_or_stale_weights_are_refused_for_int8_in_one_line(calibrated) -> None:
    bare = SRCNNWeights.random(SMALL, scale=3, seed=3)
    bare.source = "mine.npz"
    with pytest.raises(
        WeightsError,
        match=r"^mine\.npz: has no int8 calibration; make one with "
        r"`srcnn-fast calibrate mine\.npz`$",
    ):
        int8.params_for(bare)
    bare.int8 = calibrated.int8
    bare.b3 = bare.b3 + np.float32(0.01)  # edited after calibrating
    with pytest.raises(WeightsError, match=r"^mine\.npz: its int8 calibration was made for"):
        int8.params_for(bare)


def test_a_damaged_calibration_is_refused_by_name(calibrated, tmp_path) -> None:
    path = tmp_path / "w.npz"
    calibrated.save(path)
    with np.load(path) as npz:
        contents = dict(npz)
    cases = {
        "lacks arrays int8_w2q": {k: v for k, v in contents.items() if k != "int8_w2q"},
        "int8_w2q is not a int8 array": dict(contents, int8_w2q=contents["int8_w2q"] * 1.0),
        "int8_clip1 has shape": dict(contents, int8_clip1=contents["int8_clip1"][:3]),
        "must be positive": dict(contents, int8_clip1=-contents["int8_clip1"]),
    }
    for problem, arrays in cases.items():
        bad = tmp_path / "bad.npz"
        np.savez(bad, **arrays)
        with pytest.raises(WeightsError, match=problem) as info:
            SRCNNWeights.load(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_shipped_weights_carry_a_current_calibration() -> None:
    for scale in (2, 3, 4):
        for path in (shipped_weights_path(scale), shipped_jpeg_weights_path(scale)):
            if path is None:
                continue
            weights = SRCNNWeights.load(path)
            params = int8.params_for(weights)  # raises if missing or stale
            assert params.input_bits in (8, 16), path
            assert weights.int8.provenance["data"] == "T91", path


# --- srcnn-fast calibrate -----------------------------------------------------------------------


def test_calibrate_command_adds_a_calibration_in_place(calibration_folder, tmp_path, capsys):
    path = tmp_path / "mine.npz"
    SRCNNWeights.random(SMALL, scale=2, seed=9).save(path)
    code = main(["calibrate", str(path), "--data", str(calibration_folder), "--images", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"{path} -> {path}: int8 calibration on 2 images" in out
    loaded = SRCNNWeights.load(path)
    int8.params_for(loaded)
    other = tmp_path / "other.npz"
    assert (
        main(
            [
                "calibrate",
                str(path),
                "-o",
                str(other),
                "--data",
                str(calibration_folder),
                "--images",
                "1",
                "--input-bits",
                "16",
            ]
        )
        == 0
    )
    assert SRCNNWeights.load(other).int8.input_bits == 16
    assert SRCNNWeights.load(path).int8.provenance["images"] == 2  # the input is untouched


def test_calibrate_command_refusals_are_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "mine.npz"
    SRCNNWeights.random(SMALL, scale=2).save(path)
    before = path.read_bytes()
    cases = {
        "no such folder of calibration images": [
            "calibrate",
            str(path),
            "--data",
            str(tmp_path / "nowhere"),
        ],
        "no such weights file": [
            "calibrate",
            str(tmp_path / "missing.npz"),
            "--data",
            str(tmp_path),
        ],
        "no PNG images to calibrate on": ["calibrate", str(path), "--data", str(tmp_path)],
    }
    for problem, argv in cases.items():
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1, err
    assert path.read_bytes() == before
    nine_five_five = tmp_path / "955.npz"
    SRCNNWeights.random(Architecture(f2=5), scale=2).save(nine_five_five)
    assert main(["calibrate", str(nine_five_five), "--data", str(tmp_path)]) != 0
    assert "needs a 1x1 conv2" in capsys.readouterr().err
