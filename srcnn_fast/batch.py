"""Many files in one run: expanding inputs (files, folders, globs) into jobs, and running them
with decoding and encoding overlapped with compute.

Naming: ``NAME_xS.EXT`` beside each input, or under ``-o DIR`` with the input folders' tree
mirrored; a folder's own earlier outputs (``*_xS.*``) are not taken as inputs again, so names
never double up. Every output is written atomically (``imagefile.write_image``).
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from .errors import ImageError, OutputError, SrcnnError, UsageError
from .imagefile import (
    IMAGE_EXTENSIONS,
    Metadata,
    check_writable_format,
    pillow_quietly,
    read_image_file,
    write_image,
    write_image_bands,
)

if TYPE_CHECKING:
    from .infer import Upscaler

#: Default largest input, in pixels (a decompression-bomb guard: a tiny file can declare a
#: gigapixel image, and decoding allocates it whole). 500 Mpx admits 20000 x 20000, which
#: tiling upscales in bounded memory; --max-pixels raises it.
DEFAULT_MAX_PIXELS = 500_000_000
_GLOB = re.compile(r"[*?\[]")


@dataclass
class Job:
    source: Path
    target: Path


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


def _failure(exc: BaseException, job: Job | None = None) -> str:
    """The one-line message for a file that failed: ours as raised; an OSError the library
    did not expect (a name too long, a folder that cannot be searched) with the path it names;
    running out of memory with the input that needed it."""
    where = job.source if job is not None else None
    if isinstance(exc, MemoryError):
        detail = f"out of memory ({str(exc) or 'allocation failed'}; try a smaller --tile)"
    elif isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else where
        detail = exc.strerror or str(exc)
    else:
        return str(exc)
    return detail if where is None else f"{where}: {detail}"


def _is_our_output(path: Path, scale: int) -> bool:
    return path.stem.endswith(f"_x{scale}")


def _images_in(folder: Path, recursive: bool, scale: int) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in candidates
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not _is_our_output(p, scale)
    )


def collect_jobs(
    inputs: Iterable[str],
    scale: int,
    out: str | None,
    recursive: bool,
) -> tuple[list[Job], list[str]]:
    """Jobs for the inputs, and one message per input that names nothing usable.

    ``out`` is -o as typed: a folder if it exists as one or ends with a separator, or if
    there is more than one input; else the output file of the single input file.
    """
    inputs = list(inputs)
    found: list[tuple[Path, Path]] = []  # (file, the folder its output path is relative to)
    problems: list[str] = []
    for arg in inputs:
        try:
            found += _files_of(arg, recursive, scale, problems)
        except OSError as exc:  # e.g. a name too long for the file system
            problems.append(_failure(exc))
    # One file named on its own: -o may name the output file itself.
    out_file = (
        out is not None
        and len(inputs) == 1
        and len(found) == 1
        and found[0][0] == Path(inputs[0])
        and not out.endswith(("/", os.sep))
        and not _is_dir(Path(out))
    )
    jobs = []
    for source, root in found:
        name = f"{source.stem}_x{scale}{source.suffix}"
        if out is None:
            target = source.with_name(name)
        elif out_file:
            target = Path(out)
        else:
            target = Path(out) / source.parent.relative_to(root) / name
        jobs.append(Job(source, target))
    return jobs, problems


def check_output_option(output: str, several: bool, names_file: bool) -> None:
    """Refuse an ``-o`` that cannot mean what the run needs, before any work.

    ``several``: the run has more than one output, so ``-o`` must be a folder; ``names_file``:
    ``output`` is an existing file (not a folder). A name with an image extension is taken for
    a file, one without for neither: a trailing separator is how a new folder is named.
    """
    is_folder = output.endswith(("/", os.sep)) or _is_dir(Path(output))
    if is_folder:
        return
    suffix = PurePosixPath(output).suffix.lower()
    if several and names_file:
        raise UsageError(f"{output}: several inputs need -o to name a folder, and this is a file")
    if several and suffix in IMAGE_EXTENSIONS:
        raise UsageError(
            f"{output}: several inputs need -o to name a folder, not a {suffix} file "
            f"(write {output.removesuffix(PurePosixPath(output).suffix)}/ for a new folder)"
        )
    if not several and not names_file and not suffix:
        raise UsageError(
            f"{output}: -o names neither an image file (add an extension: "
            f"{', '.join(IMAGE_EXTENSIONS)}) nor a folder (end it with / to make one)"
        )


def _files_of(
    arg: str, recursive: bool, scale: int, problems: list[str]
) -> list[tuple[Path, Path]]:
    """The (file, root) pairs that one input names; a message in ``problems`` if none."""
    path = Path(arg)
    if path.is_dir():
        files = _images_in(path, recursive, scale)
        if not files:
            problems.append(
                f"{path}: no images in this folder"
                + ("" if recursive else " (use -r for sub-folders)")
            )
        return [(f, path) for f in files]
    if path.exists():
        return [(path, path.parent)]
    if _GLOB.search(arg):
        matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
        files = [m for m in matches if m.is_file() and not _is_our_output(m, scale)]
        if not files:
            problems.append(f"{arg}: no file matches this pattern")
        root = Path(re.split(r"[*?\[]", arg, maxsplit=1)[0] or ".")
        root = root if root.is_dir() else root.parent
        return [(f, root) for f in files]
    problems.append(f"{path}: no such file or folder")
    return []


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name the file system refuses (too long) is no folder
        return False


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
        message = _failure(exc, job)
        summary.failed += 1
        summary.errors.append(message)
        report(message)

    inputs = {job.source.resolve() for job in jobs}
    planned: set[Path] = set()
    probed: dict[Path, str | None] = {}
    runnable: list[Job] = []
    for job in jobs:
        try:
            target = job.target.resolve()
            if target in inputs:
                raise OutputError(f"{job.target}: refusing to overwrite an input image")
            if target in planned:
                raise OutputError(f"{job.target}: another input of this run already writes it")
            planned.add(target)
            if job.target.exists():
                if skip_existing:
                    summary.skipped += 1
                    continue
                if not overwrite:
                    raise OutputError(
                        f"{job.target}: already exists (use --overwrite or --skip-existing)"
                    )
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
        # source: "auto" picks the weights by what the file is (a JPEG's own quality).
        if upscaler.tile_size(image) == 0:
            return io.submit(save, job, upscaler(image, source=job.source), metadata)
        make_folder(job)
        bands = upscaler.upscale_bands(image, source=job.source)
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
