"""Videos on a Ray cluster (``srcnn-fast upscale clip.mp4 --ray``): segments on the workers.

The driver plans each video as the local run does (:func:`srcnn_fast.video.plan_segmented`:
the same refusals, keyframe cuts, weights chosen once per stream from its quantiser, work
folder and resume record), so a rerun resumes whether the first run was local or on Ray.
The segments left become Ray tasks, handed out a worker's worth at a time; each is the local
run's own :func:`~srcnn_fast.video.encode_segment`: the worker decodes its segment from the
source path, upscales it and encodes it into the work folder under a temporary name, renamed
when complete. The driver records each segment as it comes back and joins a video (a remux,
on the driver) as soon as all of its segments are in.

Paths: sources, outputs and work folders are plain paths that every node sees at the same
place (a shared filesystem such as NFS on a multi-node cluster); URIs are for images only.

Failures: a worker that dies mid-segment (a killed process, a lost node) has its task retried
by Ray (:data:`TASK_RETRIES` times), on whichever worker is free; what the dead one left is a
temporary file that no record names, so it is never joined. A problem with the file itself
(one line from the video code) fails that video alone.

A video that goes in one pass (several video streams, MPEG-TS or AVI, ``--segment 0``) is one
task: the whole :func:`~srcnn_fast.video.upscale_video` on a worker.

Ray is imported inside functions only, as in :mod:`srcnn_fast.distributed`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .distributed import _srcnn_cause, plan_workers
from .errors import SrcnnError
from .infer import load_weights
from .pipeline import StageTimes
from .video import SegmentedRun, VideoSummary, encode_segment, plan_segmented, upscale_video

if TYPE_CHECKING:
    from .infer import Upscaler
    from .model import SRCNNWeights
    from .segments import Segment

__all__ = ["RayVideos", "run_videos"]

#: Times Ray runs a segment again after the worker running it died (its default for tasks).
TASK_RETRIES = 3


@dataclass(frozen=True)
class _Model:
    """What a worker builds its Upscaler from: the weights themselves (loaded on the driver,
    so the workers need no copy of the files) and the backend options."""

    weights: SRCNNWeights
    jpeg_weights: SRCNNWeights | None
    backend: str
    precision: str


@dataclass
class RayVideos:
    """What :func:`run_videos` ran on: the workers and the backends they reported."""

    workers: int = 0
    worker_kind: str = "CPU"
    backends: list[str] | None = None

    def on(self, backends: set[str]) -> str:
        """ " on 2 CPU workers (cpu backend)": the end of a video's line."""
        plural = "s" if self.workers != 1 else ""
        text = f" on {self.workers} {self.worker_kind} worker{plural}" if self.workers else ""
        return text + (f" ({', '.join(sorted(backends))} backend)" if backends else "")


# --- on the workers ------------------------------------------------------------------------

_UPSCALERS: dict[str, Upscaler] = {}


def _upscaler(token: str, model: _Model, cwd: str) -> Upscaler:
    """This run's Upscaler in this worker process, built by its first task (a worker process
    serves many tasks); the process moved to the driver's folder ``cwd``."""
    # Paths as the user named them (relative ones too): the messages name files as the local
    # run does. A node without that folder still reads absolute paths.
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    if token not in _UPSCALERS:
        from .infer import Upscaler

        _UPSCALERS.clear()
        _UPSCALERS[token] = Upscaler(
            model.weights.scale,
            model.weights,
            model.backend,
            model.precision,
            jpeg_weights=model.jpeg_weights,
        )
    return _UPSCALERS[token]


def _segment_task(
    token: str, model: _Model, cwd: str, run: SegmentedRun, segment: Segment
) -> tuple[dict[str, Any], StageTimes, dict[str, float] | None, list[str], str]:
    """One segment made on a worker: what the record keeps of it, the stages' waits and CPU
    seconds, notes, and the backend that ran it."""
    upscaler = _upscaler(token, model, cwd)
    own = VideoSummary(run.summary.source, run.segment_path(segment))
    stats = encode_segment(
        own.source, segment, own.target, upscaler, run.job, run.choices, own, None
    )
    return stats, own.times, own.cpu, own.notes, upscaler.backend_name


def _whole_task(
    token: str, model: _Model, cwd: str, src: Path, dst: Path, options: dict[str, Any]
) -> tuple[VideoSummary, str]:
    """A video that goes in one pass, made whole on a worker."""
    upscaler = _upscaler(token, model, cwd)
    summary = upscale_video(src, dst, upscaler, segment_seconds=0, progress=False, **options)
    return summary, upscaler.backend_name


# --- on the driver -------------------------------------------------------------------------


def _model(upscaler: Upscaler, runs: list[SegmentedRun | None], backend: str) -> _Model:
    """The driver's weights, and the JPEG-aware ones where a stream was given them."""
    jpeg = None
    for run in runs:
        for choice in (run.choices if run is not None else {}).values():
            if choice.weights == "jpeg" and jpeg is None:
                jpeg = load_weights(upscaler.weights_file(choice), upscaler.scale)
    if jpeg is None and upscaler.has_jpeg_weights and None in runs:
        # A one-pass video chooses on its worker: it may need them too.
        from .weights_choice import WeightsChoice

        jpeg = load_weights(upscaler.weights_file(WeightsChoice("jpeg", "")), upscaler.scale)
    return _Model(upscaler.weights, jpeg, backend, upscaler.precision)


def _add_times(total: StageTimes, part: StageTimes) -> None:
    total.waiting_input += part.waiting_input
    total.working += part.working
    total.waiting_output += part.waiting_output
    total.items += part.items


def _one_line(exc: BaseException, what: str) -> str:
    """A failed task as one line: the video code's own message, or what Ray said."""
    cause = _srcnn_cause(exc)
    if cause is not None:
        return str(cause)
    text = str(exc).strip().splitlines()
    return f"{what}: failed on the cluster ({text[0] if text else type(exc).__name__})"


def run_videos(
    jobs: list[Any],
    upscaler: Upscaler,
    *,
    options: dict[str, Any],
    backend: str = "auto",
    segment_seconds: float | None,
    num_workers: int | None = None,
    cpus_per_worker: int = 1,
    on_weights: Callable[[Any, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    on_result: Callable[[Any, VideoSummary | None, str | None, str], None],
    progress: bool = False,
) -> RayVideos:
    """Upscale each video job (``.source`` to ``.target``, as :mod:`srcnn_fast.jobs` names
    them) on the Ray cluster this process has joined.

    ``upscaler``: the driver's, which chooses the weights and whose weights the workers run
    (built with ``backend``, as asked: a worker builds its own with the same request);
    ``options``: :func:`~srcnn_fast.video.plan_segmented`'s (codec, crf, preset, overwrite).
    ``on_weights`` (the job, the line) and ``on_note``: as for the local run. ``on_result``
    gets each job as it is finished: its summary, or None and the one-line error (a problem
    planning it, a problem with the file on a worker, a segment that failed every retry),
    and what it ran on (" on 2 CPU workers (cpu backend)"; empty where nothing ran).
    ``progress``: a bar on stderr counting the tasks (segments, and videos made whole) done.
    """
    import ray

    started = time.perf_counter()
    runs: dict[int, SegmentedRun | None] = {}
    for index, job in enumerate(jobs):
        src, dst = job.source, job.target
        weights_line = None if on_weights is None else functools.partial(on_weights, job)
        try:
            runs[index] = plan_segmented(
                src,
                dst,
                upscaler,
                segment_seconds=segment_seconds,
                on_weights=weights_line,
                on_note=on_note,
                **options,
            )
        except SrcnnError as exc:
            on_result(job, None, str(exc), "")
        except OSError as exc:
            on_result(job, None, f"{exc.filename or src}: {exc.strerror or exc}", "")
    result = RayVideos()
    tasks: deque[tuple[int, Segment | None]] = deque()
    for index, run in runs.items():
        if run is None:
            tasks.append((index, None))
        else:
            tasks.extend((index, segment) for segment in run.todo())
    # A video whose segments were all finished by an earlier run is only joined.
    for index, run in list(runs.items()):
        if run is not None and not run.todo():
            _join(jobs[index], run, on_result, "")
            del runs[index]
    if not tasks:
        return result

    workers, resources = plan_workers(
        ray.cluster_resources(), backend, num_workers, cpus_per_worker
    )
    workers = min(workers, len(tasks))
    result.workers, result.worker_kind = workers, "GPU" if resources.get("num_gpus") else "CPU"
    threads = None if resources.get("num_gpus") else cpus_per_worker
    token, cwd = f"{id(upscaler)}-{started}", os.getcwd()
    model = ray.put(_model(upscaler, list(runs.values()), backend))
    options_of_tasks: dict[str, Any] = {"max_retries": TASK_RETRIES, **resources}
    if threads:
        # The upscale runs in the pipeline's own thread, where numba.set_num_threads from
        # the task's thread does not reach: the pool is sized when the worker process starts.
        options_of_tasks["runtime_env"] = {"env_vars": {"NUMBA_NUM_THREADS": str(threads)}}
    segment_task = ray.remote(_segment_task).options(**options_of_tasks)
    whole_task = ray.remote(_whole_task).options(**options_of_tasks)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="segment", desc="on Ray", dynamic_ncols=True)
    pending: dict[Any, tuple[int, Segment | None]] = {}
    failed: set[int] = set()
    discarded: set[int] = set()  # failed for a problem with the file: no work folder left
    backends: dict[int, set[str]] = {index: set() for index in runs}
    while tasks or pending:
        while tasks and len(pending) < workers:
            index, segment = tasks.popleft()
            if index in failed:
                continue
            run = runs[index]
            if run is None:
                job = jobs[index]
                ref = whole_task.remote(token, model, cwd, job.source, job.target, options)
            else:
                ref = segment_task.remote(token, model, cwd, run, segment)
            pending[ref] = (index, segment)
        if not pending:
            break
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        index, segment = pending.pop(ref)
        job, run = jobs[index], runs[index]
        if bar is not None:
            bar.update(1)
        try:
            answer = ray.get(ref)
        except Exception as exc:  # a problem with the file, or every retry died
            cause = _srcnn_cause(exc)
            # The input at fault: the folder removed (a rerun would meet it again).
            if run is not None and index not in discarded and cause and run.discard(cause):
                discarded.add(index)
            if index not in failed:
                failed.add(index)
                where = f"{job.source}" + ("" if segment is None else f": segment {segment.index}")
                on_result(job, None, _one_line(exc, where), "")
            continue
        if index in failed:
            if run is not None and index not in discarded:
                run.finish(segment, answer[0])  # kept for a rerun, as the local run keeps it
            continue
        backends[index].add(answer[-1])
        if run is None:
            for line in answer[0].weights if on_weights is not None else ():
                on_weights(job, line)  # chosen on the worker: said when it is done
            on_result(job, answer[0], None, result.on(backends[index]))
            continue
        stats, times, cpu, notes, _ = answer
        run.finish(segment, stats)
        _add_times(run.summary.times, times)
        run.summary.add_cpu(cpu)
        run.summary.notes.extend(notes)
        if not run.todo():
            _join(job, run, on_result, result.on(backends[index]))
    if bar is not None:
        bar.close()
    result.backends = sorted(set().union(*backends.values()))
    return result


def _join(job: Any, run: SegmentedRun, on_result: Callable[..., None], ran_on: str) -> None:
    """A video whose segments are all in, joined here, and handed on."""
    try:
        run.join()
    except SrcnnError as exc:
        on_result(job, None, str(exc), "")
        return
    on_result(job, run.summary, None, ran_on)
