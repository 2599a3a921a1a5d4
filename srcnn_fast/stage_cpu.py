"""CPU time per stage of the video pipeline, the codecs' and libraries' own threads included.

The decode, upscale and encode stages run in three Python threads, and each hands its work to
threads of its own: FFmpeg's frame-threaded decoders, libx264's frame and lookahead threads,
Numba's pool. Their time is the stages' time. Timing the stages' calls alone missed it: x264's
``encode`` returns at once while its threads, sharing the cores, do the work, so a 720p clip on
2 cores read ``encode 1%`` where x264 took about a third of the CPU (issue 30).

How each thread is counted (Linux; elsewhere :attr:`StageClock.available` is False and the
video summary keeps the pipeline's waits, :class:`~srcnn_fast.pipeline.StageTimes`):

* Each stage's Python thread names itself (``prctl(PR_SET_NAME)``: ``srcnn-decode``,
  ``srcnn-upscale``, ``srcnn-encode``) before it opens its codec or starts a pool, and a new
  thread inherits its creator's name: so libx264's threads carry ``srcnn-encode`` and a
  decoder's slice threads ``srcnn-decode``. FFmpeg names its frame-threaded decoders' threads
  itself (``av:h264:df0``): decode. Any other thread (a Numba pool started earlier by the
  caller) counts as upscale, the stage that uses it.
* The decode and encode stages' threads time themselves (``time.thread_time`` around each
  call: the decode thread ends before the last reading); every other thread's CPU time is
  read from ``/proc/self/task/TID/schedstat`` (nanoseconds) when the run starts and when it
  ends, and counts for the stage its name says.
* Upscale is the rest of the process's CPU time over the run (``time.process_time``): the
  upscale thread and its pool, including threads that end before the last reading (GNU
  OpenMP gives each thread that starts a parallel region a team of its own, which ends with
  it: reading threads alone missed a third of a run's CPU time).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from .pipeline import close_iterator

T = TypeVar("T")
U = TypeVar("U")

STAGES = ("decode", "upscale", "encode")
#: The OS thread name of each stage (at most 15 bytes: the kernel's limit).
THREAD_NAMES = {stage: f"srcnn-{stage}" for stage in STAGES}
#: The names FFmpeg gives its frame-threaded decoders' threads start so ("av:h264:df0").
FFMPEG_PREFIX = "av:"

_PR_SET_NAME, _PR_GET_NAME = 15, 16
_TASKS = Path("/proc/self/task")


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def thread_name() -> str | None:
    """The calling thread's OS name (None where it cannot be read)."""
    if _PRCTL is None:
        return None
    buffer = ctypes.create_string_buffer(16)
    if _PRCTL(_PR_GET_NAME, buffer, 0, 0, 0) != 0:
        return None
    return buffer.value.decode(errors="replace")


def set_thread_name(name: str) -> None:
    """Name the calling OS thread (15 bytes kept); threads it starts later inherit the name."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def stage_of(name: str) -> str:
    """The stage a thread of this OS name works for (see the module docstring)."""
    if name == THREAD_NAMES["decode"] or name.startswith(FFMPEG_PREFIX):
        return "decode"
    if name == THREAD_NAMES["encode"]:
        return "encode"
    return "upscale"


def _thread_seconds(tid: str) -> tuple[str, float] | None:
    """(OS name, CPU seconds so far) of one of this process's threads; None if it is gone."""
    try:
        name = (_TASKS / tid / "comm").read_text().strip()
        try:
            seconds = int((_TASKS / tid / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):  # a kernel without schedstats: ticks
            fields = (_TASKS / tid / "stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
    return name, seconds


def _threads() -> dict[int, tuple[str, float]]:
    found = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(_TASKS):
            reading = _thread_seconds(tid)
            if reading is not None:
                found[int(tid)] = reading
    return found


class StageClock:
    """CPU seconds per stage over one run: made when the run starts; :meth:`source`,
    :meth:`work` and :meth:`own` run each stage's Python code under its name; :meth:`stop`
    reads every other thread and returns the seconds per stage (None: not measurable here)."""

    def __init__(self) -> None:
        self.available = _PRCTL is not None and _TASKS.is_dir()
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._self_timed: set[int] = set()
        self._lock = threading.Lock()
        self._start = _threads() if self.available else {}
        self._process_start = time.process_time()

    @contextlib.contextmanager
    def own(self, stage: str) -> Iterator[None]:
        """Run a block of ``stage``'s Python code in the calling thread, under the stage's
        thread name (so threads it starts are the stage's), and count its CPU time. The name
        is the thread's own again after the block: the caller's may be the main thread, whose
        name is the process's (``ps``, ``top``, ``killall``)."""
        previous = thread_name()
        set_thread_name(THREAD_NAMES[stage])
        with self._lock:
            self._self_timed.add(threading.get_native_id())
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            if previous is not None:
                set_thread_name(previous)
            with self._lock:
                self.seconds[stage] += spent

    def source(self, items: Iterable[T], stage: str = "decode") -> Iterator[T]:
        """``items``, each produced (in the thread that iterates) as ``stage``'s work."""
        iterator = iter(items)
        try:
            while True:
                with self.own(stage):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        finally:
            close_iterator(iterator)  # closing this closes the decoder it wraps, now

    def work(self, function: Callable[[T], U], stage: str = "upscale") -> Callable[[T], U]:
        """``function``, each call counted as ``stage``'s work."""

        def timed(item: T) -> U:
            with self.own(stage):
                return function(item)

        return timed

    def stop(self) -> dict[str, float] | None:
        """Seconds per stage since the clock was made: decode and encode, their threads' own
        time plus every other thread's that carries their name (:func:`stage_of`); upscale,
        the rest of the process's."""
        if not self.available:
            return None
        process = time.process_time() - self._process_start
        spent = {stage: self.seconds[stage] for stage in ("decode", "encode")}
        for tid, (name, seconds) in _threads().items():
            stage = stage_of(name)
            if tid in self._self_timed or stage == "upscale":
                continue
            before = self._start.get(tid, (name, 0.0))[1]
            spent[stage] += max(0.0, seconds - before)
        spent["upscale"] = max(0.0, process - spent["decode"] - spent["encode"])
        return {stage: spent[stage] for stage in STAGES}
