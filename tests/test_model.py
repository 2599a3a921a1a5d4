"""The raw-array weights format: round trip, and a clear refusal for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from srcnn_fast.errors import WeightsError
from srcnn_fast.model import ARRAY_NAMES, Architecture, SRCNNWeights


def test_architecture() -> None:
    arch = Architecture()
    assert arch.macs_per_pixel == 8032 and arch.radius == 6 and arch.name == "9-1-5 (64, 32)"
    assert Architecture(f2=5).radius == 8
    with pytest.raises(ValueError, match="odd"):
        Architecture(f1=8)


def test_round_trip(tmp_path: Path) -> None:
    weights = SRCNNWeights.random(Architecture(f2=5), scale=3, seed=4)
    weights.provenance["note"] = "ünïcode ok"
    path = tmp_path / "w.npz"
    weights.save(path)
    loaded = SRCNNWeights.load(path)
    assert loaded.arch == weights.arch and loaded.scale == 3
    assert loaded.provenance == weights.provenance and loaded.source == str(path)
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(weights, name))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def _write(path: Path, meta: dict | None, **arrays: np.ndarray) -> Path:
    if meta is not None:
        arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def good(tmp_path: Path) -> tuple[dict, dict]:
    weights = SRCNNWeights.random(scale=2)
    return weights.metadata(), weights.arrays()


def _refusals(tmp_path: Path, meta: dict, arrays: dict) -> dict[str, Path]:
    nan = dict(arrays, b2=np.full_like(arrays["b2"], np.nan))
    cases = {
        "no such weights file": tmp_path / "missing.npz",
        "not a srcnn-fast weights file": tmp_path / "text.npz",
        "no metadata": _write(tmp_path / "nometa.npz", None, **arrays),
        "format version 99": _write(tmp_path / "v99.npz", {**meta, "format_version": 99}, **arrays),
        "missing arrays w3": _write(
            tmp_path / "now3.npz", meta, **{k: v for k, v in arrays.items() if k != "w3"}
        ),
        "w1 has shape": _write(tmp_path / "shape.npz", meta, **dict(arrays, w1=arrays["w1"][:5])),
        "dtype float64": _write(
            tmp_path / "f64.npz", meta, **dict(arrays, b1=arrays["b1"].astype(np.float64))
        ),
        "NaN": _write(tmp_path / "nan.npz", meta, **nan),
        "interpolation": _write(
            tmp_path / "cv.npz", {**meta, "interpolation": "opencv-a-0.75"}, **arrays
        ),
        "bad architecture": _write(
            tmp_path / "arch.npz", {**meta, "architecture": {"f1": 4}}, **arrays
        ),
        "is a directory": tmp_path,
    }
    (tmp_path / "text.npz").write_text("hello")
    return cases


def test_refusals_name_the_file_and_the_problem(tmp_path: Path, good) -> None:
    meta, arrays = good
    for problem, path in _refusals(tmp_path, meta, arrays).items():
        with pytest.raises(WeightsError) as info:
            SRCNNWeights.load(path)
        message = str(info.value)
        assert str(path) in message and problem in message, message
        assert "\n" not in message


def test_loading_never_unpickles(tmp_path: Path, good) -> None:
    meta, arrays = good
    path = tmp_path / "pickled.npz"
    np.savez(path, metadata=np.array([meta], dtype=object), **arrays)
    with pytest.raises(WeightsError, match=r"pickled\.npz"):
        SRCNNWeights.load(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.npz"
    SRCNNWeights.random().save(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(WeightsError, match=r"cut\.npz"):
        SRCNNWeights.load(path)
