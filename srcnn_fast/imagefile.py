"""Reading and writing image files, in RGB(A) channel order, with their metadata.

The rest of the package sees numpy arrays only: (H, W) grayscale, (H, W, 2) grayscale + alpha,
(H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16, plus a :class:`Metadata` (EXIF, XMP, ICC
profile) carried from input to output where the output format can hold it (PNG, JPEG, WebP).

OpenCV decodes and encodes, except: PNG is written by our own streaming encoder
(:mod:`srcnn_fast.png`), and what OpenCV's decoder drops is put back (grayscale + alpha PNGs
come out as gray + alpha, not RGBA; colour-key transparency becomes an alpha channel; 8-bit
TIFFs with alpha are decoded by Pillow). CMYK files are converted to RGB (their CMYK profile is
not carried); 1-bit files read as 8-bit gray; float, 32-bit integer and CIELAB files are
refused. EXIF orientation is applied, and the carried EXIF then says "upright". Writes are
atomic: a temporary file in the destination folder, renamed over the target only once it is
complete; a format that would lose the image's alpha or bit depth is refused before any work.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import png
from .errors import ImageError, OutputError

#: Extensions read and written (the training and evaluation folders use them too).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Metadata:
    """What travels from an input file to its output besides the pixels."""

    exif: bytes | None = None  # TIFF-structured EXIF; its orientation already applied (1)
    xmp: bytes | None = None
    icc: bytes | None = None


@dataclass(frozen=True)
class _Format:
    name: str
    sixteen_bit: bool
    alpha: bool
    metadata: bool  # EXIF, XMP and ICC


_FORMATS = {
    ".png": _Format("PNG", True, True, True),
    ".jpg": _Format("JPEG", False, False, True),
    ".jpeg": _Format("JPEG", False, False, True),
    ".webp": _Format("WebP", False, True, True),
    ".tif": _Format("TIFF", True, True, False),
    ".tiff": _Format("TIFF", True, True, False),
    ".bmp": _Format("BMP", False, True, False),
}


def _cv2():
    # Imported on first use: the CLI's other commands do not pay for it. OpenCV's own log
    # lines ("[ WARN ...] grfmt_png ...") would follow our one-line message: silence them.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    # OpenCV refuses to decode images over 2^30 pixels; our own limit (--max-pixels, checked
    # from the header) replaces it, so that a raised limit really admits larger images.
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 40))
    import cv2

    with contextlib.suppress(AttributeError):  # older OpenCV: the variable above does it
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


_PILLOW_LOCK = threading.RLock()


@contextlib.contextmanager
def pillow_quietly() -> Iterator[None]:
    """Around every use of Pillow on a user's file: Pillow warns on stderr ("Truncated File
    Read", decompression bombs) about files whose problem we report in one line ourselves, or
    that our own pixel limit governs. ``warnings.catch_warnings`` swaps one process-wide
    filter list, so the threads that decode take turns (header reads: microseconds)."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _format_of(path: Path) -> _Format:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(
            f"{path}: cannot write {path.suffix or 'files without an extension'} "
            f"(use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    return fmt


def check_writable_format(
    path: str | os.PathLike[str], channels: int | None = None, dtype: np.dtype | None = None
) -> None:
    """Refuse an output name whose format cannot hold the image without loss: an unknown
    extension, alpha into JPEG, 16-bit samples into an 8-bit-only format."""
    path = Path(path)
    fmt = _format_of(path)
    if channels in (2, 4) and not fmt.alpha:
        raise OutputError(
            f"{path}: {fmt.name} has no alpha channel and the image is transparent "
            f"(write .png, .webp or .tif)"
        )
    if dtype is not None and np.dtype(dtype) == np.uint16 and not fmt.sixteen_bit:
        raise OutputError(
            f"{path}: {fmt.name} holds 8-bit samples only and the image is 16-bit "
            f"(write .png or .tif)"
        )


# --- reading ---------------------------------------------------------------------------------


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an RGB(A)/grayscale uint8 or uint16 array."""
    return read_image_file(path)[0]


def read_image_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, Metadata]:
    """Decode an image file: (pixels, metadata)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as exc:  # permissions, a name too long, an I/O error
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, path)


def decode_image(data: bytes, name: str | os.PathLike[str]) -> tuple[np.ndarray, Metadata]:
    """Decode the bytes of an image file (``name`` is for messages): (pixels, metadata)."""
    cv2 = _cv2()
    if len(data) == 0:
        raise ImageError(f"{name}: empty file")
    buffer = np.frombuffer(data, np.uint8)
    metadata = Metadata()
    try:
        if hasattr(cv2, "imdecodeWithMetadata"):  # OpenCV >= 4.12
            image, types, chunks = cv2.imdecodeWithMetadata(buffer, cv2.IMREAD_UNCHANGED)
            metadata = _metadata_from(types, chunks)
        else:  # pragma: no cover - older OpenCV: pixels only
            image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not an image OpenCV can decode, or corrupt")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{name}: unsupported sample type {image.dtype} (8- or 16-bit only)")
    if image.ndim == 3:
        conversion = {1: None, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(
            image.shape[2], "bad"
        )
        if conversion == "bad":
            raise ImageError(f"{name}: unsupported channel count {image.shape[2]}")
        image = image[..., 0] if conversion is None else cv2.cvtColor(image, conversion)
    image = _restore_channels(image, data, name)
    if metadata.icc is not None and metadata.icc[16:20] not in _ICC_COLOUR_SPACES:
        # A CMYK (or other) profile describes the file's samples, not the RGB that OpenCV
        # converted them to: carried into the output it would make viewers render it wrong.
        metadata = Metadata(metadata.exif, metadata.xmp, None)
    orientation = _exif_orientation(metadata.exif, data)
    if metadata.exif is not None and orientation != 1:
        metadata = Metadata(_upright_exif(metadata.exif), metadata.xmp, metadata.icc)
    return np.ascontiguousarray(_ORIENT.get(orientation, lambda a: a)(image)), metadata


def _metadata_from(types, chunks) -> Metadata:
    cv2 = _cv2()
    found = {int(t): bytes(np.asarray(c, np.uint8)) for t, c in zip(types, chunks, strict=True)}
    return Metadata(
        exif=found.get(cv2.IMAGE_METADATA_EXIF) or None,
        # OpenCV's PNG reader keeps the text's terminating NUL: drop it so it never grows.
        xmp=(found.get(cv2.IMAGE_METADATA_XMP) or b"").rstrip(b"\x00") or None,
        icc=found.get(cv2.IMAGE_METADATA_ICCP) or None,
    )


#: ICC data colour spaces (header bytes 16-20) that describe the pixels we decode.
_ICC_COLOUR_SPACES = (b"RGB ", b"GRAY")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _restore_channels(image: np.ndarray, data: bytes, name: str | os.PathLike[str]) -> np.ndarray:
    """Put back what OpenCV's decoder drops or changes (see the module docstring)."""
    header = png.read_header(data)
    if header is not None:
        if header.colour_type == 4 and image.ndim == 3 and image.shape[2] == 4:
            return np.ascontiguousarray(image[..., [0, 3]])  # gray + alpha, not RGBA
        if header.colour_key is not None and (image.ndim == 2 or image.shape[2] == 3):
            key = np.asarray(header.colour_key, image.dtype)
            colour = image if image.ndim == 3 else image[..., None]
            transparent = np.all(colour == key[: colour.shape[2]], axis=-1)
            alpha = np.where(transparent, 0, np.iinfo(image.dtype).max).astype(image.dtype)
            return np.concatenate([colour, alpha[..., None]], axis=-1)
        return image
    if data[:4] in _TIFF_MAGIC:
        return _tiff_channels(image, data, name)
    return image


def _tiff_channels(image: np.ndarray, data: bytes, name: str | os.PathLike[str]) -> np.ndarray:
    """OpenCV's TIFF reader drops the alpha of gray + alpha and palette + alpha files,
    multiplies the colour of 8-bit RGBA files by their (unassociated) alpha, gives CMYK files
    an opaque fourth channel, and reads CIELAB samples as if they were RGB. Pillow, told the
    file's layout by its header, gets those right: its pixels replace OpenCV's there."""
    from PIL import Image

    with pillow_quietly():
        try:
            pil = Image.open(io.BytesIO(data))
        except Exception:  # Pillow cannot parse it: OpenCV's reading is all there is
            return image
        return _tiff_pixels(image, pil, name)


def _tiff_pixels(image: np.ndarray, pil, name: str | os.PathLike[str]) -> np.ndarray:
    with pil:
        if pil.mode == "LAB":
            raise ImageError(f"{name}: unsupported colour space CIELAB (convert it to RGB)")
        if pil.mode == "CMYK" and image.ndim == 3 and image.shape[2] == 4:
            return image[..., :3]  # OpenCV already converted to RGB; the 4th is opaque
        if image.dtype == np.uint8 and pil.mode in ("LA", "PA", "RGBA"):
            with contextlib.suppress(Exception):  # Pillow fails to decode: keep OpenCV's
                return np.asarray(pil.convert("LA" if pil.mode == "LA" else "RGBA"))
    return image


# EXIF orientation (tag 0x0112) -> the array operation that shows the image upright, as
# Pillow's ImageOps.exif_transpose does (the tests compare with it).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_ORIENTATION_TAG = 0x0112


def _exif_orientation(exif: bytes | None, data: bytes) -> int:
    """The EXIF orientation (1 = upright); OpenCV's IMREAD_UNCHANGED ignores it, so a phone
    photo would come out rotated. Pillow parses the EXIF (or, with an OpenCV that returns no
    metadata, reads the file's header)."""
    from PIL import Image

    try:
        with pillow_quietly():
            if exif is not None:
                parsed = Image.Exif()
                parsed.load(exif)
                return int(parsed.get(_ORIENTATION_TAG, 1))
            with Image.open(io.BytesIO(data)) as image:
                return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # no EXIF, or one Pillow cannot parse: nothing to rotate
        return 1


def _upright_exif(exif: bytes) -> bytes | None:
    from PIL import Image

    try:
        with pillow_quietly():
            parsed = Image.Exif()
            parsed.load(exif)
            parsed[_ORIENTATION_TAG] = 1
            return parsed.tobytes().removeprefix(b"Exif\x00\x00")
    except Exception:  # cannot rewrite it: drop it rather than rotate the output twice
        return None


# --- writing ---------------------------------------------------------------------------------


def _for_format(image: np.ndarray, fmt: _Format) -> np.ndarray:
    """Gray + alpha as RGBA for the formats that have alpha but no gray + alpha layout."""
    if image.ndim == 3 and image.shape[2] == 2 and fmt.name != "PNG":
        return image[..., [0, 0, 0, 1]]
    return image


def encode_image(
    image: np.ndarray, name: str | os.PathLike[str], metadata: Metadata | None = None
) -> bytes:
    """The bytes of ``image`` encoded in the format of ``name``'s extension."""
    path = Path(name)
    fmt = _format_of(path)
    channels = 1 if image.ndim == 2 else image.shape[2]
    check_writable_format(path, channels, image.dtype)
    if fmt.name == "PNG":
        out = io.BytesIO()
        _write_png(out, image.shape, image.dtype, [image], metadata)
        return out.getvalue()
    cv2 = _cv2()
    image = _for_format(image, fmt)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(
            image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        )
    types, chunks = [], []
    if metadata is not None and fmt.metadata and hasattr(cv2, "imencodeWithMetadata"):
        for kind, value in (
            (cv2.IMAGE_METADATA_EXIF, metadata.exif),
            (cv2.IMAGE_METADATA_XMP, metadata.xmp),
            (cv2.IMAGE_METADATA_ICCP, metadata.icc),
        ):
            if value:
                types.append(kind)
                chunks.append(np.frombuffer(value, np.uint8))
    try:
        if types:
            ok, encoded = cv2.imencodeWithMetadata(path.suffix.lower(), image, types, chunks)
        else:
            ok, encoded = cv2.imencode(path.suffix.lower(), image)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"{path}: cannot encode a {image.dtype} image as {fmt.name}")
    return encoded.tobytes()


def _write_png(stream, shape, dtype, bands, metadata: Metadata | None) -> None:
    metadata = metadata or Metadata()
    channels = 1 if len(shape) == 2 else shape[2]
    png.write_png(
        stream,
        shape[1],
        shape[0],
        channels,
        dtype,
        bands,
        metadata.exif,
        metadata.icc,
        metadata.xmp,
    )


def write_image(
    path: str | os.PathLike[str],
    image: np.ndarray,
    overwrite: bool = False,
    metadata: Metadata | None = None,
) -> None:
    """Encode ``image`` to ``path`` atomically; refuse to replace an existing file unless asked."""
    path = Path(path)
    _refuse_existing(path, overwrite)
    encoded = encode_image(image, path, metadata)
    _atomic_write(path, lambda stream: stream.write(encoded), overwrite)


def write_image_bands(
    path: str | os.PathLike[str],
    shape: tuple[int, ...],
    dtype: np.dtype,
    bands: Iterable[np.ndarray],
    overwrite: bool = False,
    metadata: Metadata | None = None,
) -> None:
    """Write an image that arrives as row bands, in order, atomically. PNG is encoded band by
    band (memory: one band); other formats are assembled whole, then encoded."""
    path = Path(path)
    _refuse_existing(path, overwrite)
    fmt = _format_of(path)
    check_writable_format(path, 1 if len(shape) == 2 else shape[2], dtype)
    if fmt.name == "PNG":
        _atomic_write(
            path, lambda stream: _write_png(stream, shape, dtype, bands, metadata), overwrite
        )
        return
    image = np.empty(shape, dtype)
    row = 0
    for band in bands:
        image[row : row + band.shape[0]] = band
        row += band.shape[0]
    write_image(path, image, overwrite=overwrite, metadata=metadata)


def _link_new(tmp: Path, path: Path) -> bool:
    """Put ``tmp`` at ``path`` only if nothing is there, in one step (a hard link: the
    "exists?" check and the rename cannot be raced). False where the file system has no
    hard links: the caller renames after the check made before the work."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # EPERM / ENOTSUP / EXDEV: FAT, some network and FUSE file systems
        return False
    tmp.unlink()
    return True


def _already_exists(path: Path) -> OutputError:
    return OutputError(f"{path}: already exists (use --overwrite to replace it)")


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise _already_exists(path)


def _discard(tmp: Path) -> None:
    """Remove a temporary file if it is there. Quietly: on a read-only file system even
    unlinking a missing file fails (EROFS), and that must not replace the real error."""
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, fill, overwrite: bool) -> None:
    with atomic_output(path, overwrite) as tmp, open(tmp, "wb") as stream:
        fill(stream)


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary name beside ``path`` to write the output under; when the block ends
    normally, the file is put at ``path`` (never over an existing file unless ``overwrite``),
    else removed. ``keep_suffix``: the temporary name ends with ``path``'s extension too,
    for writers that pick the format by it (FFmpeg's muxers). Write errors become one
    :class:`OutputError` line naming ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix if keep_suffix else ''}")
    try:
        yield tmp
        if overwrite or not _link_new(tmp, path):
            os.replace(tmp, path)
    except FileExistsError:  # it appeared while we worked (another program, another run)
        _discard(tmp)
        raise _already_exists(path) from None
    except OSError as exc:
        _discard(tmp)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _discard(tmp)
        raise
