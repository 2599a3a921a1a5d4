"""PNG chunks we handle ourselves: reading the colour type and colour-key transparency that
OpenCV's decoder drops, and a streaming encoder.

Our encoder writes every PNG the package produces, for three things OpenCV's cannot do: write
the image row band by row band (a tiled 40000x40000 output never exists whole in memory),
grayscale + alpha (colour type 4), and carry EXIF and ICC chunks for any of them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type per channel count: gray, gray + alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
#: zlib level: 3 costs about a third of level 6's time for a percent or two of size.
COMPRESSION_LEVEL = 3
_IDAT_BYTES = 1 << 20


@dataclass(frozen=True)
class PngHeader:
    colour_type: int
    bit_depth: int
    #: Colour-key transparency (tRNS for colour types 0 and 2): the sample value(s) meaning
    #: "fully transparent", or None.
    colour_key: tuple[int, ...] | None


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":  # tRNS must come before the image data: stop reading here
            return
        pos += 12 + length


def read_header(data: bytes) -> PngHeader | None:
    """The colour type, bit depth and colour key of PNG bytes (None if not a PNG)."""
    if not data.startswith(SIGNATURE):
        return None
    colour_type = bit_depth = -1
    key = None
    for kind, body in _chunks(data):
        if kind == b"IHDR" and len(body) >= 10:
            bit_depth, colour_type = body[8], body[9]
        elif kind == b"tRNS" and colour_type in (0, 2) and len(body) >= 2:
            key = tuple(struct.unpack(f">{len(body) // 2}H", body[: len(body) // 2 * 2]))
    return PngHeader(colour_type, bit_depth, key)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered_rows(rows: np.ndarray, previous: np.ndarray | None) -> bytes:
    """Rows as PNG scanlines with the 'Up' filter (type 2): each byte minus the one above,
    which turns smooth images into long runs of small values that compress well."""
    raw = rows.reshape(rows.shape[0], -1).view(np.uint8)
    above = np.empty_like(raw)
    above[0] = 0 if previous is None else previous
    above[1:] = raw[:-1]
    out = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    np.subtract(raw, above, out=out[:, 1:])
    return out.tobytes()


def write_png(
    stream: BinaryIO,
    width: int,
    height: int,
    channels: int,
    dtype: np.dtype,
    bands: Iterable[np.ndarray],
    exif: bytes | None = None,
    icc: bytes | None = None,
    xmp: bytes | None = None,
) -> None:
    """Encode ``height`` rows arriving in ``bands`` ((rows, width[, channels]) arrays, uint8
    or uint16, in order) to ``stream``. Memory use is one band plus zlib's window."""
    dtype = np.dtype(dtype)
    depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}[dtype]
    stream.write(SIGNATURE)
    header = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, 0)
    stream.write(_chunk(b"IHDR", header))
    if icc:
        stream.write(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        stream.write(_chunk(b"eXIf", exif))
    if xmp:  # iTXt, uncompressed, no language: how Adobe tools store XMP in PNG
        stream.write(_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    compressor = zlib.compressobj(COMPRESSION_LEVEL)
    pending = bytearray()
    previous = None
    written = 0
    for band in bands:
        # PNG stores 16-bit samples big-endian.
        band = np.ascontiguousarray(band, dtype=dtype.newbyteorder(">"))
        pending += compressor.compress(_filtered_rows(band, previous))
        previous = band[-1].reshape(-1).view(np.uint8)
        written += band.shape[0]
        while len(pending) >= _IDAT_BYTES:
            stream.write(_chunk(b"IDAT", bytes(pending[:_IDAT_BYTES])))
            del pending[:_IDAT_BYTES]
    if written != height:
        raise ValueError(f"PNG rows: got {written}, expected {height}")
    pending += compressor.flush()
    stream.write(_chunk(b"IDAT", bytes(pending)))
    stream.write(_chunk(b"IEND", b""))
