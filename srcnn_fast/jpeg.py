"""JPEG inputs: the quality a JPEG file was written at, read from its own quantisation tables,
and the compression that training applies to LR images.

Nearly every encoder (libjpeg, libjpeg-turbo and so Pillow, OpenCV, ImageMagick, most cameras'
and phones' "quality" settings) scales the IJG standard luminance table (ITU T.81, K.1) by
libjpeg's rule: ``scale = 5000 / q`` below 50, ``200 - 2 q`` from 50, each entry
``clip((std * scale + 50) // 100, 1, 255)``. :func:`estimate_quality` finds the q whose table is
nearest (least squares) to the file's: exact for files those encoders wrote, the nearest
equivalent for others (a table of another design gets the q with the same overall coarseness).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .weights_choice import ImageHint

#: The IJG standard luminance quantisation table (quality 50), in natural (row-major) order.
STD_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.int64,
)

#: The qualities 1..100 whose scaled tables :func:`estimate_quality` compares against.
QUALITIES = np.arange(1, 101)


def scaled_luma_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1..100), natural order, baseline (<= 255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((STD_LUMA_TABLE * scale + 50) // 100, 1, 255)


_TABLES = np.stack([scaled_luma_table(int(q)) for q in QUALITIES]).reshape(len(QUALITIES), 64)


def quality_from_table(table: np.ndarray) -> int:
    """The libjpeg quality whose luminance table is nearest (least squares) to ``table``
    (64 entries, natural order); ties go to the higher quality, as several high qualities
    share a table of all ones."""
    entries = np.asarray(table, np.int64).reshape(64)
    errors = ((_TABLES - entries) ** 2).sum(axis=1)
    best = np.flatnonzero(errors == errors.min())
    return int(QUALITIES[best[-1]])


def estimate_quality(source: str | os.PathLike[str] | bytes) -> int | None:
    """The quality (1..100) a JPEG file was written at, from its luminance quantisation table;
    None for anything that is not a JPEG (PNG, WebP, TIFF ...: lossless or not this kind of
    loss), or a JPEG without tables Pillow can read. ``source``: a path or the file's bytes.
    Reads the header only, never the pixels."""
    from PIL import Image, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as image:
            tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if not tables or 0 not in tables:
        return None
    # Pillow (since 8.3) gives the tables in natural order, as the file's zigzag is undone.
    return quality_from_table(np.asarray(tables[0], np.int64))


def image_hint(source: str | os.PathLike[str] | bytes) -> ImageHint:
    """What the choice of weights (:mod:`srcnn_fast.weights_choice`) needs to know about an
    image file: its kind for a message ("PNG"; "a non-JPEG file" for bytes or a name without
    an extension) and the quality it was written at where it is a JPEG."""
    if isinstance(source, bytes):
        kind = "a non-JPEG file"
    else:
        suffix = Path(source).suffix.lstrip(".").upper()
        kind = (suffix or "a non-JPEG file").replace("JPG", "JPEG")
    return ImageHint(kind, estimate_quality(source))


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """An 8-bit RGB or gray image as the bytes of a JPEG file written by Pillow at
    ``quality`` (its defaults otherwise: 4:2:0 chroma for colour, as most photos are)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """:func:`jpeg_bytes`, then decoded as inference decodes files."""
    from .imagefile import decode_image

    return decode_image(jpeg_bytes(image, quality), f"<JPEG q={quality}>")[0]
