"""SRCNN architecture, weights container and the versioned raw-array weights file.

The file is a NumPy ``.npz`` holding six float32 arrays (``w1, b1, w2, b2, w3, b3``; kernels
in Keras' HWIO layout) and ``metadata``: a uint8 array of UTF-8 JSON with the format version,
architecture, scale, interpolation and training provenance. Loading never unpickles
(``allow_pickle=False``) and validates every array before a backend sees it.

Version 2 adds an optional int8 calibration (``precision="int8"``, made by
``srcnn-fast calibrate``): the arrays ``int8_clip1, int8_s1, int8_w1q, int8_s2, int8_w2q,
int8_b2, int8_w3, int8_b3`` and a metadata entry ``int8`` with conv1's input bits, the
SHA-256 of the six float arrays it was made for, and its provenance. Version 1 files (no
calibration) still load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WeightsError

FORMAT_NAME = "srcnn-fast-weights"
FORMAT_VERSION = 2
#: Versions this srcnn-fast reads (1: no int8 calibration).
READABLE_VERSIONS = (1, 2)
#: The only interpolation the pipeline implements (DESIGN.md section 1, step 2). Weights record
#: it so a file trained with another upscaler (e.g. OpenCV's a = -0.75) is refused, not misused.
INTERPOLATION = "bicubic-keys-a-0.5-half-pixel-replicate"
ARRAY_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")


@dataclass(frozen=True)
class Architecture:
    """Three conv layers: f1 x f1 -> n1 maps (ReLU), f2 x f2 -> n2 maps (ReLU), f3 x f3 -> 1."""

    f1: int = 9
    n1: int = 64
    f2: int = 1
    n2: int = 32
    f3: int = 5

    def __post_init__(self) -> None:
        for name in ("f1", "f2", "f3"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be a positive odd integer, got {value!r}")
        for name in ("n1", "n2"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def name(self) -> str:
        """Paper-style name, e.g. ``9-1-5 (64, 32)``."""
        return f"{self.f1}-{self.f2}-{self.f3} ({self.n1}, {self.n2})"

    @property
    def radius(self) -> int:
        """Receptive-field radius: how far an output pixel sees into the upscaled input."""
        return (self.f1 - 1) // 2 + (self.f2 - 1) // 2 + (self.f3 - 1) // 2

    @property
    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel (8,032 for 9-1-5, 64, 32)."""
        return self.f1**2 * self.n1 + self.f2**2 * self.n1 * self.n2 + self.f3**2 * self.n2

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every array, kernels in HWIO."""
        return {
            "w1": (self.f1, self.f1, 1, self.n1),
            "b1": (self.n1,),
            "w2": (self.f2, self.f2, self.n1, self.n2),
            "b2": (self.n2,),
            "w3": (self.f3, self.f3, self.n2, 1),
            "b3": (1,),
        }


@dataclass(frozen=True, eq=False)
class Int8Calibration:
    """What ``precision="int8"`` needs beyond the float weights (``backends/int8.py`` says how
    each number is used): conv1's clip values, the weight scales, the calibrated integers
    of conv1's interior phases and of conv2, conv2's bias corrected for their rounding, and
    conv3 refitted to the quantised network's conv2 output."""

    input_bits: int  # conv1's input: 8 or 16 bits
    clip1: np.ndarray  # (n1,) float32: conv1 output mapped to activation 255
    s1: np.ndarray  # (n1,) float32: conv1 folded weight per integer unit
    w1q: np.ndarray  # (s, s, T, T, n1) int8: interior phases of the folded conv1
    s2: np.ndarray  # (n2,) float32
    w2q: np.ndarray  # (n1, n2) int8
    b2: np.ndarray  # (n2,) float32
    w3: np.ndarray  # (f3, f3, n2, 1) float32: conv3 refitted to the quantised conv2 output
    b3: np.ndarray  # (1,) float32
    weights_sha256: str  # SRCNNWeights.fingerprint() of the weights it was made for
    provenance: dict[str, Any] = field(default_factory=dict)

    ARRAYS = ("clip1", "s1", "w1q", "s2", "w2q", "b2", "w3", "b3")

    def validate(self, arch: Architecture, where: str) -> None:
        if self.input_bits not in (8, 16):
            raise WeightsError(f"{where}: int8 input bits must be 8 or 16, not {self.input_bits}")
        shapes = {
            "clip1": (arch.n1,), "s1": (arch.n1,), "s2": (arch.n2,), "b2": (arch.n2,),
            "w2q": (arch.n1, arch.n2), "w3": arch.shapes()["w3"], "b3": (1,),
        }  # fmt: skip
        for name in self.ARRAYS:
            array = getattr(self, name)
            dtype = np.int8 if name.endswith("q") else np.float32
            if not isinstance(array, np.ndarray) or array.dtype != dtype:
                raise WeightsError(f"{where}: int8_{name} is not a {np.dtype(dtype)} array")
            expected = shapes.get(name, array.shape)
            if array.shape != expected or (name == "w1q" and array.ndim != 5):
                raise WeightsError(f"{where}: int8_{name} has shape {array.shape}")
            if dtype == np.float32 and not np.all(np.isfinite(array)):
                raise WeightsError(f"{where}: int8_{name} contains NaN or infinity")
        if np.any(self.clip1 <= 0) or np.any(self.s1 <= 0) or np.any(self.s2 <= 0):
            raise WeightsError(f"{where}: int8 clip values and scales must be positive")

    def metadata(self) -> dict[str, Any]:
        return {
            "input_bits": self.input_bits,
            "weights_sha256": self.weights_sha256,
            "provenance": self.provenance,
        }


@dataclass
class SRCNNWeights:
    """A trained network: architecture, scale and the six float32 arrays."""

    arch: Architecture
    scale: int
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w3: np.ndarray
    b3: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)
    interpolation: str = INTERPOLATION
    source: str = "<memory>"
    int8: Int8Calibration | None = None

    def __post_init__(self) -> None:
        self.validate()

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAY_NAMES}

    def validate(self) -> None:
        """Raise :class:`WeightsError` (naming :attr:`source`) unless everything is consistent."""
        where = self.source
        if not isinstance(self.scale, int) or isinstance(self.scale, bool) or self.scale < 1:
            raise WeightsError(f"{where}: scale must be a positive integer, got {self.scale!r}")
        if self.interpolation != INTERPOLATION:
            raise WeightsError(
                f"{where}: trained for interpolation {self.interpolation!r}; "
                f"this version runs only {INTERPOLATION!r}"
            )
        for name, shape in self.arch.shapes().items():
            array = getattr(self, name)
            if not isinstance(array, np.ndarray):
                raise WeightsError(f"{where}: {name} is not an array")
            if array.dtype != np.float32:
                raise WeightsError(f"{where}: {name} has dtype {array.dtype}, expected float32")
            if array.shape != shape:
                raise WeightsError(
                    f"{where}: {name} has shape {array.shape}, expected {shape} "
                    f"for architecture {self.arch.name}"
                )
            if not np.all(np.isfinite(array)):
                raise WeightsError(f"{where}: {name} contains NaN or infinity")
        if self.int8 is not None:
            self.int8.validate(self.arch, where)

    def fingerprint(self) -> str:
        """SHA-256 of the six float arrays: what an int8 calibration was made for."""
        digest = hashlib.sha256()
        for name in ARRAY_NAMES:
            digest.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        return digest.hexdigest()

    def content_sha256(self) -> str:
        """SHA-256 of everything the network computes with: the float arrays and the int8
        calibration, if any (what a resume record keeps of weights made in memory)."""
        digest = hashlib.sha256(self.fingerprint().encode())
        if self.int8 is not None:
            digest.update(str(self.int8.input_bits).encode())
            for value in vars(self.int8).values():
                if isinstance(value, np.ndarray):
                    digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "architecture": asdict(self.arch),
            "scale": self.scale,
            "interpolation": self.interpolation,
            "provenance": self.provenance,
            **({"int8": self.int8.metadata()} if self.int8 is not None else {}),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the raw-array file atomically (temporary file, then rename)."""
        path = Path(path)
        meta = np.frombuffer(json.dumps(self.metadata(), sort_keys=True).encode(), np.uint8)
        buffer = io.BytesIO()
        extra = {}
        if self.int8 is not None:
            extra = {f"int8_{name}": getattr(self.int8, name) for name in Int8Calibration.ARRAYS}
        np.savez(buffer, metadata=meta, **self.arrays(), **extra)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise WeightsError(f"{path}: cannot write weights: {exc.strerror or exc}") from None
        except BaseException:  # Ctrl-C mid-write: no partial file either
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SRCNNWeights:
        """Read and validate a raw-array file; every refusal names the file and the problem."""
        path = Path(path)
        try:
            with open(path, "rb") as stream:
                magic = stream.read(8)
            if not magic.startswith(b"PK"):  # every .npz is a zip archive
                raise WeightsError(f"{path}: not a srcnn-fast weights file ({_kind_of(magic)})")
            with np.load(path, allow_pickle=False) as npz:
                contents = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise WeightsError(f"{path}: no such weights file") from None
        except IsADirectoryError:
            raise WeightsError(f"{path}: is a directory, not a weights file") from None
        except PermissionError:
            raise WeightsError(f"{path}: permission denied") from None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise WeightsError(
                f"{path}: not a srcnn-fast weights file (.npz) or corrupt ({exc})"
            ) from None
        return cls.from_arrays(contents, source=str(path))

    @classmethod
    def from_arrays(cls, contents: dict[str, np.ndarray], source: str) -> SRCNNWeights:
        if "metadata" not in contents:
            raise WeightsError(f"{source}: no metadata entry; not a srcnn-fast weights file")
        try:
            meta = json.loads(contents["metadata"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise WeightsError(f"{source}: metadata does not describe a srcnn-fast weights file")
        version = meta.get("format_version")
        if version not in READABLE_VERSIONS:
            raise WeightsError(
                f"{source}: format version {version!r} is not supported (this srcnn-fast "
                f"reads versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        missing = [name for name in ARRAY_NAMES if name not in contents]
        if missing:
            raise WeightsError(f"{source}: missing arrays {', '.join(missing)}")
        try:
            arch = Architecture(**meta["architecture"])
            scale = meta["scale"]
            interpolation = meta["interpolation"]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{source}: bad architecture metadata ({exc})") from None
        return cls(
            arch=arch,
            scale=scale,
            provenance=dict(meta.get("provenance") or {}),
            interpolation=interpolation,
            source=source,
            int8=_int8_from(meta.get("int8"), contents, source) if version >= 2 else None,
            **{name: contents[name] for name in ARRAY_NAMES},
        )

    @classmethod
    def random(
        cls, arch: Architecture | None = None, scale: int = 2, seed: int = 0
    ) -> SRCNNWeights:
        """Glorot-uniform kernels and small random biases: for tests and benchmarks."""
        arch = arch or Architecture()
        rng = np.random.default_rng(seed)
        arrays: dict[str, np.ndarray] = {}
        for name, shape in arch.shapes().items():
            if name.startswith("w"):
                fan_in = shape[0] * shape[1] * shape[2]
                fan_out = shape[0] * shape[1] * shape[3]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                arrays[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
            else:
                arrays[name] = rng.uniform(-0.05, 0.05, shape).astype(np.float32)
        return cls(
            arch=arch, scale=scale, provenance={"random_seed": seed}, source="<random>", **arrays
        )


def _int8_from(meta: Any, contents: dict[str, np.ndarray], source: str) -> Int8Calibration | None:
    """The int8 calibration stored in a version 2 file, or None where it has none."""
    if meta is None:
        return None
    names = [f"int8_{name}" for name in Int8Calibration.ARRAYS]
    missing = [name for name in names if name not in contents]
    if missing:
        raise WeightsError(f"{source}: int8 calibration lacks arrays {', '.join(missing)}")
    try:
        return Int8Calibration(
            input_bits=int(meta["input_bits"]),
            weights_sha256=str(meta["weights_sha256"]),
            provenance=dict(meta.get("provenance") or {}),
            **{name: contents[f"int8_{name}"] for name in Int8Calibration.ARRAYS},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: bad int8 calibration metadata ({exc})") from None


#: File signatures people mistake for weights, and what to say about each.
_SIGNATURES = (
    (b"\x89HDF", "a Keras/HDF5 file: convert it with `srcnn-fast convert`"),
    (b"\x93NUMPY", "a single .npy array, not an .npz archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)


def _kind_of(magic: bytes) -> str:
    """What a file that is no .npz archive looks like, from its first bytes."""
    for signature, kind in _SIGNATURES:
        if magic.startswith(signature):
            return kind
    return "it is not an .npz archive"
