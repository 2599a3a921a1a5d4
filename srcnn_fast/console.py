"""Messages on stderr that start on a line of their own, progress bar or not.

A progress bar (tqdm) holds a terminal's current line: it redraws it after a carriage return
and ends it only when it closes. A message printed meanwhile (the first run's compile notice,
``error: interrupted`` after Ctrl-C) would be glued onto the end of the bar. :func:`say` first
moves a terminal's cursor to the start of the line and erases it; the bar, if one is still
running, draws itself again below the message at its next update. A file or a pipe gets the
message as it is (no bar draws there, and logs stay free of escape codes).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

#: Carriage return, then ANSI "erase to the end of the line" (every terminal tqdm draws on).
LINE_START = "\r\033[K"


def say(message: str, stream: TextIO | None = None) -> None:
    """Print ``message`` as a line of its own on ``stream`` (default: stderr)."""
    stream = stream if stream is not None else sys.stderr
    try:
        fresh = LINE_START if stream.isatty() else ""
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        fresh = ""
    print(fresh + message, file=stream, flush=True)


def counted(n: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def frame_bar(progress: bool | None, total: int | None, name: str | os.PathLike[str]) -> Any:
    """A progress bar of frames on stderr named after ``name``'s file name (tqdm, which leaves
    no line behind), or None: ``progress`` False, or None and stderr not a terminal."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    desc = os.path.basename(os.fspath(name))
    return tqdm(total=total, unit="frame", desc=desc, leave=False, dynamic_ncols=True)
