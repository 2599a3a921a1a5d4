"""The video summary's ``bottleneck: decode x%, upscale y%, encode z%`` (issue 30 item 1): each
stage's share of the CPU time, the work in the codecs' own threads included (x264's frame and
lookahead threads, FFmpeg's decoder threads, Numba's pool)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_video import make_clip

from srcnn_fast import stage_cpu
from srcnn_fast.infer import Upscaler
from srcnn_fast.stage_cpu import StageClock, set_thread_name, stage_of, thread_name

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
linux = pytest.mark.skipif(not StageClock().available, reason="thread names and /proc: Linux")


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_threads_are_counted_by_the_stage_that_started_them() -> None:
    assert stage_of("srcnn-decode") == stage_of("av:h264:df0") == "decode"
    assert stage_of("srcnn-encode") == "encode"
    assert stage_of("python") == stage_of("srcnn-upscale") == "upscale"


@linux
def test_a_helper_thread_counts_for_the_stage_that_started_it() -> None:
    """A thread started under a stage's name inherits it, as libx264's threads inherit the
    encoding thread's: its CPU time is the stage's, though the stage's own call returned at
    once (as x264's encode call does). Bounds: 0.3 s burnt, counted within 0.25..0.6 s."""
    clock, name = StageClock(), stage_cpu.thread_name()
    burnt, release = threading.Event(), threading.Event()

    def helper_work() -> None:
        _burn(0.3)
        burnt.set()
        release.wait(30)  # alive when the clock stops, as x264's threads are

    try:
        with clock.own("encode"):
            helper = threading.Thread(target=helper_work)
            helper.start()  # returns at once; the helper works on
        assert burnt.wait(30)
        seconds = clock.stop()
    finally:
        release.set()
        helper.join()
        if name is not None:
            stage_cpu.set_thread_name(name)
    assert seconds is not None
    assert 0.25 <= seconds["encode"] <= 0.6, seconds
    assert seconds["upscale"] < 0.1 and seconds["decode"] < 0.1, seconds


@linux
def test_threads_that_end_before_the_run_count_as_upscale() -> None:
    """The upscale thread's OpenMP team ends with the thread, before the clock stops: its
    time is the rest of the process's. Bounds: 0.3 s burnt, counted within 0.25..0.6 s."""
    clock, name = StageClock(), stage_cpu.thread_name()

    def stage() -> None:  # the pipeline's upscale thread, and a team thread it starts
        with clock.own("upscale"):
            team = threading.Thread(target=_burn, args=(0.3,))
            team.start()
            team.join()

    try:
        worker = threading.Thread(target=stage)
        worker.start()
        worker.join()
        seconds = clock.stop()
    finally:
        if name is not None:
            stage_cpu.set_thread_name(name)
    assert seconds is not None
    assert 0.25 <= seconds["upscale"] <= 0.6 and seconds["encode"] < 0.1, seconds


class _NearestUpscaler(Upscaler):
    """The upscale stage at almost no cost (each sample repeated), so the test measures the
    codecs alone: a real network's CPU time varies with the machine's load (NumPy's BLAS
    threads spin when contended), and under the suite's load it once read as much as x264's."""

    def upscale_planes(self, planes, bits=None, full_range=False, out=None, degradation=None):
        for plane, target in zip(planes, out, strict=True):
            h, w = target.shape
            target[:] = plane.repeat(self.scale, 0).repeat(self.scale, 1)[:h, :w]
        return list(out)


@linux
def test_a_slow_encoder_is_named_the_bottleneck(tmp_path: Path) -> None:
    """x264 at preset placebo on 640x448 frames: encoding takes most of the CPU, in x264's
    threads. The pipeline's waits alone read the upscale stage as the bottleneck here (the
    encode call returns at once, x264's threads work behind it)."""
    from srcnn_fast.model import Architecture, SRCNNWeights
    from srcnn_fast.video import upscale_video

    src, dst, weights = tmp_path / "in.mkv", tmp_path / "out.mp4", tmp_path / "w.npz"
    make_clip(src, width=320, height=224, frames=8, audio=False)
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(weights)
    up = _NearestUpscaler(weights=weights, backend="reference")
    summary = upscale_video(src, dst, up, codec="libx264", preset="placebo", progress=False)
    decode, upscale, encode = summary.shares()
    assert summary.cpu is not None and summary.frames == 8
    assert encode > 0.8 and encode > max(decode, upscale), (summary.line(), summary.cpu)
    assert f"encode {round(100 * encode)}%" in summary.line()


@pytest.mark.skipif(not StageClock().available, reason="thread names and /proc: Linux only")
def test_a_stage_block_gives_the_thread_its_name_back() -> None:
    """Threads started inside a stage's block inherit its name; the calling thread (the main
    thread names the process in ps and top) has its own again after the block."""
    saved = thread_name()
    try:
        set_thread_name("caller")
        clock = StageClock()
        seen = []
        with clock.own("encode"):
            worker = threading.Thread(target=lambda: seen.append(thread_name()))
            worker.start()
            worker.join()
            assert thread_name() == "srcnn-encode"
        assert seen == ["srcnn-encode"] and thread_name() == "caller"
    finally:
        set_thread_name(saved or "python")


def test_closing_a_timed_source_closes_what_it_wraps() -> None:
    """The pipeline's producer closes its source when the run stops: the decoder generator
    under the clock's wrapper is closed with it, at once (its ``finally`` runs while the
    caller's container is still open), not whenever it is garbage-collected."""
    closed = []

    def decoder():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    frames = decoder()
    timed = StageClock().source(frames)
    assert next(timed) == 0
    timed.close()
    assert closed == [True]
    assert frames.gi_frame is None  # finished, not just suspended
