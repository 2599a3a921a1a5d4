"""YUV4MPEG2 streams: raw frames in, upscaled raw frames out, for FFmpeg pipelines.

``srcnn-fast upscale - -o -`` reads a YUV4MPEG2 stream (``ffmpeg -f yuv4mpegpipe``) on stdin
and writes one on stdout: the same header with the upscaled ``W`` and ``H`` (every other tag,
``F``, ``A``, ``I``, ``C`` and ``X...``, copied as it came), then each frame. A frame is its
planes' raw samples, Y then U and V (``Cmono``: Y alone), 8-bit or, for ``C420p10`` and the
like, 16-bit little-endian words; each is upscaled by :func:`srcnn_fast.video.upscale_frame`,
the step the file route runs, so a frame comes out the same by either route.

Reading, upscaling and writing overlap through :func:`srcnn_fast.pipeline.pipelined`: at most
a few frames are held at any time, however long the stream. PyAV is not needed: the format is
a text header and raw planes, parsed here.

A stream that ends in the middle of a frame (or with a broken ``FRAME`` line) keeps the frames
already written, as a pipe must; :attr:`Y4MSummary.cut` says where it broke off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from .console import counted, frame_bar
from .errors import ImageError, OutputError, UsageError
from .imagefile import atomic_output
from .jobs import names_folder, output_name
from .pipeline import pipelined
from .video import VideoSummary, upscale_frame

if TYPE_CHECKING:
    from .infer import Upscaler, WeightsChoice

__all__ = [
    "COLOURSPACES",
    "STDIO",
    "Y4MHeader",
    "Y4MSummary",
    "is_y4m_route",
    "read_frames",
    "read_header",
    "stdout_for_frames",
    "upscale_y4m",
    "upscale_y4m_path",
    "y4m_target",
]

#: The name that means stdin (as an input) or stdout (as ``-o``).
STDIO = "-"
MAGIC = b"YUV4MPEG2"
#: Longest header (and FRAME line) read: real ones are under 100 bytes; a stream that is not
#: YUV4MPEG2 at all is refused after this much, not read to its end looking for a newline.
MAX_LINE = 4096
#: Largest width or height taken: a garbled header must not ask for terabytes per frame.
MAX_SIDE = 1 << 15
#: Frames in each queue between reading, upscaling and writing (as the file route).
DEPTH = 3

_SUBSAMPLING = {"420": (2, 2), "411": (4, 1), "422": (2, 1), "444": (1, 1)}
#: Every colourspace (``C`` tag) read: chroma subsampling (x, y), None for gray; bits per
#: sample (over 8: 16-bit little-endian words). FFmpeg's names (libavformat/yuv4mpegdec.c).
COLOURSPACES: dict[str, tuple[tuple[int, int] | None, int]] = {
    **{name: ((2, 2), 8) for name in ("420jpeg", "420paldv", "420mpeg2")},
    **{name: (sub, 8) for name, sub in _SUBSAMPLING.items()},
    **{
        f"{name}p{bits}": (_SUBSAMPLING[name], bits)
        for name in ("420", "422", "444")
        for bits in (9, 10, 12, 14, 16)
    },
    "mono": (None, 8),
    **{f"mono{bits}": (None, bits) for bits in (9, 10, 12, 16)},
}
#: The colourspace of a header without a ``C`` tag (the format's default).
DEFAULT_COLOURSPACE = "420jpeg"
_RATIO = re.compile(rb"(\d+):(\d+)")


@dataclass(frozen=True)
class Y4MHeader:
    """A stream header: the frame size, the colourspace, and every tag as it was written."""

    width: int
    height: int
    colourspace: str
    #: The header's tags after the magic, in order, as bytes (W, H, F, A, I, C, X...).
    tags: tuple[bytes, ...]

    @property
    def chroma(self) -> tuple[int, int] | None:
        """Chroma subsampling (x, y); None for a gray stream."""
        return COLOURSPACES[self.colourspace][0]

    @property
    def bits(self) -> int:
        return COLOURSPACES[self.colourspace][1]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bits <= 8 else np.dtype("<u2")

    @property
    def full_range(self) -> bool:
        """FFmpeg's ``XCOLORRANGE=FULL`` (absent: studio range, as in the file route)."""
        return b"XCOLORRANGE=FULL" in self.tags

    def _ratio(self, letter: bytes) -> Fraction | None:
        for tag in self.tags:
            if tag[:1] == letter:
                num, den = map(int, _RATIO.fullmatch(tag[1:]).groups())
                return Fraction(num, den) if num and den else None
        return None

    @property
    def rate(self) -> Fraction | None:
        """Frames per second (``F``); None where unknown (absent, or ``F0:0``)."""
        return self._ratio(b"F")

    @property
    def aspect(self) -> Fraction | None:
        """Pixel (sample) aspect ratio (``A``); None where unknown (absent, or ``A0:0``)."""
        return self._ratio(b"A")

    def plane_shapes(self) -> list[tuple[int, int]]:
        """(rows, columns) of each plane: Y, then U and V at the chroma size (rounded up)."""
        shapes = [(self.height, self.width)]
        if self.chroma is not None:
            sx, sy = self.chroma
            shapes += [(-(-self.height // sy), -(-self.width // sx))] * 2
        return shapes

    @property
    def frame_bytes(self) -> int:
        return sum(rows * cols for rows, cols in self.plane_shapes()) * self.dtype.itemsize

    def scaled(self, scale: int) -> Y4MHeader:
        """The header of the upscaled stream: W and H times ``scale``, the rest as it was."""
        width, height = self.width * scale, self.height * scale
        new = {b"W": b"W%d" % width, b"H": b"H%d" % height}
        tags = tuple(new.get(tag[:1], tag) for tag in self.tags)
        return Y4MHeader(width, height, self.colourspace, tags)

    def line(self) -> bytes:
        return b" ".join((MAGIC, *self.tags)) + b"\n"

    def planes(self, buffer: bytearray | memoryview) -> list[np.ndarray]:
        """Views of a frame's planes in ``buffer`` (:attr:`frame_bytes` long)."""
        views, start = [], 0
        for rows, cols in self.plane_shapes():
            size = rows * cols
            plane = np.frombuffer(buffer, self.dtype, size, start * self.dtype.itemsize)
            views.append(plane.reshape(rows, cols))
            start += size
        return views


def read_header(stream: IO[bytes], name: str) -> Y4MHeader:
    """The stream's header line, checked: raises :class:`ImageError` naming ``name`` and the
    problem (not YUV4MPEG2, a missing or bad W/H, an unknown colourspace, a bad F/A/I)."""
    line = stream.readline(MAX_LINE)
    if not line:
        raise ImageError(f"{name}: empty, no YUV4MPEG2 header")
    if line[: len(MAGIC) + 1] not in (MAGIC + b" ", MAGIC + b"\n"):
        raise ImageError(f"{name}: not a YUV4MPEG2 stream (starts with {bytes(line[:12])!r})")
    if not line.endswith(b"\n"):
        raise ImageError(f"{name}: YUV4MPEG2 header without an end of line in {MAX_LINE} bytes")
    tags = tuple(tag for tag in line[len(MAGIC) : -1].split(b" ") if tag)
    found: dict[bytes, bytes] = {}
    for tag in tags:
        found.setdefault(tag[:1], tag[1:])
    width, height = (_side(name, letter, found.get(letter)) for letter in (b"W", b"H"))
    for letter in (b"F", b"A"):
        if letter in found and not _RATIO.fullmatch(found[letter]):
            raise ImageError(
                f"{name}: YUV4MPEG2 header: bad {_tag(letter, found[letter])} "
                "(wanted two integers, as F30000:1001 or A1:1)"
            )
    if b"I" in found and found[b"I"] not in (b"p", b"t", b"b", b"m", b"?"):
        raise ImageError(
            f"{name}: YUV4MPEG2 header: bad {_tag(b'I', found[b'I'])} (wanted Ip, It, Ib or Im)"
        )
    colourspace = found.get(b"C", DEFAULT_COLOURSPACE.encode()).decode("ascii", "replace")
    if colourspace not in COLOURSPACES:
        raise ImageError(
            f"{name}: YUV4MPEG2 colourspace C{colourspace} is not supported (supported: "
            f"{', '.join('C' + c for c in COLOURSPACES)})"
        )
    header = Y4MHeader(width, height, colourspace, tags)
    sx, sy = header.chroma or (1, 1)
    if width < sx or height < sy:
        raise ImageError(
            f"{name}: a {width}x{height} frame is smaller than C{colourspace}'s chroma "
            f"subsampling ({sx}x{sy})"
        )
    return header


def _tag(letter: bytes, value: bytes) -> str:
    return (letter + value).decode("ascii", "replace")


def _side(name: str, letter: bytes, value: bytes | None) -> int:
    what = "width" if letter == b"W" else "height"
    if value is None:
        raise ImageError(f"{name}: YUV4MPEG2 header has no {letter.decode()} ({what}) tag")
    if not value.isdigit() or not 1 <= int(value) <= MAX_SIDE:
        raise ImageError(
            f"{name}: YUV4MPEG2 header: bad {_tag(letter, value)} (the {what} must be 1 to "
            f"{MAX_SIDE})"
        )
    return int(value)


class StreamCut(ImageError):
    """The stream broke off after ``frames`` complete frames (mid-frame, or a bad FRAME line)."""

    def __init__(self, frames: int, problem: str) -> None:
        super().__init__(problem)
        self.frames = frames
        self.problem = problem


def read_frames(stream: IO[bytes], header: Y4MHeader) -> Iterator[tuple[bytes, list[np.ndarray]]]:
    """Each frame after the header: (its ``FRAME`` line's parameters, its planes as views of a
    buffer of its own). Ends cleanly at the end of the stream between frames; raises
    :class:`StreamCut` where it ends inside one or a ``FRAME`` line is wrong."""
    size, frames = header.frame_bytes, 0
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return
        if not line.endswith(b"\n") and len(line) < MAX_LINE and b"FRAME".startswith(line[:5]):
            raise StreamCut(frames, f"the stream ends inside frame {frames + 1}'s FRAME line")
        if not (line.startswith(b"FRAME") and line[5:6] in (b" ", b"\n") and line[-1:] == b"\n"):
            raise StreamCut(
                frames,
                f"frame {frames + 1} does not start with a FRAME line (found {bytes(line[:16])!r})",
            )
        buffer = bytearray(size)
        got = _read_into(stream, buffer)
        if got < size:
            raise StreamCut(
                frames, f"the stream ends inside frame {frames + 1} ({got} of its {size} bytes)"
            )
        frames += 1
        yield bytes(line[5:-1]), header.planes(buffer)


def _read_into(stream: IO[bytes], buffer: bytearray) -> int:
    """Fill ``buffer`` from ``stream``; the bytes read (fewer only at the end of the stream)."""
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _write_all(stream: IO[bytes], data: bytes | bytearray) -> None:
    """All of ``data``: an unbuffered stdout may take less than all in one write."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view) :]


@dataclass
class Y4MSummary(VideoSummary):
    """What :func:`upscale_y4m` did; ``cut``: where the stream broke off (None: it did not)."""

    cut: str | None = None

    def problem(self) -> str | None:
        if self.cut is None:
            return None
        were = "was" if self.frames == 1 else "were"
        return (
            f"{self.source}: {self.cut}; {counted(self.frames, 'frame')} {were} written to "
            f"{self.target} before it"
        )


def weights_for_stream(upscaler: Upscaler) -> WeightsChoice:
    """Raw frames carry no quantiser: under "auto", the clean weights (``--weights-for`` and
    ``-w`` choose otherwise)."""
    return upscaler.weights_for_video("YUV4MPEG2", None)


def upscale_y4m(
    src: IO[bytes],
    dst: IO[bytes],
    upscaler: Upscaler,
    *,
    source: str = "stdin",
    target: str = "stdout",
    depth: int = DEPTH,
    overlap: bool = True,
    progress: bool | None = None,
    header: Y4MHeader | None = None,
) -> Y4MSummary:
    """Upscale the YUV4MPEG2 stream ``src`` into ``dst``, frame by frame, in a pipeline.

    ``source``/``target`` name the two in messages; ``header``: ``src``'s, where the caller
    has read it already; ``depth``: frames per queue; ``progress``: a bar on stderr (None:
    when stderr is a terminal). A bad header raises :class:`ImageError` before anything is
    written; a stream that breaks off mid-frame ends the output after the last whole frame
    and is reported in the summary (``cut``, :meth:`Y4MSummary.problem`). A write that fails
    raises :class:`OutputError` saying how many frames were written.
    """
    summary = Y4MSummary(Path(source), Path(target))
    started = time.perf_counter()
    header = header if header is not None else read_header(src, source)
    out_header = header.scaled(upscaler.scale)
    choice = weights_for_stream(upscaler)
    summary.weights.append(f"{choice}")
    upscaler.backend_for(choice)  # built now, not in the first frame's upscale

    def upscale(item: tuple[bytes, list[np.ndarray]]) -> tuple[bytes, bytearray]:
        params, planes = item
        buffer = bytearray(out_header.frame_bytes)
        upscale_frame(
            upscaler, planes, header.bits, header.full_range, choice, out_header.planes(buffer)
        )
        return params, buffer

    bar = frame_bar(progress, None, summary.source)
    try:
        _write(dst, out_header.line(), target, summary)
        frames = pipelined(
            read_frames(src, header), upscale, depth=depth, times=summary.times, overlap=overlap
        )
        try:
            for params, buffer in frames:
                _write(dst, b"FRAME" + params + b"\n", target, summary)
                _write(dst, buffer, target, summary)
                summary.frames += 1
                if bar is not None:
                    bar.update(1)
        except StreamCut as cut:
            summary.cut = cut.problem
        finally:
            frames.close()
        _flush(dst, target, summary)
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _write(dst: IO[bytes], data: bytes | bytearray, target: str, summary: Y4MSummary) -> None:
    try:
        _write_all(dst, data)
    except OSError as exc:
        raise _write_error(exc, target, summary) from None


def _flush(dst: IO[bytes], target: str, summary: Y4MSummary) -> None:
    try:
        dst.flush()
    except OSError as exc:
        raise _write_error(exc, target, summary) from None


def _write_error(exc: OSError, target: str, summary: Y4MSummary) -> OutputError:
    done = f"after {counted(summary.frames, 'frame')}"
    if isinstance(exc, BrokenPipeError):
        return OutputError(f"{target}: closed by the program reading it, {done} (broken pipe)")
    return OutputError(f"{target}: cannot write ({exc.strerror or exc}), {done}")


@contextlib.contextmanager
def stdout_for_frames() -> Iterator[IO[bytes]]:
    """stdout for frames alone: its file descriptor is duplicated for the frames, then fd 1
    (and ``sys.stdout``) point at stderr, so nothing else (a print, a library's notice, C code
    writing to fd 1) can get into the stream. Unbuffered: each frame leaves as it is written.
    A terminal is refused (:class:`UsageError`): raw frames are not for reading."""
    if os.isatty(1):
        raise UsageError("-o -: stdout is a terminal; pipe it into a program (ffmpeg -i - ...)")
    sys.stdout.flush()
    frames_fd = os.dup(1)
    os.dup2(2, 1)
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        with open(frames_fd, "wb", buffering=0) as frames:
            yield frames
    finally:
        sys.stdout = saved  # its fd 1 is stderr now: still nothing reaches the frames


def upscale_y4m_path(
    src: str,
    dst: str,
    upscaler: Upscaler,
    *,
    stdout: IO[bytes] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Y4MSummary:
    """:func:`upscale_y4m` between named ends: ``-`` (stdin; stdout, written to ``stdout``,
    default :func:`stdout_for_frames`) or files. An output file is written atomically and
    never over the input or, without ``overwrite``, over an existing file; a stream cut
    mid-frame leaves its whole frames in it, as on stdout."""
    with contextlib.ExitStack() as stack:
        if src == STDIO:
            if _is_terminal(sys.stdin):
                raise UsageError(
                    "-: stdin is a terminal; pipe YUV4MPEG2 frames in (ffmpeg -i IN -f "
                    "yuv4mpegpipe - | srcnn-fast upscale - -o -)"
                )
            # A reader of its own on the descriptor: a read left blocked in the reading thread
            # (the program writing stdin stalls after the output failed) then holds no lock
            # that the interpreter's exit needs (sys.stdin's).
            reader = stack.enter_context(open(os.dup(sys.stdin.fileno()), "rb"))
            source = "stdin"
        else:
            reader, source = stack.enter_context(_open_input(src)), src
        if dst == STDIO:
            writer = stdout if stdout is not None else stack.enter_context(stdout_for_frames())
            return upscale_y4m(reader, writer, upscaler, source=source, progress=progress)
        out = Path(dst)
        if src != STDIO and out.exists() and out.resolve() == Path(src).resolve():
            raise OutputError(f"{dst}: is the input itself; not overwritten")
        if out.exists() and not overwrite:
            raise OutputError(f"{dst}: already exists (use --overwrite to replace it)")
        header = read_header(reader, source)  # a bad one creates no file
        tmp = stack.enter_context(atomic_output(out, overwrite))
        writer = stack.enter_context(open(tmp, "wb"))
        return upscale_y4m(
            reader, writer, upscaler, header=header, source=source, target=dst, progress=progress
        )


def is_y4m_route(inputs: Sequence[str], output: str | None) -> bool:
    """Whether ``upscale`` takes this route: stdin or stdout (``-``), or one .y4m file into a
    .y4m file (beside it, in a folder, or named). A .y4m file into another container (``-o
    out.mkv``) is a video file like any other (:mod:`srcnn_fast.video`)."""
    if STDIO in inputs or output == STDIO:
        return True
    if len(inputs) != 1 or not _is_y4m(inputs[0]):
        return False
    return output is None or _is_y4m(output) or names_folder(output)


def y4m_target(source: str, output: str | None, scale: int) -> str:
    """Where ``source`` (``-``: stdin) is written: ``-`` (stdout: the default for stdin), or
    ``NAME_xS.y4m`` beside it or in the folder ``output``, or the .y4m file ``output``.
    Raises :class:`UsageError` for an output that is none of these."""
    if output == STDIO or (output is None and source == STDIO):
        return STDIO
    if output is not None and _is_y4m(output):
        return output
    if output is not None and not names_folder(output):
        raise UsageError(f"-o {output}: a YUV4MPEG2 stream is written to - (stdout) or a .y4m file")
    if source == STDIO:
        raise UsageError(f"-o {output}: stdin has no name to name its output by; give -o FILE.y4m")
    name = output_name(Path(source).name, scale)
    return str(Path(source).with_name(name) if output is None else Path(output) / name)


def _is_y4m(name: str) -> bool:
    return name.lower().endswith(".y4m")


def _open_input(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is a terminal (False for one without a file descriptor)."""
    try:
        return stream is not None and os.isatty(stream.fileno())
    except (OSError, ValueError):
        return False
