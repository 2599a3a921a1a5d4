"""Convert the Keras weight files people actually have into :class:`SRCNNWeights`.

Trained SRCNN models exist as Keras files, not as our raw ``.npz``. This module reads them with
h5py alone: importing TensorFlow/Keras costs seconds and gigabytes, is often not installed where
inference runs, and would execute code from the file's config. Four layouts are recognised by
their content (the file name is only used in messages):

``legacy_h5_weights``
    Keras 2 ``model.save_weights('x.h5')`` (and Keras 3's legacy HDF5 writer): root attributes
    ``layer_names``, ``backend``, ``keras_version``; one group per layer whose ``weight_names``
    attribute lists dataset paths relative to that group (``conv2d/kernel:0`` in Keras 2,
    ``sequential/conv2d/kernel`` in Keras 3).
``legacy_h5_model``
    ``model.save('x.h5')``: the same layout under a ``model_weights`` group, plus a JSON
    ``model_config`` root attribute (and maybe ``optimizer_weights``, ignored).
``keras3_weights_h5``
    Keras 3 ``model.save_weights('x.weights.h5')``: ``layers/<snake_case class name>[_<n>]/vars``
    groups holding datasets ``0, 1, ...`` (kernel, bias); nested models nest as
    ``layers/<model>/layers/...``; recent Keras 3 versions store the layer's own name in the
    ``vars`` group's ``name`` attribute. Group names follow the class, not the layer, and sort
    alphabetically (``conv2d_10`` < ``conv2d_2``), so no order is declared: the layers are chained
    by channels instead. Keras 2.13-2.15 used ``_layer_checkpoint_dependencies`` for ``layers``.
``keras_archive``
    A ``.keras`` zip: ``config.json`` (layer order), ``metadata.json`` (Keras version) and
    ``model.weights.h5`` in the Keras 3 layout (which may also hold ``optimizer/vars``, ignored).

Whatever the layout, the result must be exactly three conv layers with biases, square odd
kernels and chained channels 1 -> n1 -> n2 -> 1; anything else is refused with a one-line
:class:`WeightsError` ``"<path>: <problem>"`` rather than converted into a silently wrong model.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import WeightsError
from .model import Architecture, SRCNNWeights

if TYPE_CHECKING:  # pragma: no cover - typing only; h5py is imported lazily
    import h5py

__all__ = [
    "KERAS3_WEIGHTS_H5",
    "KERAS_ARCHIVE",
    "KERAS_FORMATS",
    "LEGACY_H5_MODEL",
    "LEGACY_H5_WEIGHTS",
    "convert_keras_file",
    "read_keras_weights",
]

LEGACY_H5_WEIGHTS = "legacy_h5_weights"
LEGACY_H5_MODEL = "legacy_h5_model"
KERAS3_WEIGHTS_H5 = "keras3_weights_h5"
KERAS_ARCHIVE = "keras_archive"
#: The ``keras_format`` values recorded in provenance.
KERAS_FORMATS = (LEGACY_H5_WEIGHTS, LEGACY_H5_MODEL, KERAS3_WEIGHTS_H5, KERAS_ARCHIVE)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Keras 3 names the layer list ``layers``; the Keras 2.13-2.15 ``.keras`` writer used this.
_LAYER_CONTAINERS = ("layers", "_layer_checkpoint_dependencies")
#: Conv-like classes whose 4-D kernel is *not* a plain HWIO convolution kernel.
_NOT_PLAIN_CONV = ("Transpose", "Depthwise", "Separable")


@dataclass
class _Conv:
    """One Keras conv layer as found in the file (arrays still as stored)."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray
    position: int  # declared position, or discovery order when the file declares none


class _Refusal(Exception):
    """Internal: a problem message; :func:`read_keras_weights` prefixes the path."""


def read_keras_weights(
    path: str | os.PathLike[str], scale: int, provenance: dict[str, Any] | None = None
) -> SRCNNWeights:
    """Read a Keras SRCNN weight file (any of :data:`KERAS_FORMATS`) into :class:`SRCNNWeights`.

    ``scale`` is not stored in Keras files, so the caller says what the model was trained for.
    ``provenance`` entries are merged over what the file tells (``converted_from``,
    ``keras_format``, ``keras_version`` where recorded), so a caller can add training details.
    Every refusal is a :class:`WeightsError` reading ``"<path>: <problem>"``.
    """
    where = os.fspath(path)
    try:
        convs, ordered, info = _read_any(Path(where))
        weights = _build(convs, ordered, scale, where)
    except _Refusal as exc:
        raise WeightsError(f"{where}: {_one_line(str(exc))}") from None
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError, zlib.error) as exc:
        # h5py and zipfile report corrupt or truncated files with a variety of these.
        detail = _one_line(str(exc)) or type(exc).__name__
        raise WeightsError(f"{where}: unreadable or corrupt Keras file ({detail})") from None
    weights.provenance = {"converted_from": Path(where).name, **info, **(provenance or {})}
    return weights


def convert_keras_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    scale: int,
    *,
    provenance: dict[str, Any] | None = None,
) -> SRCNNWeights:
    """Convert ``src`` (a Keras file) to the raw-array file ``dst`` and return the weights.

    Refuses ``dst`` naming the same file as ``src``: that would replace the user's only copy of
    the Keras model with a file Keras cannot read. ``dst`` is written atomically.
    """
    src_path, dst_path = Path(src), Path(dst)
    try:
        same = src_path.resolve() == dst_path.resolve()
    except OSError:
        same = False
    if same:
        raise WeightsError(f"{os.fspath(dst)}: output would overwrite the Keras input file")
    weights = read_keras_weights(src_path, scale, provenance)
    weights.save(dst_path)
    return weights


# --------------------------------------------------------------------------------------------
# File-level dispatch


def _read_any(path: Path) -> tuple[list[_Conv], bool, dict[str, Any]]:
    """Return (conv layers, whether their order is declared, provenance info) for any format."""
    if path.is_dir():
        raise _Refusal("is a directory, not a Keras weights file")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise _Refusal("no such Keras weights file") from None
    except PermissionError:
        raise _Refusal("permission denied") from None
    h5py = _import_h5py()
    if head == _HDF5_SIGNATURE:
        with h5py.File(path, "r") as h5:
            return _read_hdf5(h5, config=None)
    if zipfile.is_zipfile(path):
        return _read_archive(path, h5py)
    if h5py.is_hdf5(path):  # HDF5 behind a user block
        with h5py.File(path, "r") as h5:
            return _read_hdf5(h5, config=None)
    raise _Refusal("not a Keras weights file (neither HDF5 nor a .keras zip archive)")


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise _Refusal("reading Keras files needs h5py (pip install h5py)") from None
    return h5py


def _read_archive(path: Path, h5py: Any) -> tuple[list[_Conv], bool, dict[str, Any]]:
    """A ``.keras`` zip: weights from ``model.weights.h5``, layer order from ``config.json``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "model.weights.h5" not in names:
                if "metadata.npy" in names and "w1.npy" in names:
                    raise _Refusal(
                        "already a srcnn-fast weights file (.npz); load it, do not convert it"
                    )
                raise _Refusal("zip archive without model.weights.h5; not a .keras model")
            weights_bytes = archive.read("model.weights.h5")
            config = _json_member(archive, "config.json") if "config.json" in names else None
            meta = _json_member(archive, "metadata.json") if "metadata.json" in names else None
    except zipfile.BadZipFile as exc:
        raise _Refusal(f"corrupt zip archive ({exc})") from None
    if not weights_bytes.startswith(_HDF5_SIGNATURE):
        raise _Refusal("model.weights.h5 inside the .keras archive is not an HDF5 file")
    with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
        if not any(name in h5 for name in _LAYER_CONTAINERS):
            raise _Refusal("model.weights.h5 inside the .keras archive holds no layers")
        convs, ordered, _ = _read_hdf5(h5, config=config)
    info: dict[str, Any] = {"keras_format": KERAS_ARCHIVE}
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    if isinstance(version, str):
        info["keras_version"] = version
    return convs, ordered, info


def _json_member(archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return json.loads(archive.read(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Refusal(f"{name} in the .keras archive is not valid JSON ({exc})") from None


def _read_hdf5(h5: h5py.File, config: Any) -> tuple[list[_Conv], bool, dict[str, Any]]:
    """Tell the three HDF5 layouts apart by their structure and read the conv layers."""
    import h5py

    model_weights = h5.get("model_weights")
    if isinstance(model_weights, h5py.Group):
        model_config = _parse_json_attr(h5.attrs.get("model_config"))
        convs = _read_legacy(model_weights, _layer_configs(model_config))
        info = {"keras_format": LEGACY_H5_MODEL}
        info.update(_version_info(h5, model_weights))
        return convs, True, info
    if _attr(h5, "layer_names") is not None:
        info = {"keras_format": LEGACY_H5_WEIGHTS}
        info.update(_version_info(h5))
        return _read_legacy(h5, {}), True, info
    for container_name in _LAYER_CONTAINERS:
        container = h5.get(container_name)
        if isinstance(container, h5py.Group):
            convs, ordered = _read_keras3(container, config)
            return convs, ordered, {"keras_format": KERAS3_WEIGHTS_H5}
    raise _Refusal(
        "HDF5 file holds no Keras weights (no layer_names, model_weights or layers group)"
    )


def _version_info(*holders: h5py.Group) -> dict[str, Any]:
    for holder in holders:
        version = _attr(holder, "keras_version")
        if version is not None:
            return {"keras_version": _text(version)}
    return {}


# --------------------------------------------------------------------------------------------
# Legacy (Keras 2 style) HDF5: layer_names + weight_names


def _read_legacy(group: h5py.Group, layer_configs: dict[str, dict[str, Any]]) -> list[_Conv]:
    """Conv layers of a legacy weights group, in its declared ``layer_names`` order."""
    layer_names = [_text(name) for name in _attr(group, "layer_names")]
    # Keras 3 keeps variables owned by the model itself here, outside layer_names.
    if "top_level_model_weights" in group and "top_level_model_weights" not in layer_names:
        layer_names.append("top_level_model_weights")
    holders: list[tuple[str, list[tuple[str, Any]]]] = []
    for layer_name in layer_names:
        if layer_name not in group:
            raise _Refusal(f"layer_names lists {layer_name!r} but the file has no group for it")
        layer_group = group[layer_name]
        weight_names = [_text(name) for name in (_attr(layer_group, "weight_names") or [])]
        datasets: list[tuple[str, Any]] = []
        for weight_name in weight_names:
            if weight_name not in layer_group:
                raise _Refusal(f"layer {layer_name!r}: weight {weight_name!r} is missing")
            datasets.append((weight_name, layer_group[weight_name]))
        if datasets:
            _check_layer_config(layer_name, layer_configs.get(layer_name))
            holders.append((layer_name, datasets))
    return _pair_all(holders)


def _attr(holder: h5py.Group, name: str) -> Any:
    """An attribute as Keras writes it, reassembling ``name0, name1, ...`` chunked lists."""
    if name in holder.attrs:
        value = holder.attrs[name]
        return list(np.atleast_1d(value)) if name.endswith("names") else value
    if f"{name}0" not in holder.attrs:
        return None
    values: list[Any] = []
    chunk = 0
    while f"{name}{chunk}" in holder.attrs:
        values.extend(np.atleast_1d(holder.attrs[f"{name}{chunk}"]))
        chunk += 1
    return values


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


# --------------------------------------------------------------------------------------------
# Keras 3 HDF5 (also inside .keras): layers/<name>/vars/<i>


def _read_keras3(container: h5py.Group, config: Any) -> tuple[list[_Conv], bool]:
    """Conv layers of a Keras 3 layer tree; ordered by ``config`` when it names them all."""
    import h5py

    holders: list[tuple[str, str | None, list[tuple[str, Any]]]] = []

    def visit(name: str, obj: Any) -> None:
        if not (isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars"):
            return
        datasets = [(key, obj[key]) for key in _numeric_order(obj.keys())]
        datasets = [(key, ds) for key, ds in datasets if isinstance(ds, h5py.Dataset)]
        if datasets:
            real_name = obj.attrs.get("name")
            layer_path = f"{container.name.lstrip('/')}/{name.rsplit('/', 1)[0]}"
            holders.append(
                (layer_path, _text(real_name) if real_name is not None else None, datasets)
            )

    container.visititems(visit)
    labelled = [
        (f"{real} ({layer_path})" if real else layer_path, datasets)
        for layer_path, real, datasets in holders
    ]
    convs = _pair_all(labelled)
    real_names = [real for _, real, _ in holders]
    if not isinstance(config, dict) or any(real is None for real in real_names):
        return convs, False
    layer_configs = _layer_configs(config)
    order = list(layer_configs)
    # Use the config's order only when each weight-holding layer is one conv with a unique name
    # that the config lists; otherwise fall back to chaining by channels.
    if len(convs) != len(holders) or len(set(real_names)) != len(real_names):
        return convs, False
    if not all(real in layer_configs for real in real_names):
        return convs, False
    for conv, real in zip(convs, real_names, strict=True):
        _check_layer_config(real, layer_configs[real])
        conv.position = order.index(real)
    return convs, True


def _numeric_order(keys: Iterable[str]) -> list[str]:
    """``vars`` entries are ``0, 1, ..., 10``: sort as numbers, never as strings."""
    keys = list(keys)
    if all(key.isdigit() for key in keys):
        return sorted(keys, key=int)
    return sorted(keys)


# --------------------------------------------------------------------------------------------
# Model config (legacy model_config attribute, .keras config.json)


def _parse_json_attr(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(_text(value))
    except json.JSONDecodeError as exc:
        raise _Refusal(f"model_config attribute is not valid JSON ({exc})") from None


def _layer_configs(model_config: Any) -> dict[str, dict[str, Any]]:
    """Leaf layers of a (possibly nested) model config, by name, in the model's layer order."""
    found: dict[str, dict[str, Any]] = {}
    for layer in _walk_config(model_config):
        config = layer.get("config")
        name = layer.get("name") or (config.get("name") if isinstance(config, dict) else None)
        if isinstance(name, str) and name not in found:
            found[name] = layer
    return found


def _walk_config(node: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(node, dict):
        return
    config = node.get("config")
    layers = config.get("layers") if isinstance(config, dict) else None
    if isinstance(layers, list):
        for layer in layers:
            yield from _walk_config(layer)
    elif "class_name" in node:
        yield node


def _check_layer_config(name: str, layer: dict[str, Any] | None) -> None:
    """Refuse conv variants whose weights look like Conv2D's but compute something else."""
    if not isinstance(layer, dict):
        return
    class_name = str(layer.get("class_name", ""))
    if any(word in class_name for word in _NOT_PLAIN_CONV):
        raise _Refusal(f"layer {name!r} is a {class_name}; only plain Conv2D layers convert")
    config = layer.get("config")
    if not isinstance(config, dict):
        return
    for option in ("strides", "dilation_rate"):
        value = config.get(option, 1)
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v != 1 for v in values):
            raise _Refusal(f"layer {name!r} has {option} {value}; SRCNN convolutions use 1")


# --------------------------------------------------------------------------------------------
# From arrays to SRCNNWeights


def _pair_all(holders: list[tuple[str, list[tuple[str, Any]]]]) -> list[_Conv]:
    """Split each layer's ordered weights into (kernel, bias) pairs; refuse anything else."""
    convs: list[_Conv] = []
    for layer_name, datasets in holders:
        arrays = [
            (weight_name, _read_float(layer_name, weight_name, ds)) for weight_name, ds in datasets
        ]
        index = 0
        while index < len(arrays):
            weight_name, kernel = arrays[index]
            label = layer_name if len(arrays) <= 2 else _weight_layer(layer_name, weight_name)
            if kernel.ndim != 4:
                shapes = ", ".join(str(array.shape) for _, array in arrays)
                raise _Refusal(
                    f"layer {label!r} has weights of shapes {shapes}, not a Conv2D kernel and "
                    "bias; only plain 3-layer SRCNN models convert"
                )
            if index + 1 >= len(arrays) or arrays[index + 1][1].ndim != 1:
                raise _Refusal(
                    f"layer {label!r} has no bias (use_bias=False); SRCNN needs a bias per layer"
                )
            bias = arrays[index + 1][1]
            convs.append(_Conv(label, kernel, bias, position=len(convs)))
            index += 2
    return convs


def _weight_layer(layer_name: str, weight_name: str) -> str:
    """``body`` + ``body/conv2d_3/kernel:0`` -> ``body/conv2d_3`` (nested legacy models)."""
    prefix = weight_name.rsplit("/", 1)[0] if "/" in weight_name else layer_name
    return prefix if prefix.startswith(layer_name) else f"{layer_name}/{prefix}"


def _read_float(layer_name: str, weight_name: str, dataset: Any) -> np.ndarray:
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise _Refusal(f"layer {layer_name!r}: weight {weight_name!r} is not a dataset")
    if dataset.dtype.kind != "f":
        raise _Refusal(
            f"layer {layer_name!r}: weight {weight_name!r} has dtype {dataset.dtype}, "
            "not floating point"
        )
    return np.asarray(dataset[()])


def _build(convs: list[_Conv], ordered: bool, scale: int, where: str) -> SRCNNWeights:
    if len(convs) != 3:
        names = ", ".join(conv.name for conv in convs) or "none"
        raise _Refusal(f"found {len(convs)} conv layers ({names}); SRCNN has exactly 3")
    for conv in convs:
        _check_conv(conv)
    if ordered:
        chain = sorted(convs, key=lambda conv: conv.position)
        problem = _chain_problem(chain)
        if problem:
            raise _Refusal(f"channel mismatch: {problem}")
    else:
        chains = [list(p) for p in itertools.permutations(convs) if not _chain_problem(list(p))]
        if not chains:
            shapes = ", ".join(f"{c.name} {_io(c)}" for c in convs)
            raise _Refusal(f"channel mismatch: cannot chain 1 -> n1 -> n2 -> 1 from {shapes}")
        if len(chains) > 1:
            raise _Refusal(
                "ambiguous layer order: the file declares none and several channel chains fit "
                f"({'; '.join(' -> '.join(c.name for c in chain) for chain in chains)})"
            )
        chain = chains[0]
    first, second, third = chain
    arch = Architecture(
        f1=first.kernel.shape[0],
        n1=first.kernel.shape[3],
        f2=second.kernel.shape[0],
        n2=second.kernel.shape[3],
        f3=third.kernel.shape[0],
    )
    arrays: dict[str, np.ndarray] = {}
    for index, conv in enumerate(chain, start=1):
        arrays[f"w{index}"] = np.ascontiguousarray(conv.kernel, dtype=np.float32)
        arrays[f"b{index}"] = np.ascontiguousarray(conv.bias, dtype=np.float32)
        for key in (f"w{index}", f"b{index}"):
            if not np.all(np.isfinite(arrays[key])):
                what = "kernel" if key.startswith("w") else "bias"
                raise _Refusal(f"layer {conv.name!r}: {what} contains NaN or infinity")
    return SRCNNWeights(arch=arch, scale=scale, source=where, **arrays)


def _check_conv(conv: _Conv) -> None:
    height, width, _, filters = conv.kernel.shape
    if height != width:
        raise _Refusal(f"layer {conv.name!r}: kernel {height}x{width} is not square")
    if height % 2 == 0:
        raise _Refusal(f"layer {conv.name!r}: kernel {height}x{width} has even size; need odd")
    if conv.bias.shape != (filters,):
        raise _Refusal(
            f"layer {conv.name!r}: bias has shape {conv.bias.shape} for {filters} filters"
        )


def _chain_problem(chain: list[_Conv]) -> str | None:
    """Why ``chain`` is not 1 -> n1 -> n2 -> 1 channels, or None when it is."""
    expected_in = 1
    previous = "the 1-channel input"
    for conv in chain:
        channels_in = conv.kernel.shape[2]
        if channels_in != expected_in:
            return (
                f"layer {conv.name!r} takes {channels_in} channels "
                f"but {previous} gives {expected_in}"
            )
        expected_in = conv.kernel.shape[3]
        previous = f"layer {conv.name!r}"
    if expected_in != 1:
        return f"last layer {chain[-1].name!r} outputs {expected_in} channels, not 1"
    return None


def _io(conv: _Conv) -> str:
    return f"{conv.kernel.shape[2]}->{conv.kernel.shape[3]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
