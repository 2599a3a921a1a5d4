"""Many files in one run on this machine: the jobs that :mod:`srcnn_fast.jobs` planned, with
decoding and encoding overlapped with compute. Every output is written atomically
(``imagefile.write_image``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageError, OutputError, SrcnnError
from .imagefile import (
    Metadata,
    check_writable_format,
    pillow_quietly,
    read_image_file,
    write_image,
    write_image_bands,
)
from .jobs import Job, TargetRules, failure_message
from .jpeg import image_hint

if TYPE_CHECKING:
    from .infer import Upscaler

#: Default largest input, in pixels (a decompression-bomb guard: a tiny file can declare a
#: gigapixel image, and decoding allocates it whole). 500 Mpx admits 20000 x 20000, which
#: tiling upscales in bounded memory; --max-pixels raises it.
DEFAULT_MAX_PIXELS = 500_000_000


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.done} upscaled"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (output exists)")
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


def check_folder_writable(target: Path, probed: dict[Path, str | None]) -> None:
    """Refuse, before any work, an output whose folder cannot take new files.

    The folder (or, where it is still to be made, the nearest existing folder above it) is
    probed by creating an anonymous file in it: permissions, read-only mounts and ACLs all show,
    as they would only after the image was computed. ``probed`` caches the answer per folder.
    """
    folder = target.parent
    if folder not in probed:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        problem = None
        if not existing.is_dir():
            problem = f"{existing} is not a folder"
        else:
            try:
                with tempfile.TemporaryFile(dir=existing):
                    pass
            except OSError as exc:
                problem = f"{existing}: {exc.strerror or exc}"
        probed[folder] = problem
    if probed[folder] is not None:
        raise OutputError(f"{target}: cannot write the output ({probed[folder]})")


def check_size(path: Path, max_pixels: int) -> None:
    """Refuse, from the header alone, an image of more than ``max_pixels`` pixels."""
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own limit replaces Pillow's bomb check
        with pillow_quietly(), Image.open(path) as image:
            width, height = image.size
    except Exception:  # Pillow cannot read the header: OpenCV will decide
        return
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"{path}: image is {width}x{height} = {pixels:,} pixels, over the "
            f"{max_pixels:,}-pixel limit (raise it with --max-pixels)"
        )


def run_jobs(
    jobs: list[Job],
    upscaler: Upscaler,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
    report: Callable[[str], None] | None = None,
    on_done: Callable[[Job], None] | None = None,
) -> Summary:
    """Upscale every job: the next file decodes and the last one encodes while one computes.

    An image large enough to be tiled is written band by band as it is computed instead, so
    its output never exists whole in memory (for PNG). One failing file never stops the
    others; its message is reported and counted.
    """
    summary = Summary()
    start = time.perf_counter()
    report = report or (lambda message: print(message, file=sys.stderr))
    #: What may fail for one file without stopping the others (anything else is a bug).
    per_file = (SrcnnError, OSError, MemoryError)

    def fail(exc: BaseException, job: Job) -> None:
        message = failure_message(exc, job.source)
        summary.failed += 1
        summary.errors.append(message)
        report(message)

    rules = TargetRules({job.source.resolve() for job in jobs}, overwrite, skip_existing)
    probed: dict[Path, str | None] = {}
    runnable: list[Job] = []
    for job in jobs:
        try:
            if not rules.admit(job.target.resolve(), str(job.target), job.target.exists):
                summary.skipped += 1
                continue
            check_writable_format(job.target)
            check_folder_writable(job.target, probed)
            runnable.append(job)
        except per_file as exc:
            fail(exc, job)

    def load(job: Job) -> tuple[np.ndarray, Metadata]:
        check_size(job.source, max_pixels)
        return read_image_file(job.source)

    def make_folder(job: Job) -> None:
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"{job.target.parent}: cannot create the folder ({exc.strerror or exc})"
            ) from None

    def save(job: Job, image: np.ndarray, metadata: Metadata) -> None:
        make_folder(job)
        # overwrite as asked, not True: an output that appeared since the check above (a
        # second run, another program) is refused at the rename, not replaced.
        write_image(job.target, image, overwrite=overwrite, metadata=metadata)

    def upscale(job: Job, image: np.ndarray, metadata: Metadata) -> Future:
        channels = 1 if image.ndim == 2 else image.shape[2]
        check_writable_format(job.target, channels, image.dtype)  # before the work
        # The hint: "auto" picks the weights by what the file is (a JPEG's own quality).
        if upscaler.tile_size(image) == 0:
            return io.submit(save, job, upscaler(image, hint=image_hint(job.source)), metadata)
        make_folder(job)
        bands = upscaler.upscale_bands(image, hint=image_hint(job.source))
        shape = upscaler.output_shape(image)
        write_image_bands(job.target, shape, image.dtype, bands, overwrite, metadata)
        done: Future = Future()
        done.set_result(None)
        return done

    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show and runnable:
        from tqdm import tqdm

        bar = tqdm(total=len(runnable), unit="image", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=2) as io:
        pending_reads: dict[int, Future] = {}
        writes: list[tuple[Job, Future]] = []  # encoded in the background, checked at the end
        for i, job in enumerate(runnable):
            if i not in pending_reads:
                pending_reads[i] = io.submit(load, job)
            if i + 1 < len(runnable):
                pending_reads[i + 1] = io.submit(load, runnable[i + 1])
            try:
                image, metadata = pending_reads.pop(i).result()
                writes.append((job, upscale(job, image, metadata)))
            except per_file as exc:
                fail(exc, job)
            if bar is not None:
                bar.update(1)
        for job, future in writes:
            try:
                future.result()
                summary.done += 1
                if on_done is not None:
                    on_done(job)
            except per_file as exc:
                fail(exc, job)
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
