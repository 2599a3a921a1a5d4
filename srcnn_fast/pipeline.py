"""Three overlapping stages: produce -> work -> consume, with a few items in flight.

:func:`pipelined` runs the producer (an iterator: a decoder) and the work (upscaling) in two
threads of their own, and hands the results to the caller's loop (the consumer: an encoder),
each pair joined by a bounded queue. Throughput is then set by the slowest stage and memory by
the queue depth, never by the length of the stream. Decoders, encoders (FFmpeg), Numba kernels
and CUDA launches all release the GIL, so the stages really run at the same time.

:class:`StageTimes` says which stage held the others back: the worker's time is split into
waiting for input (the producer was the bottleneck), working, and waiting for room to put its
result (the consumer was). ``overlap=False`` runs the three one after another in the caller's
thread (each may then use every core: the floor to compare the overlapped run with on a CPU).

The stage threads never outlive the generator: they are started and stopped with Ctrl-C held
back (:func:`_interrupts_held`), and the producer closes its source itself. A Ctrl-C that
arrived while ``Thread.start`` waited for a new thread (a long wait on a loaded machine) left
both threads running with nobody to stop them: the caller closed the input container and the
producer read it on (``av_read_frame`` on a freed context: SIGSEGV at exit instead of exit
130, issue 30).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: Seconds a blocked put or get waits before it checks whether the run was stopped.
_POLL = 0.1


@dataclass
class StageTimes:
    """Seconds the middle stage spent waiting for input, working, and waiting for room."""

    waiting_input: float = 0.0
    working: float = 0.0
    waiting_output: float = 0.0
    items: int = 0

    def shares(self) -> tuple[float, float, float]:
        """(producer, work, consumer): each stage's share of the time it was the bottleneck."""
        total = self.waiting_input + self.working + self.waiting_output
        if total <= 0:
            return (0.0, 0.0, 0.0)
        return (self.waiting_input / total, self.working / total, self.waiting_output / total)


class _Failed(Generic[T]):
    """An exception raised in a stage's thread, carried to the caller's."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class _Stopped(Exception):
    """The caller closed the pipeline: a stage thread leaves quietly."""


def _put(q: queue.Queue, item: object, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Run a block that must not be cut short by Ctrl-C: a SIGINT that arrives meanwhile is
    handled (KeyboardInterrupt raised) when the block ends. Python runs signal handlers in the
    main thread alone, so elsewhere, or where SIGINT has no Python handler, nothing is held."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    caught: list[tuple[int, object]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[0])  # the default handler raises KeyboardInterrupt here


def close_iterator(iterator: Iterator[object]) -> None:
    """Close a generator (its ``finally`` blocks run now, in this thread); others as they are."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def pipelined(
    source: Iterable[T],
    work: Callable[[T], U],
    depth: int = 2,
    times: StageTimes | None = None,
    overlap: bool = True,
) -> Iterator[U]:
    """``work(item)`` for each item of ``source``, in order, as a generator.

    With ``overlap`` the source is iterated in one thread and ``work`` runs in another, at
    most ``depth`` items ahead of the caller in each queue. An exception in either stage is
    raised in the caller; closing the generator (``break``, an exception, Ctrl-C in the
    caller's loop) stops both threads before it returns.
    """
    times = times if times is not None else StageTimes()
    if not overlap:
        yield from _serial(source, work, times)
        return
    inbox: queue.Queue = queue.Queue(maxsize=depth)
    outbox: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    items = iter(source)

    def produce() -> None:
        try:
            for item in items:
                _put(inbox, item, stop)
            _put(inbox, _END, stop)
        except _Stopped:
            pass
        except BaseException as exc:
            with contextlib.suppress(_Stopped):
                _put(inbox, _Failed(exc), stop)
        finally:
            # In this thread, before the caller can go on: a decoder's generator releases
            # what it holds of a container while the container is still open.
            with contextlib.suppress(Exception):
                close_iterator(items)

    def transform() -> None:
        try:
            while True:
                started = time.perf_counter()
                item = _get(inbox, stop)
                got = time.perf_counter()
                times.waiting_input += got - started
                if item is _END or isinstance(item, _Failed):
                    _put(outbox, item, stop)
                    return
                result = work(item)
                done = time.perf_counter()
                times.working += done - got
                times.items += 1
                _put(outbox, result, stop)
                times.waiting_output += time.perf_counter() - done
        except _Stopped:
            pass
        except BaseException as exc:
            with contextlib.suppress(_Stopped):
                _put(outbox, _Failed(exc), stop)

    threads = [
        threading.Thread(target=produce, name="srcnn-produce", daemon=True),
        threading.Thread(target=transform, name="srcnn-work", daemon=True),
    ]
    running: list[threading.Thread] = []
    try:
        # Started with Ctrl-C held: interrupted inside start(), a thread may run or not, and
        # one that runs must be in ``running``, to be stopped and joined below.
        with _interrupts_held():
            for thread in threads:
                thread.start()
                running.append(thread)
        while True:
            result = outbox.get()
            if result is _END:
                return
            if isinstance(result, _Failed):
                raise result.error
            yield result
    finally:
        stop.set()
        # Joined to the end, a second Ctrl-C held meanwhile: each stage checks the stop flag
        # between items (a frame: well under a second). A thread left behind went on using
        # the caller's decoder and container after the caller had closed them.
        with _interrupts_held():
            for thread in running:
                thread.join()


def _serial(source: Iterable[T], work: Callable[[T], U], times: StageTimes) -> Iterator[U]:
    """The same stages one after another; the times are each stage's own."""
    items = iter(source)
    try:
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            got = time.perf_counter()
            times.waiting_input += got - started
            result = work(item)
            done = time.perf_counter()
            times.working += done - got
            times.items += 1
            yield result
            times.waiting_output += time.perf_counter() - done
    finally:
        close_iterator(items)  # as the overlapped run's producer does
