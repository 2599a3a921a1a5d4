"""Reading and writing image files (OpenCV), in RGB(A) channel order.

The rest of the package sees numpy arrays only: (H, W) grayscale, (H, W, 2) grayscale + alpha,
(H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16. Writes are atomic: a temporary file in the
destination folder, renamed over the target only once it is complete.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .errors import ImageError, OutputError

#: Extensions OpenCV both reads and writes (the training and evaluation folders use them).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def _cv2():
    # Imported on first use: the CLI's other commands do not pay for it. OpenCV's own log
    # lines ("[ WARN ...] grfmt_png ...") would follow our one-line message: silence them.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    import cv2

    with contextlib.suppress(AttributeError):  # older OpenCV: the variable above does it
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


def check_writable_format(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, an output name whose extension OpenCV cannot encode."""
    path = Path(path)
    if not path.suffix or not _cv2().haveImageWriter(str(path)):
        raise OutputError(
            f"{path}: cannot write {path.suffix or 'files without an extension'} "
            f"(use one of {', '.join(IMAGE_EXTENSIONS)})"
        )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an RGB(A)/grayscale uint8 or uint16 array."""
    cv2 = _cv2()
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{path}: not an image OpenCV can decode, or corrupt")
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: unsupported sample type {image.dtype} (8- or 16-bit only)")
    if image.ndim == 3:
        conversion = {
            1: None,
            3: cv2.COLOR_BGR2RGB,
            4: cv2.COLOR_BGRA2RGBA,
        }.get(image.shape[2], "bad")
        if conversion == "bad":
            raise ImageError(f"{path}: unsupported channel count {image.shape[2]}")
        image = image[..., 0] if conversion is None else cv2.cvtColor(image, conversion)
    if image.size == 0:
        raise ImageError(f"{path}: image has zero size")
    return np.ascontiguousarray(_apply_exif_orientation(image, _exif_orientation(path)))


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


def _exif_orientation(path: Path) -> int:
    """The file's EXIF orientation (1 = upright). OpenCV's IMREAD_UNCHANGED ignores it, so a
    phone photo would come out rotated; Pillow reads just the header to find it."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency; stay usable without it
        return 1
    try:
        with Image.open(path) as image:
            return int(image.getexif().get(0x0112, 1))
    except Exception:  # no EXIF, or a format Pillow does not know: nothing to rotate
        return 1


def _apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    transform = _ORIENT.get(orientation)
    return image if transform is None else transform(image)


def write_image(path: str | os.PathLike[str], image: np.ndarray, overwrite: bool = False) -> None:
    """Encode ``image`` to ``path`` atomically; refuse to replace an existing file unless asked."""
    cv2 = _cv2()
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (use --overwrite to replace it)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ext = path.suffix.lower()
    try:
        ok, encoded = cv2.imencode(ext, image)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"{path}: cannot encode a {image.dtype} image as {ext or 'no extension'}")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        encoded.tofile(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
