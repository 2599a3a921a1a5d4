"""The pipeline's stage threads never outlive it, Ctrl-C or not (issue 30: Ctrl-C during a
video run sometimes ended in SIGSEGV, exit -11, instead of ``error: interrupted``, exit 130).

The cause, caught with faulthandler and a traced ``Thread.start``: the SIGINT arrived while
``Thread.start`` waited for the new worker thread to run (a long wait on a loaded machine), so
the KeyboardInterrupt left ``pipelined`` before its ``try``/``finally``: nothing stopped or
joined the stage threads, the caller closed the input container, and the producer went on
reading it (``av_read_frame`` on a freed context) while the interpreter exited. These tests
send a real SIGINT at those moments (``signal.raise_signal``: Python's own handling, as a
Ctrl-C gets) and require the threads gone and the source closed once the interrupt is raised.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator

import pytest

from srcnn_fast import pipeline
from srcnn_fast.pipeline import pipelined

STAGE_THREADS = ("srcnn-produce", "srcnn-work")


@pytest.fixture()
def stage_threads() -> Callable[[], list[str]]:
    """The stage threads started since the test began that still run (a failed test's leave
    the next test alone)."""
    before = set(threading.enumerate())

    def running() -> list[str]:
        now = set(threading.enumerate()) - before
        return [t.name for t in now if t.name in STAGE_THREADS and t.is_alive()]

    return running


class _Source:
    """An endless source (a decoder) that records where and whether it was closed."""

    def __init__(self) -> None:
        self.closed_in: str | None = None

    def __iter__(self) -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            self.closed_in = threading.current_thread().name


@pytest.fixture(autouse=True)
def _default_sigint():
    """Python's own SIGINT handling, as the CLI runs with (the tests raise real SIGINTs)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    assert threading.current_thread() is threading.main_thread()
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("during", STAGE_THREADS)
def test_ctrl_c_while_a_stage_thread_starts_stops_both(monkeypatch, stage_threads, during):
    """SIGINT inside ``Thread.start`` (after the thread runs, before start returns: where the
    crash's KeyboardInterrupt came from): raised in the caller, with no stage thread left
    running and the source closed in the producer's thread."""
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        start(thread)
        if thread.name == during:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    source = _Source()
    items = pipelined(source, lambda x: x, depth=2)
    with pytest.raises(KeyboardInterrupt):
        next(items)
    assert stage_threads() == [], "a stage thread outlived the interrupted pipeline"
    assert source.closed_in == "srcnn-produce"


def test_second_ctrl_c_while_stopping_still_joins_the_threads(monkeypatch, stage_threads):
    """Ctrl-C pressed again while the pipeline joins its threads (the first Ctrl-C closing
    it): the threads are joined all the same, then KeyboardInterrupt is raised."""
    join = threading.Thread.join
    interrupts = []

    def interrupted_join(thread: threading.Thread, timeout: float | None = None) -> None:
        if thread.name in STAGE_THREADS and not interrupts:
            interrupts.append(thread.name)
            signal.raise_signal(signal.SIGINT)
        join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    source = _Source()
    items = pipelined(source, lambda x: x, depth=2)
    assert next(items) == 0
    with pytest.raises(KeyboardInterrupt):
        items.close()
    assert interrupts, "the join was never reached"
    assert stage_threads() == [], "a stage thread outlived the interrupted pipeline"
    assert source.closed_in == "srcnn-produce"


def test_closing_early_closes_the_source_in_its_thread(stage_threads):
    """A ``break`` out of the loop: the source's ``finally`` has run, in the producer's thread
    (where a decoder's generator was iterated), by the time the caller goes on."""
    source = _Source()
    for item in pipelined(source, lambda x: x * 2, depth=2):
        if item >= 4:
            break
    assert stage_threads() == []
    assert source.closed_in == "srcnn-produce"


def test_serial_run_closes_its_source_too():
    source = _Source()
    items = pipelined(source, lambda x: x, overlap=False)
    assert next(items) == 0
    items.close()
    assert source.closed_in == threading.current_thread().name


def test_interrupts_are_held_only_in_the_main_thread():
    """Elsewhere Python delivers no signal, so nothing is swapped: the handler stays as it is."""
    seen = []

    def look() -> None:
        with pipeline._interrupts_held():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
