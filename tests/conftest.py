"""Shared fixtures: the benchmark data beside the checkout, small images, tolerances."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (T91, Set5, Set14); tests that need it skip where it is absent."""
    if not (DATA / "Set5").is_dir():
        pytest.skip(f"benchmark data not found at {DATA} (it sits beside the checkout in CI)")
    return DATA


@pytest.fixture()
def tiny_weights(tmp_path: Path) -> Path:
    """Small random x2 weights: fast, for plumbing tests (the shipped ones are tested elsewhere)."""
    from srcnn_fast.model import Architecture, SRCNNWeights

    path = tmp_path / "tiny_x2.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(path)
    return path


@pytest.fixture(scope="session")
def sample_image() -> np.ndarray:
    from srcnn_fast.imagefile import read_image

    return read_image(SAMPLES / "butterfly.png")


@pytest.fixture()
def jpeg_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Random x2 "JPEG-aware" weights of the shipped architecture standing in for the shipped
    file, so the choice is tested whether or not a scale ships them."""
    from srcnn_fast import infer
    from srcnn_fast.model import SRCNNWeights

    clean = SRCNNWeights.load(infer.shipped_weights_path(2))
    path = tmp_path / "srcnn_x2_jpeg.npz"
    SRCNNWeights.random(clean.arch, scale=2, seed=5).save(path)
    monkeypatch.setattr(infer, "shipped_jpeg_weights_path", lambda s: path if s == 2 else None)
    return path


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Max-abs comparison that prints the max difference and where it is on failure."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    worst = float(diff.max()) if diff.size else 0.0
    where = np.unravel_index(int(diff.argmax()), diff.shape) if diff.size else ()
    assert worst <= atol, (
        f"{what}: max |diff| = {worst:.3g} > {atol:g} at {where} "
        f"(actual {actual[where]:.7g}, expected {expected[where]:.7g})"
    )
