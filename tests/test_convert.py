"""Keras weight files -> SRCNNWeights (srcnn_fast.convert), checked against real Keras output.

Real Keras models are saved in all four layouts and converted back; the arrays must come out
bit-identical to ``layer.get_weights()`` in the model's layer order. Refusals use small
hand-written HDF5/zip files, because Keras cannot be made to write most broken files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from srcnn_fast.convert import (  # noqa: E402  (after the importorskip)
    KERAS3_WEIGHTS_H5,
    KERAS_ARCHIVE,
    KERAS_FORMATS,
    LEGACY_H5_MODEL,
    LEGACY_H5_WEIGHTS,
    convert_keras_file,
    read_keras_weights,
)
from srcnn_fast.errors import WeightsError  # noqa: E402
from srcnn_fast.model import Architecture, SRCNNWeights  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL_NAMES = ("seq_915", "seq_955", "functional_named", "nested")
SUFFIXES = {
    LEGACY_H5_WEIGHTS: "_weights.h5",
    LEGACY_H5_MODEL: "_model.h5",
    KERAS3_WEIGHTS_H5: ".weights.h5",
    KERAS_ARCHIVE: ".keras",
}


# --------------------------------------------------------------------------------------------
# Real Keras models, built once per module


@pytest.fixture(scope="module")
def keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, these tests expect tensorflow")
    return keras


def _randomize(convs: list[Any], seed: int) -> None:
    """Non-zero biases too, so a bias/kernel or layer mix-up cannot pass by accident."""
    rng = np.random.default_rng(seed)
    for layer in convs:
        layer.set_weights(
            [rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()]
        )


@pytest.fixture(scope="module")
def models(keras: Any) -> dict[str, tuple[Any, list[Any], Architecture]]:
    """name -> (model, its conv layers in computation order, expected architecture)."""
    layers = keras.layers
    built: dict[str, tuple[Any, list[Any], Architecture]] = {}

    def sequential(name: str, f2: int) -> None:
        convs = [
            layers.Conv2D(64, 9, activation="relu"),
            layers.Conv2D(32, f2, activation="relu"),
            layers.Conv2D(1, 5),
        ]
        model = keras.Sequential([keras.Input((None, None, 1)), *convs])
        built[name] = (model, convs, Architecture(9, 64, f2, 32, 5))

    sequential("seq_915", 1)
    sequential("seq_955", 5)

    # Custom names whose alphabetical order (conv_1, conv_10, conv_2) is not the model's.
    inputs = keras.Input((None, None, 1), name="lr")
    x = layers.ZeroPadding2D(6, name="pad")(inputs)
    first = layers.Conv2D(16, 9, activation="relu", name="conv_10")
    second = layers.Conv2D(8, 1, activation="relu", name="conv_2")
    third = layers.Conv2D(1, 5, name="conv_1")
    x = third(second(first(x)))
    outputs = layers.Activation("linear", name="identity")(x)
    model = keras.Model(inputs, outputs, name="srcnn")
    built["functional_named"] = (model, [first, second, third], Architecture(9, 16, 1, 8, 5))

    # A Sequential body inside a Functional model: Keras 3 files nest it (layers/sequential/...)
    # and list the tail conv (group "conv2d") before it, so only channel chaining orders it.
    body_a = layers.Conv2D(8, 3, activation="relu", name="body_a")
    body_b = layers.Conv2D(4, 3, activation="relu", name="body_b")
    body = keras.Sequential([body_a, body_b], name="body")
    tail = layers.Conv2D(1, 3, name="tail")
    inputs = keras.Input((None, None, 1), name="lr")
    model = keras.Model(inputs, tail(body(inputs)), name="nested")
    built["nested"] = (model, [body_a, body_b, tail], Architecture(3, 8, 3, 4, 3))

    for seed, (_, convs, _) in enumerate(built.values()):
        _randomize(convs, seed)
    return built


def _save(keras: Any, model: Any, path: Path, fmt: str) -> None:
    """Write ``model`` the way a user of each Keras API would."""
    if fmt == LEGACY_H5_WEIGHTS:  # Keras 2's model.save_weights('x.h5')
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

        with h5py.File(path, "w") as h5:
            save_weights_to_hdf5_group(h5, model)
    elif fmt == LEGACY_H5_MODEL:
        keras.saving.save_model(model, path)
    elif fmt == KERAS3_WEIGHTS_H5:
        model.save_weights(path)
    else:
        model.save(path)


@pytest.fixture(scope="module")
def saved(
    keras: Any, models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], Path]:
    """(model name, format) -> path of the saved file, written once per module."""
    root = tmp_path_factory.mktemp("keras_files")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, fmt: str) -> Path:
        if (name, fmt) not in cache:
            path = root / f"{name}{SUFFIXES[fmt]}"
            _save(keras, models[name][0], path, fmt)
            cache[name, fmt] = path
        return cache[name, fmt]

    return get


def _assert_weights_equal(weights: SRCNNWeights, convs: list[Any]) -> None:
    for index, layer in enumerate(convs, start=1):
        kernel, bias = layer.get_weights()
        for key, expected in ((f"w{index}", kernel), (f"b{index}", bias)):
            actual = getattr(weights, key)
            assert actual.dtype == np.float32
            np.testing.assert_array_equal(actual, expected, err_msg=f"{key} ({layer.name})")


# --------------------------------------------------------------------------------------------
# Conversions of real Keras files


@pytest.mark.parametrize("fmt", KERAS_FORMATS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_converts_real_keras_files(
    keras: Any, models: dict[str, Any], saved: Callable[[str, str], Path], name: str, fmt: str
) -> None:
    _, convs, arch = models[name]
    path = saved(name, fmt)
    weights = read_keras_weights(path, scale=3, provenance={"trained_on": "T91"})
    assert weights.arch == arch
    assert weights.scale == 3
    assert weights.source == str(path)
    _assert_weights_equal(weights, convs)
    expected = {"converted_from": path.name, "keras_format": fmt, "trained_on": "T91"}
    if fmt != KERAS3_WEIGHTS_H5:  # the only layout that does not record the version
        expected["keras_version"] = keras.__version__
    assert weights.provenance == expected


@pytest.mark.parametrize("fmt", KERAS_FORMATS)
def test_round_trip_through_raw_file(
    models: dict[str, Any], saved: Callable[[str, str], Path], tmp_path: Path, fmt: str
) -> None:
    _, convs, arch = models["seq_915"]
    dst = tmp_path / "srcnn_x2.npz"
    converted = convert_keras_file(saved("seq_915", fmt), dst, scale=2)
    loaded = SRCNNWeights.load(dst)
    assert loaded.arch == arch == converted.arch
    assert loaded.scale == 2
    assert loaded.provenance == converted.provenance
    assert loaded.provenance["keras_format"] == fmt
    _assert_weights_equal(loaded, convs)


def test_convert_merges_caller_provenance(saved: Callable[[str, str], Path], tmp_path: Path):
    dst = tmp_path / "out.npz"
    convert_keras_file(saved("seq_915", KERAS_ARCHIVE), dst, 4, provenance={"epochs": 200})
    meta = SRCNNWeights.load(dst).provenance
    assert meta["epochs"] == 200 and meta["keras_format"] == KERAS_ARCHIVE


@pytest.mark.parametrize("fmt", KERAS_FORMATS)
def test_format_detected_by_content_not_name(
    models: dict[str, Any], saved: Callable[[str, str], Path], tmp_path: Path, fmt: str
) -> None:
    misleading = tmp_path / ("model.keras" if fmt != KERAS_ARCHIVE else "model.h5")
    shutil.copyfile(saved("functional_named", fmt), misleading)
    weights = read_keras_weights(misleading, 2)
    assert weights.provenance["keras_format"] == fmt
    _assert_weights_equal(weights, models["functional_named"][1])


def test_trained_model_files_ignore_optimizer_state(keras: Any, tmp_path: Path) -> None:
    """A compiled, fitted model's files also hold Adam's 4-D moment arrays: not layers."""
    convs = [
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Conv2D(2, 1, activation="relu"),
        keras.layers.Conv2D(1, 3),
    ]
    model = keras.Sequential([keras.Input((None, None, 1)), *convs])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((2, 8, 8, 1), np.float32), np.zeros((2, 4, 4, 1), np.float32), verbose=0)
    for fmt in (LEGACY_H5_MODEL, KERAS3_WEIGHTS_H5, KERAS_ARCHIVE):
        path = tmp_path / f"trained{SUFFIXES[fmt]}"
        _save(keras, model, path, fmt)
        weights = read_keras_weights(path, 2)
        assert weights.arch == Architecture(3, 4, 1, 2, 3)
        _assert_weights_equal(weights, convs)


@pytest.mark.parametrize("fmt", [LEGACY_H5_MODEL, KERAS_ARCHIVE])
@pytest.mark.parametrize("variant", ["strides", "dilation", "transpose"])
def test_refuses_conv_variants_named_in_config(
    keras: Any, tmp_path: Path, fmt: str, variant: str
) -> None:
    """Weights shaped like Conv2D's that compute something else; the config tells."""
    layers = keras.layers
    middle = {
        "strides": layers.Conv2D(2, 1, strides=2),
        "dilation": layers.Conv2D(2, 3, dilation_rate=2),
        "transpose": layers.Conv2DTranspose(2, 1),
    }[variant]
    model = keras.Sequential(
        [keras.Input((None, None, 1)), layers.Conv2D(4, 3), middle, layers.Conv2D(1, 3)]
    )
    path = tmp_path / f"{variant}{SUFFIXES[fmt]}"
    _save(keras, model, path, fmt)
    fragment = {"strides": "strides", "dilation": "dilation_rate", "transpose": "Transpose"}
    _refused(path, fragment[variant])


# --------------------------------------------------------------------------------------------
# Hand-written files (Keras 2 style, unordered Keras 3 groups, broken files)


def _conv(kh: int, cin: int, cout: int, seed: int, kw: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((kh, kw or kh, cin, cout)).astype(np.float32)
    return [kernel, rng.standard_normal(cout).astype(np.float32)]


def _srcnn(n1: int = 4, n2: int = 2) -> list[list[np.ndarray]]:
    return [_conv(3, 1, n1, 1), _conv(1, n1, n2, 2), _conv(3, n2, 1, 3)]


def _write_legacy(
    path: Path, layers: list[tuple[str, list[np.ndarray]]], *, chunked: bool = False
) -> None:
    """Keras 2 ``save_weights('x.h5')``: bytes attributes, ``<layer>/kernel:0`` datasets."""
    with h5py.File(path, "w") as h5:
        names = np.array([name.encode() for name, _ in layers])
        if chunked:  # how Keras 2 splits attributes over the 64 KiB header limit
            h5.attrs["layer_names0"] = names[:1]
            h5.attrs["layer_names1"] = names[1:]
        else:
            h5.attrs["layer_names"] = names
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["keras_version"] = b"2.15.0"
        for name, arrays in layers:
            group = h5.create_group(name)
            weight_names = [
                f"{name}/{('kernel', 'bias')[i] if i < 2 else f'extra{i}'}:0"
                for i in range(len(arrays))
            ]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for weight_name, array in zip(weight_names, arrays, strict=True):
                group[weight_name] = array


def _write_keras3(path: Path, layers: list[tuple[str, list[np.ndarray]]]) -> None:
    """Keras 3 ``.weights.h5`` without the ``name`` attributes older Keras 3 omitted."""
    with h5py.File(path, "w") as h5:
        h5.create_group("vars")
        for name, arrays in layers:
            group = h5.create_group(f"layers/{name}/vars")
            for index, array in enumerate(arrays):
                group[str(index)] = array


def _refused(path: Path, *fragments: str, scale: int = 2) -> str:
    with pytest.raises(WeightsError) as info:
        read_keras_weights(path, scale)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert path.name in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("chunked", [False, True])
def test_keras2_legacy_file_uses_declared_order(tmp_path: Path, chunked: bool) -> None:
    # Declared order conv2d_9, conv2d_10, conv2d_11; alphabetical order would differ.
    names = ["input_1", "conv2d_9", "conv2d_10", "conv2d_11"]
    layers = list(zip(names, [[], *_srcnn()], strict=True))
    path = tmp_path / "trained_SRCNN_weights.h5"
    _write_legacy(path, layers, chunked=chunked)
    weights = read_keras_weights(path, 2)
    assert weights.arch == Architecture(3, 4, 1, 2, 3)
    for index, (_, (kernel, bias)) in enumerate(layers[1:], start=1):
        np.testing.assert_array_equal(getattr(weights, f"w{index}"), kernel)
        np.testing.assert_array_equal(getattr(weights, f"b{index}"), bias)
    assert weights.provenance == {
        "converted_from": path.name,
        "keras_format": LEGACY_H5_WEIGHTS,
        "keras_version": "2.15.0",
    }


def test_keras3_groups_chained_by_channels_not_names(tmp_path: Path) -> None:
    first, second, third = _srcnn()
    path = tmp_path / "x.weights.h5"
    _write_keras3(path, [("conv2d_10", third), ("conv2d_2", first), ("conv2d_9", second)])
    weights = read_keras_weights(path, 2)
    for index, (kernel, bias) in enumerate((first, second, third), start=1):
        np.testing.assert_array_equal(getattr(weights, f"w{index}"), kernel)
        np.testing.assert_array_equal(getattr(weights, f"b{index}"), bias)


def test_other_float_dtypes_are_cast_to_float32(tmp_path: Path) -> None:
    dtypes = [np.float64, np.float16, np.float64]
    layers = [[a.astype(t) for a in conv] for conv, t in zip(_srcnn(), dtypes, strict=True)]
    path = tmp_path / "mixed.h5"
    _write_legacy(path, [(f"c{i}", conv) for i, conv in enumerate(layers)])
    weights = read_keras_weights(path, 2)
    for index, (kernel, bias) in enumerate(layers, start=1):
        np.testing.assert_array_equal(getattr(weights, f"w{index}"), kernel.astype(np.float32))
        np.testing.assert_array_equal(getattr(weights, f"b{index}"), bias.astype(np.float32))


def test_convert_module_never_imports_tensorflow(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    _write_legacy(path, [(f"c{i}", conv) for i, conv in enumerate(_srcnn())])
    code = (
        "import sys\n"
        "from srcnn_fast.convert import read_keras_weights\n"
        f"read_keras_weights({str(path)!r}, 2)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------
# Refusals: every one a one-line WeightsError naming the file


def test_refuses_missing_file_and_directory(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.h5", "no such")
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    _refused(folder, "directory")


def test_refuses_non_keras_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not a model\n")
    _refused(text, "neither HDF5 nor")
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as h5:
        h5["data"] = np.zeros(3)
    _refused(empty, "no Keras weights")


def test_refuses_truncated_hdf5(tmp_path: Path) -> None:
    whole = tmp_path / "whole.h5"
    _write_legacy(whole, [(f"c{i}", conv) for i, conv in enumerate(_srcnn(64, 32))])
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _refused(cut)


def test_refuses_zip_archives_that_are_not_keras_models(tmp_path: Path) -> None:
    npz = tmp_path / "srcnn_x2.npz"
    SRCNNWeights.random().save(npz)
    _refused(npz, "already a srcnn-fast weights file")
    no_weights = tmp_path / "config_only.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential"}))
    _refused(no_weights, "without model.weights.h5")
    garbage = tmp_path / "garbage.keras"
    with zipfile.ZipFile(garbage, "w") as archive:
        archive.writestr("model.weights.h5", b"not hdf5 at all")
    _refused(garbage, "model.weights.h5", "not an HDF5 file")


@pytest.mark.parametrize(
    ("layers", "fragments"),
    [
        (_srcnn()[:2], ("found 2 conv layers",)),
        ([*_srcnn(), _conv(1, 1, 1, 9)], ("found 4 conv layers",)),
        ([_conv(3, 1, 4, 1), _conv(1, 4, 2, 2)[:1], _conv(3, 2, 1, 3)], ("no bias",)),
        ([_conv(3, 1, 4, 1, kw=5), *_srcnn()[1:]], ("3x5", "not square")),
        ([_conv(4, 1, 4, 1), *_srcnn()[1:]], ("4x4", "even")),
        ([_conv(3, 1, 4, 1), _conv(1, 3, 2, 2), _conv(3, 2, 1, 3)], ("channel mismatch",)),
        ([*_srcnn()[:2], _conv(3, 2, 2, 3)], ("channel mismatch", "outputs 2 channels")),
        ([_conv(3, 1, 4, 1), [_conv(1, 4, 2, 2)[0], np.zeros(3, np.float32)], _srcnn()[2]],
         ("bias has shape (3,)",)),
        ([*_srcnn()[:2], [np.zeros((3, 3, 2, 1), np.int32), np.zeros(1, np.int32)]],
         ("dtype int32", "not floating point")),
        ([*_srcnn()[:2], [np.ones((2, 1), np.float32), np.ones(1, np.float32)]],
         ("not a Conv2D kernel",)),
        ([*_srcnn()[:2], [np.full((3, 3, 2, 1), np.nan, np.float32), np.zeros(1, np.float32)]],
         ("NaN",)),
    ],
    ids=[
        "two-convs", "four-convs", "no-bias", "non-square", "even-kernel", "channel-mismatch",
        "last-not-1-channel", "bias-length", "integer-dtype", "dense-layer", "nan",
    ],
)  # fmt: skip
def test_refuses_bad_layers(
    tmp_path: Path, layers: list[list[np.ndarray]], fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "bad_layers.h5"
    _write_legacy(path, [(f"conv2d_{i}", arrays) for i, arrays in enumerate(layers)])
    _refused(path, *fragments)


def test_refuses_unchainable_or_ambiguous_keras3_groups(tmp_path: Path) -> None:
    unchainable = tmp_path / "unchainable.weights.h5"
    _write_keras3(unchainable, [("a", _conv(3, 1, 4, 1)), ("b", _conv(1, 3, 2, 2)),
                                ("c", _conv(3, 2, 1, 3))])  # fmt: skip
    _refused(unchainable, "channel mismatch", "cannot chain")
    ambiguous = tmp_path / "ambiguous.weights.h5"
    _write_keras3(ambiguous, [(name, _conv(3, 1, 1, i)) for i, name in enumerate("abc")])
    _refused(ambiguous, "ambiguous layer order")


def test_refuses_layer_names_without_groups_or_datasets(tmp_path: Path) -> None:
    path = tmp_path / "dangling.h5"
    _write_legacy(path, [(f"c{i}", conv) for i, conv in enumerate(_srcnn())])
    with h5py.File(path, "a") as h5:
        h5.attrs["layer_names"] = np.array([b"c0", b"c1", b"c2", b"ghost"])
    _refused(path, "'ghost'", "no group")
    with h5py.File(path, "a") as h5:
        h5.attrs["layer_names"] = np.array([b"c0", b"c1", b"c2"])
        del h5["c2/c2/bias:0"]
    _refused(path, "'c2/bias:0'", "missing")


def test_refuses_bad_scale_and_overwriting_the_input(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    _write_legacy(path, [(f"c{i}", conv) for i, conv in enumerate(_srcnn())])
    _refused(path, "scale", scale=0)
    before = path.read_bytes()
    with pytest.raises(WeightsError, match="overwrite"):
        convert_keras_file(path, tmp_path / "." / "w.h5", scale=2)
    assert path.read_bytes() == before
