"""The job planner, before any pixel is read: which files the inputs name, each output's name
and place, and which outputs are refused or skipped. The local run (:mod:`srcnn_fast.batch`)
and the Ray run (:mod:`srcnn_fast.distributed`, which lists URIs with pyarrow) both use it.

Naming: ``NAME_xS.EXT`` beside each input, or under ``-o DIR`` with the input folders' tree
mirrored; a folder's own earlier outputs (``*_xS.*``) are not taken as inputs again, so names
never double up.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import TypeVar

from .errors import OutputError, UsageError
from .imagefile import IMAGE_EXTENSIONS

_GLOB = re.compile(r"[*?\[]")
#: A listed file: a local Path, or a filesystem's own path string (pyarrow).
P = TypeVar("P", bound="str | PurePath")


@dataclass
class Job:
    source: Path
    target: Path


# --- names and what counts as an input ---------------------------------------------------


def output_name(name: str | PurePath, scale: int) -> str:
    """``NAME_xS.EXT``: the output's file name for the input file ``name``."""
    path = PurePosixPath(name)
    return f"{path.stem}_x{scale}{path.suffix}"


#: The hidden folder an unfinished video keeps its segments in, beside its output
#: (:class:`srcnn_fast.segments.WorkFolder`): ``.clip_x2.mp4.srcnn-work``.
WORK_FOLDER_SUFFIX = ".srcnn-work"


def is_our_output(name: str | PurePath, scale: int) -> bool:
    """Whether a file is named as an output of this scale, or lies in a video's work folder:
    never taken as an input again."""
    path = PurePosixPath(name)
    return path.stem.endswith(f"_x{scale}") or any(
        part.endswith(WORK_FOLDER_SUFFIX) for part in path.parts[:-1]
    )


def folder_images(
    paths: Iterable[P], scale: int, also: Callable[[P], bool] | None = None
) -> list[P]:
    """The files listed in a folder that are inputs (an image extension, or another file that
    ``also`` admits: a video; not one of our outputs), in path order (segment by segment, as
    pathlib sorts)."""
    return sorted(
        (
            p
            for p in paths
            if not is_our_output(p, scale)
            and (
                PurePosixPath(p).suffix.lower() in IMAGE_EXTENSIONS
                or (also is not None and also(p))
            )
        ),
        key=PurePosixPath,
    )


def glob_inputs(matches: Iterable[str], scale: int) -> list[str]:
    """The files a wildcard matched that are inputs (all but our outputs: the pattern chose
    the extensions), in string order."""
    return sorted(m for m in matches if not is_our_output(m, scale))


def no_images(folder: str | PurePath, recursive: bool) -> str:
    hint = "" if recursive else " (use -r for sub-folders)"
    return f"{folder}: no images in this folder{hint}"


def no_match(pattern: str) -> str:
    return f"{pattern}: no file matches this pattern"


def no_such_file(name: str | PurePath) -> str:
    return f"{name}: no such file or folder"


def failure_message(exc: BaseException, source: str | PurePath | None = None) -> str:
    """The one-line message for a file that failed: ours as raised; an OSError the library
    did not expect (a name too long, a folder that cannot be searched) with the path it names;
    running out of memory with the input that needed it."""
    where = source
    if isinstance(exc, MemoryError):
        detail = f"out of memory ({str(exc) or 'allocation failed'}; try a smaller --tile)"
    elif isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else where
        detail = exc.strerror or str(exc)
    else:
        return str(exc)
    return detail if where is None else f"{where}: {detail}"


# --- -o --------------------------------------------------------------------------------------


def _is_dir(path: str | PurePath) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:  # a name the file system refuses (too long) is no folder
        return False


def names_folder(output: str, is_dir: Callable[[str], bool] = _is_dir) -> bool:
    """Whether ``-o`` names a folder: written as one (a trailing separator: how a new folder
    is named) or an existing one (``is_dir`` asks its filesystem; default: a local path)."""
    return output.endswith(("/", os.sep)) or is_dir(output)


def check_output_option(output: str, several: bool, names_file: bool) -> None:
    """Refuse an ``-o`` that cannot mean what the run needs, before any work.

    ``several``: the run has more than one output, so ``-o`` must be a folder; ``names_file``:
    ``output`` is an existing file (not a folder). A name with an image extension is taken for
    a file, one without for neither: a trailing separator is how a new folder is named.
    """
    if names_folder(output):
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


# --- local inputs ----------------------------------------------------------------------------


def collect_jobs(
    inputs: Iterable[str],
    scale: int,
    out: str | None,
    recursive: bool,
    also: Callable[[Path], bool] | None = None,
) -> tuple[list[Job], list[str]]:
    """Jobs for local inputs (files, folders, globs), and one message per input that names
    nothing usable.

    ``out`` is -o as typed: a folder if it exists as one or ends with a separator, or if
    there is more than one input; else the output file of the single input file. ``also``
    admits files without an image extension from folders (videos, for the CLI).
    """
    inputs = list(inputs)
    found: list[tuple[Path, Path]] = []  # (file, the folder its output path is relative to)
    problems: list[str] = []
    for arg in inputs:
        try:
            found += _files_of(arg, recursive, scale, problems, also)
        except OSError as exc:  # e.g. a name too long for the file system
            problems.append(failure_message(exc))
    # One file named on its own: -o may name the output file itself.
    out_file = (
        out is not None
        and len(inputs) == 1
        and len(found) == 1
        and found[0][0] == Path(inputs[0])
        and not names_folder(out)
    )
    jobs = []
    for source, root in found:
        name = output_name(source, scale)
        if out is None:
            target = source.with_name(name)
        elif out_file:
            target = Path(out)
        else:
            target = Path(out) / source.parent.relative_to(root) / name
        jobs.append(Job(source, target))
    return jobs, problems


def _files_of(
    arg: str,
    recursive: bool,
    scale: int,
    problems: list[str],
    also: Callable[[Path], bool] | None,
) -> list[tuple[Path, Path]]:
    """The (file, root) pairs that one input names; a message in ``problems`` if none."""
    path = Path(arg)
    if path.is_dir():
        listing = path.rglob("*") if recursive else path.iterdir()
        files = [p for p in folder_images(listing, scale, also) if p.is_file()]
        if not files:
            problems.append(no_images(path, recursive))
        return [(f, path) for f in files]
    if path.exists():
        return [(path, path.parent)]
    if _GLOB.search(arg):
        files = [Path(m) for m in glob_inputs(glob.glob(arg, recursive=True), scale)]
        files = [f for f in files if f.is_file()]
        if not files:
            problems.append(no_match(arg))
        root = Path(_GLOB.split(arg, maxsplit=1)[0] or ".")
        root = root if root.is_dir() else root.parent
        return [(f, root) for f in files]
    problems.append(no_such_file(path))
    return []


# --- outputs ---------------------------------------------------------------------------------


class TargetRules:
    """The refusals and skips of one run's outputs, checked in this order: an output that
    would replace an input, one that another input of the run already writes, then one that
    exists (skipped with ``skip_existing``, replaced with ``overwrite``, else refused).

    Keys say when two names are one file (a resolved local path; a filesystem and a path).
    """

    def __init__(self, inputs: Iterable[Hashable], overwrite: bool, skip_existing: bool) -> None:
        self.inputs = set(inputs)
        self.planned: set[Hashable] = set()
        self.overwrite = overwrite
        self.skip_existing = skip_existing

    def admit(self, key: Hashable, shown: str, exists: Callable[[], bool]) -> bool:
        """True: write this output; False: skip it. Raises OutputError for one refused.
        ``exists`` is asked last: only an output that passed the other rules is looked up."""
        if key in self.inputs:
            raise OutputError(f"{shown}: refusing to overwrite an input image")
        if key in self.planned:
            raise OutputError(f"{shown}: another input of this run already writes it")
        self.planned.add(key)
        if not exists():
            return True
        if self.skip_existing:
            return False
        if not self.overwrite:
            raise OutputError(f"{shown}: already exists (use --overwrite or --skip-existing)")
        return True
