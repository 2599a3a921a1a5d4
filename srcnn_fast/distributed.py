"""Upscale a collection on a Ray cluster (``srcnn-fast upscale ... --ray``), with Ray Data.

The driver decides everything that needs no pixels, with the local CLI's rules (the planner
both use, :mod:`srcnn_fast.jobs`): which files the inputs name (folders, globs, ``-r``), each
output's name (``NAME_xS.EXT``, the input tree mirrored under the output folder), and which
outputs are refused (an input, two inputs writing one output, an existing file without
``overwrite``) or skipped (``skip_existing``). The dataset then carries only (source,
target) pairs; a fixed pool of actors, each holding one :class:`~srcnn_fast.infer.Upscaler`
built once, reads, decodes, upscales, encodes and writes each file. Output bytes come from
the same ``decode_image`` / ``Upscaler`` / ``encode_image`` calls as the local CLI, so they
are the same bytes.

Where files live: a plain path is a local file, read and written by the workers at the same
path (a filesystem every node mounts, such as NFS, on a multi-node cluster); anything with a
scheme (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ``file://``) goes through pyarrow's
filesystems. In a URI, ``?`` starts the query (``s3://b/in?endpoint_override=...``), so only
``*``, ``**`` and ``[...]`` are wildcards there.

Failures: a file that cannot be read, decoded or written fails alone, as a row naming it and
the reason; the job goes on. A worker that dies (a killed process, a lost node) is restarted
by Ray and its unfinished files are done again: each output is written under a temporary
name and renamed (on object stores, one upload that appears whole), and the temporary name
is the same for every attempt of a run, so a retry replaces what a killed attempt left.

Ray and pyarrow are imported inside functions only: importing this module costs nothing and
works without the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import posixpath
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import DEFAULT_MAX_PIXELS, Summary, check_folder_writable, check_size
from .errors import BackendError, ImageError, OutputError, SrcnnError
from .imagefile import check_writable_format, decode_image, encode_image
from .infer import WeightsLike, load_weights
from .jobs import (
    TargetRules,
    check_output_option,
    collect_jobs,
    folder_images,
    glob_inputs,
    names_folder,
    no_images,
    no_match,
    no_such_file,
    output_name,
)

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

    from .model import SRCNNWeights

__all__ = ["DistributedSummary", "plan_workers", "run_distributed"]

#: Object stores: an object appears only once its upload completes, so writing the target
#: directly is already atomic (and a rename there would be a copy).
OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
#: A block is the unit Ray schedules and retries: at most this many files per block, and
#: at least this many blocks per worker, so that the pool stays balanced to the end.
FILES_PER_BLOCK = 64
BLOCKS_PER_WORKER = 16

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URI_WILDCARD = re.compile(r"[*\[]")
_TRACEBACK_ERROR = re.compile(r"^srcnn_fast\.errors\.(\w+): (.*)$", re.MULTILINE)


@dataclass
class DistributedSummary:
    """What a cluster run did: the local CLI's :class:`~srcnn_fast.batch.Summary` (counts,
    one message per failure, seconds for the whole call) plus throughput."""

    summary: Summary = field(default_factory=Summary)
    output_pixels: int = 0
    workers: int = 0
    worker_kind: str = "CPU"  # what each worker holds: "GPU" or "CPU"
    backends: list[str] = field(default_factory=list)  # the backends the workers ran

    @property
    def images_per_second(self) -> float:
        return self.summary.done / self.summary.seconds if self.summary.seconds else 0.0

    @property
    def output_megapixels_per_second(self) -> float:
        seconds = self.summary.seconds
        return self.output_pixels / seconds / 1e6 if seconds else 0.0

    def line(self) -> str:
        line = self.summary.line()
        if self.workers:
            line += (
                f": {self.images_per_second:.1f} images/s, "
                f"{self.output_megapixels_per_second:.2f} output Mpx/s on {self.workers} "
                f"{self.worker_kind} worker{'s' if self.workers > 1 else ''}"
            )
        if self.backends:
            line += f" ({', '.join(self.backends)} backend)"
        return line


def plan_workers(
    cluster_resources: Mapping[str, float],
    backend: str = "auto",
    num_workers: int | None = None,
    cpus_per_worker: int = 1,
) -> tuple[int, dict[str, float]]:
    """(number of actors, each actor's Ray resources) for a cluster with these resources.

    A cluster with GPUs gets one actor per GPU (``num_gpus=1``): the GPU does the work, and
    a second actor on one GPU would only share it. Without GPUs, or with a CPU backend
    asked for, one actor per ``cpus_per_worker`` CPUs: many small processes outrun a few
    wide ones on small images, and decoding and encoding run in parallel too.
    """
    gpus = int(cluster_resources.get("GPU", 0))
    if gpus and backend not in ("cpu", "reference"):
        return num_workers or gpus, {"num_gpus": 1, "num_cpus": 1}
    cpus = int(cluster_resources.get("CPU", 1))
    return num_workers or max(1, cpus // cpus_per_worker), {"num_cpus": cpus_per_worker}


def run_distributed(
    inputs: Iterable[str],
    output: str | None = None,
    *,
    scale: int | None = None,
    weights: WeightsLike = None,
    backend: str = "auto",
    precision: str = "fp32",
    alpha: str = "bicubic",
    tile: int | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    address: str | None = "auto",
    num_workers: int | None = None,
    cpus_per_worker: int = 1,
    progress: bool = True,
    quiet: bool = False,
    report: Callable[[str], None] | None = None,
    on_done: Callable[[str, str], None] | None = None,
    leave: Callable[[Path], bool] | None = None,
) -> DistributedSummary:
    """Upscale every file the ``inputs`` name into ``output`` on a Ray cluster.

    ``inputs`` and ``output`` are as for ``srcnn-fast upscale`` (files, folders, globs; -o
    a folder, or the output file of a single input; None: beside each input), and may also
    be URIs (see the module docstring). The model options are :class:`Upscaler`'s; the
    weights are loaded here and sent to the workers, so they need no shared filesystem.

    ``address``: ``"auto"`` joins the running cluster (``RAY_ADDRESS``, or the one ``ray
    start`` started on this machine) and starts a local Ray when there is none; None always
    starts a local Ray; anything else is the address of a cluster to join (``HOST:6379``,
    ``ray://HOST:10001``). A Ray already initialised in this process is used as it is.
    ``num_workers``: actors in the pool (default: :func:`plan_workers`). ``progress``: Ray
    Data's progress display. ``quiet``: Ray's own log lines (joining, each run's start and
    end) off the console but for errors; Ray Data's log file keeps them. ``report`` gets
    each failure's one-line message as it happens (default: stderr); ``on_done`` each
    (source, target) written, as the user named them. ``leave``: the local files that the
    caller runs itself (the CLI's videos), taken from folders as the local CLI takes them
    and left out of this run.

    A file that fails is counted and reported, never fatal; the summary's ``errors`` list
    them, in input order. Input names that match nothing count as failures too.
    """
    started = time.perf_counter()
    result = DistributedSummary()
    summary = result.summary
    report = report or (lambda message: print(message, file=sys.stderr))

    def fail(message: str) -> None:
        summary.failed += 1
        summary.errors.append(message)
        report(message)

    _require_ray()
    # Loaded here, sent to the workers: a weights file on the driver's disk is enough.
    model = load_weights(weights, scale)
    filesystems = _Filesystems()
    inputs = list(inputs)
    pairs, problems = _plan(inputs, model.scale, output, recursive, filesystems, leave)
    for problem in problems:
        fail(problem)
    if output is not None:
        # A local -o means what it means to the local CLI; a URI names no local folder, so
        # only an existing file there is known to be wrong.
        local = not _is_uri(output)
        if local or (len(pairs) > 1 and _names_existing_file(output)):
            check_output_option(output, len(pairs) > 1, _names_existing_file(output))
    runnable = _check_targets(pairs, filesystems, overwrite, skip_existing, summary, fail)
    if runnable:
        _run_on_ray(
            runnable,
            filesystems,
            model,
            upscaler_options=dict(backend=backend, precision=precision, alpha=alpha, tile=tile),
            max_pixels=max_pixels,
            address=address,
            num_workers=num_workers,
            cpus_per_worker=cpus_per_worker,
            progress=progress,
            quiet=quiet,
            result=result,
            report=report,
            on_done=on_done,
        )
    summary.seconds = time.perf_counter() - started
    return result


def _require_ray() -> None:
    try:
        import pyarrow.fs  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"running on Ray needs the ray extra: pip install 'srcnn-fast[ray]' ({exc})"
        ) from None


# --- where files are ---------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    fs: int  # index into the run's filesystems
    path: str  # that filesystem's own path (absolute for a local file)
    shown: str  # as the user named it: messages say this


class _Filesystems:
    """The run's filesystems, each once: rows carry an index, each actor gets the list."""

    def __init__(self) -> None:
        self.items: list[FileSystem] = []

    def index(self, fs: FileSystem) -> int:
        for i, known in enumerate(self.items):
            if known.equals(fs):
                return i
        self.items.append(fs)
        return len(self.items) - 1

    def local(self, path: str | os.PathLike[str]) -> _File:
        from pyarrow.fs import LocalFileSystem

        # Absolute: a worker's current folder is not the driver's.
        return _File(self.index(LocalFileSystem()), os.path.abspath(path), str(path))

    def key(self, file: _File) -> tuple[int, str]:
        """What makes two names one file (as Path.resolve does for the local CLI)."""
        if self.items[file.fs].type_name == "local":
            return file.fs, os.path.realpath(file.path)
        return file.fs, posixpath.normpath(file.path)


def _is_uri(text: str) -> bool:
    return _URI.match(text) is not None


def _open_uri(text: str) -> tuple[FileSystem, str, str]:
    """(filesystem, its path for ``text``, ``text`` without its query: what messages say)."""
    from pyarrow.fs import FileSystem

    fs, path = FileSystem.from_uri(text)
    shown = text.partition("?")[0]
    return fs, path.rstrip("/") or path, shown.rstrip("/") or shown


def _glob_match(parts: list[str], pattern: list[str]) -> bool:
    """Python's ``glob(recursive=True)`` on path segments: ``*``, ``?`` and ``[...]`` within
    a name, ``**`` across folders, hidden names only for a pattern that starts with ``.``."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for i in range(len(parts) + 1):
            if _glob_match(parts[i:], rest):
                return True
            if i < len(parts) and parts[i].startswith("."):
                return False
        return False
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _glob_match(parts[1:], rest)


def _list_uri(
    arg: str, scale: int, recursive: bool, filesystems: _Filesystems
) -> tuple[list[tuple[_File, str]], str | None, bool]:
    """The files a URI input names, each with its folder relative to the input's root (the
    tree that -o mirrors), the problem with it if any, and whether it names one file: the
    rules of :func:`~srcnn_fast.jobs.collect_jobs`, on a pyarrow filesystem."""
    from pyarrow.fs import FileSelector, FileType

    text, _, query = arg.partition("?")
    wildcard = _URI_WILDCARD.search(text)
    try:
        if wildcard is None:
            fs, root, shown = _open_uri(arg)
            info = fs.get_file_info(root)
            if info.type == FileType.File:
                index = filesystems.index(fs)
                return [(_File(index, root, shown), "")], None, True
            if info.type != FileType.Directory:
                return [], no_such_file(arg), False
            listing = fs.get_file_info(FileSelector(root, recursive=recursive))
            files = folder_images((i.path for i in listing if i.type == FileType.File), scale)
            if not files:
                return [], no_images(arg, recursive), False
        else:
            root_text = text[: text.rfind("/", 0, wildcard.start()) + 1]
            pattern = text[len(root_text) :].split("/")
            fs, root, shown = _open_uri(root_text + ("?" + query if query else ""))
            deep = len(pattern) > 1 or "**" in pattern
            selector = FileSelector(root, recursive=deep, allow_not_found=True)
            matches = (
                i.path
                for i in fs.get_file_info(selector)
                if i.type == FileType.File
                and _glob_match(i.path[len(root) :].strip("/").split("/"), pattern)
            )
            files = glob_inputs(matches, scale)
            if not files:
                return [], no_match(arg), False
    except (OSError, ValueError) as exc:  # pyarrow: unparsable URI, no access, no network
        return [], f"{arg}: cannot list ({_reason(exc)})", False
    index = filesystems.index(fs)
    found = []
    for path in files:
        relative = path[len(root) :].strip("/")
        found.append((_File(index, path, f"{shown}/{relative}"), posixpath.dirname(relative)))
    return found, None, False


def _names_existing_file(output: str) -> bool:
    if not _is_uri(output):
        return Path(output).is_file()
    from pyarrow.fs import FileType

    fs, path, _ = _open_uri(output)
    return fs.get_file_info(path).type == FileType.File


def _uri_is_dir(text: str) -> bool:
    from pyarrow.fs import FileType

    fs, path, _ = _open_uri(text)
    return fs.get_file_info(path).type == FileType.Directory


def _names_a_file(output: str) -> bool:
    """Whether -o is the output file itself (for a single input file)."""
    return not (names_folder(output, _uri_is_dir) if _is_uri(output) else names_folder(output))


def _plan(
    inputs: list[str],
    scale: int,
    output: str | None,
    recursive: bool,
    filesystems: _Filesystems,
    leave: Callable[[Path], bool] | None = None,
) -> tuple[list[tuple[_File, _File]], list[str]]:
    """(source, target) for every file the inputs name, in input order, and the problems;
    files that ``leave`` takes are named, then left out (they are the caller's)."""
    several = len(inputs) > 1
    remote_out = None
    if output is not None and _is_uri(output):
        try:
            fs, path, shown = _open_uri(output)
        except (OSError, ValueError) as exc:
            raise OutputError(f"{output}: cannot open ({_reason(exc)})") from None
        remote_out = (filesystems.index(fs), path, shown)

    def under_output(folder: str, name: str, one_file: bool) -> _File:
        """The target, under -o, of a file whose input-relative folder is ``folder``;
        ``one_file``: its input named this file alone (then -o may be the output file)."""
        assert output is not None
        if one_file and not several and _names_a_file(output):
            return filesystems.local(output) if remote_out is None else _File(*remote_out)
        if remote_out is None:
            return filesystems.local(os.path.join(output, folder, name))
        index, path, shown = remote_out
        relative = posixpath.join(folder, name)
        return _File(index, posixpath.join(path, relative), f"{shown}/{relative}")

    pairs: list[tuple[_File, _File]] = []
    problems: list[str] = []
    for arg in inputs:
        if not _is_uri(arg):
            # The local CLI's own expansion and naming. With several inputs -o is a folder
            # for each; a URI -o takes the tree relative to ".": the mirrored folders.
            local_out = output
            if remote_out is not None:
                local_out = "."
            elif output is not None and several:
                local_out = os.path.join(output, "")
            jobs, found = collect_jobs([arg], scale, local_out, recursive, also=leave)
            problems += found
            one_file = remote_out is not None and Path(arg).is_file()
            for job in jobs:
                if leave is not None and leave(job.source):
                    continue
                if remote_out is None:
                    target = filesystems.local(job.target)
                else:
                    folder = posixpath.dirname(job.target.as_posix())
                    target = under_output(folder, job.target.name, one_file)
                pairs.append((filesystems.local(job.source), target))
            continue
        files, problem, one_file = _list_uri(arg, scale, recursive, filesystems)
        if problem is not None:
            problems.append(problem)
        for source, folder in files:
            name = output_name(source.path, scale)
            if output is None:
                target = _File(
                    source.fs,
                    posixpath.join(posixpath.dirname(source.path), name),
                    posixpath.join(posixpath.dirname(source.shown), name),
                )
            else:
                target = under_output(folder, name, one_file)
            pairs.append((source, target))
    return pairs, problems


def _check_targets(
    pairs: list[tuple[_File, _File]],
    filesystems: _Filesystems,
    overwrite: bool,
    skip_existing: bool,
    summary: Summary,
    fail: Callable[[str], None],
) -> list[tuple[_File, _File]]:
    """The pairs to run, after the local CLI's refusals and skips (batch.run_jobs)."""
    from pyarrow.fs import FileType

    exists: dict[_File, bool] = {}
    for index, fs in enumerate(filesystems.items):  # one batched query per filesystem
        targets = [target for _, target in pairs if target.fs == index]
        try:
            infos = fs.get_file_info([target.path for target in targets])
        except OSError as exc:
            raise OutputError(f"cannot check the outputs ({_reason(exc)})") from None
        exists.update(
            (target, info.type != FileType.NotFound)
            for target, info in zip(targets, infos, strict=True)
        )
    rules = TargetRules((filesystems.key(source) for source, _ in pairs), overwrite, skip_existing)
    runnable = []
    probed: dict[Path, str | None] = {}
    for source, target in pairs:
        try:
            key = filesystems.key(target)
            if not rules.admit(key, target.shown, lambda target=target: exists[target]):
                summary.skipped += 1
                continue
            check_writable_format(target.shown)
            if filesystems.items[target.fs].type_name == "local":  # before any worker starts
                check_folder_writable(Path(target.shown), probed)
            runnable.append((source, target))
        except SrcnnError as exc:
            fail(str(exc))
    return runnable


# --- on the workers ------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A short reason for an OSError (pyarrow's messages run to several clauses)."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _temp_path(path: str, token: str) -> str:
    """Where ``path`` is written before the rename: hidden, beside it (one filesystem, so the
    rename is atomic), and the same for every attempt of one run, so that a retry after a
    killed worker replaces the partial file that worker left."""
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name}.{token}.tmp")


def _commit(fs: FileSystem, temporary: str, path: str) -> None:
    """The one step that makes an output visible: a rename (atomic on POSIX filesystems)."""
    fs.move(temporary, path)


def _write(fs: FileSystem, file: _File, data: bytes, token: str) -> None:
    temporary = None if fs.type_name in OBJECT_STORES else _temp_path(file.path, token)
    try:
        if temporary is None:
            with fs.open_output_stream(file.path, compression=None) as stream:
                stream.write(data)
            return
        fs.create_dir(posixpath.dirname(file.path), recursive=True)
        with fs.open_output_stream(temporary, compression=None) as stream:
            stream.write(data)
        _commit(fs, temporary, file.path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                fs.delete_file(temporary)
        raise OutputError(f"{file.shown}: cannot write ({_reason(exc)})") from None


def _read(fs: FileSystem, file: _File) -> bytes:
    try:
        with fs.open_input_stream(file.path, compression=None) as stream:
            return stream.read()
    except OSError as exc:
        raise ImageError(f"{file.shown}: cannot read ({_reason(exc)})") from None


class _NamedBytes(io.BytesIO):
    """File bytes that print as their file's name: batch.check_size reads the header from
    any file object Pillow opens and names the image with ``str()``."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self._name = name

    def __str__(self) -> str:
        return self._name


class _UpscaleWorker:
    """One Ray actor: the Upscaler is built once; each call upscales a batch of files and
    returns one row per file (its error message, empty for success)."""

    def __init__(
        self,
        weights: SRCNNWeights,
        upscaler_options: dict[str, Any],
        max_pixels: int,
        filesystems: list[FileSystem],
        token: str,
        threads: int | None,
    ) -> None:
        self.threads = threads
        self._limit_threads()
        from .infer import Upscaler

        self.upscaler = Upscaler(weights.scale, weights, **upscaler_options)
        self.max_pixels = max_pixels
        self.filesystems = filesystems
        self.token = token

    def _limit_threads(self) -> None:
        # A CPU actor holds `threads` CPUs of its node; Numba would start one thread per
        # core in every actor, many times over. Set per call: Numba's count is per thread.
        if self.threads:
            import numba

            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        self._limit_threads()
        rows: dict[str, list[Any]] = {"index": [], "error": [], "pixels": [], "backend": []}
        for i, index in enumerate(batch["index"]):
            source = _File(
                int(batch["source_fs"][i]), str(batch["source"][i]), str(batch["source_shown"][i])
            )
            target = _File(
                int(batch["target_fs"][i]), str(batch["target"][i]), str(batch["target_shown"][i])
            )
            try:
                pixels, error = self._upscale(source, target), ""
            except SrcnnError as exc:  # this file fails, the job goes on
                pixels, error = 0, str(exc)
            rows["index"].append(int(index))
            rows["error"].append(error)
            rows["pixels"].append(pixels)
            rows["backend"].append(self.upscaler.backend_name)
        return rows

    def _upscale(self, source: _File, target: _File) -> int:
        """Upscale one file as the local CLI does; the number of output pixels."""
        data = _read(self.filesystems[source.fs], source)
        check_size(_NamedBytes(data, source.shown), self.max_pixels)  # type: ignore[arg-type]
        pixels, metadata = decode_image(data, source.shown)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        check_writable_format(target.shown, channels, pixels.dtype)  # before the work
        image = self.upscaler(pixels)
        encoded = encode_image(image, target.shown, metadata)
        _write(self.filesystems[target.fs], target, encoded, self.token)
        return image.shape[0] * image.shape[1]


# --- the Ray side ----------------------------------------------------------------------------


@contextlib.contextmanager
def connected(address: str | None, quiet: bool) -> Iterator[None]:
    """Ray joined or started as ``address`` asks (as :func:`run_distributed` does) for the
    block, then left where this call joined it: runs inside share one connection."""
    _require_ray()
    joined = _connect(address, quiet)
    try:
        yield
    finally:
        if joined:
            import ray

            ray.shutdown()


def _connect(address: str | None, quiet: bool) -> bool:
    """Join or start Ray as ``address`` asks; True when this call did (and so undoes it)."""
    import ray

    if ray.is_initialized():
        return False
    options = {"logging_level": logging.ERROR} if quiet else {}
    if address is None:
        ray.init(**options)
        return True
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError) as exc:  # ValueError: not an address at all
        if address != "auto" or not isinstance(exc, ConnectionError):
            raise SrcnnError(f"cannot join the Ray cluster at {address} ({exc})") from None
        ray.init(**options)  # no cluster running: a local Ray, for this run only
    return True


def _srcnn_cause(exc: BaseException | None) -> SrcnnError | None:
    """The SrcnnError behind a Ray failure, such as a worker that could not build its
    Upscaler (a bad option, a backend its node lacks): one line, not Ray's traceback."""
    from . import errors

    text = ""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "cause", None)  # RayTaskError: the worker's own exception
        if isinstance(inner, BaseException):
            exc = inner
            continue
        if isinstance(exc, SrcnnError):
            return exc
        text = text or str(exc)
        exc = exc.__cause__
    # An actor whose __init__ raised reaches the driver as an ActorDiedError that keeps
    # only the worker's traceback as text; its last "srcnn_fast.errors.X: ..." line is ours.
    found = _TRACEBACK_ERROR.findall(text)
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, SrcnnError):
            return kind(message.strip())
    return None


def _quiet_ray_data_console() -> Callable[[], None]:
    """Ray Data logs each run to the console and to a file: raise the console handlers alone
    to errors, so that the file keeps the whole story. Returns what puts them back."""
    handlers = [
        (handler, handler.level)
        for handler in logging.getLogger("ray.data").handlers  # set up by `import ray.data`
        if isinstance(handler, logging.StreamHandler)
    ]
    for handler, _ in handlers:
        handler.setLevel(logging.ERROR)

    def restore() -> None:
        for handler, level in handlers:
            handler.setLevel(level)

    return restore


def _remove_temporaries(
    pairs: list[tuple[_File, _File]], filesystems: _Filesystems, token: str
) -> None:
    """After a failed run: what killed attempts left under this run's temporary names."""
    for index, fs in enumerate(filesystems.items):
        if fs.type_name in OBJECT_STORES:
            continue
        temporaries = [_temp_path(t.path, token) for _, t in pairs if t.fs == index]
        with contextlib.suppress(OSError):
            for info in fs.get_file_info(temporaries):
                if info.is_file:
                    fs.delete_file(info.path)


def _run_on_ray(
    pairs: list[tuple[_File, _File]],
    filesystems: _Filesystems,
    model: SRCNNWeights,
    *,
    upscaler_options: dict[str, Any],
    max_pixels: int,
    address: str | None,
    num_workers: int | None,
    cpus_per_worker: int,
    progress: bool,
    quiet: bool,
    result: DistributedSummary,
    report: Callable[[str], None],
    on_done: Callable[[str, str], None] | None,
) -> None:
    import ray
    import ray.data

    token = uuid.uuid4().hex[:12]
    joined = _connect(address, quiet)
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start
    context.enable_progress_bars = progress
    context.print_on_execution_start = not quiet
    restore_console = _quiet_ray_data_console() if quiet else lambda: None
    try:
        workers, resources = plan_workers(
            ray.cluster_resources(), upscaler_options["backend"], num_workers, cpus_per_worker
        )
        workers = min(workers, len(pairs))  # an actor with no file would only load a model
        result.workers = workers
        result.worker_kind = "GPU" if resources.get("num_gpus") else "CPU"
        rows = [
            {
                "index": i,
                "source_fs": source.fs,
                "source": source.path,
                "source_shown": source.shown,
                "target_fs": target.fs,
                "target": target.path,
                "target_shown": target.shown,
            }
            for i, (source, target) in enumerate(pairs)
        ]
        blocks = min(len(rows), max(BLOCKS_PER_WORKER * workers, -(-len(rows) // FILES_PER_BLOCK)))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _UpscaleWorker,
            fn_constructor_kwargs={
                "weights": model,
                "upscaler_options": upscaler_options,
                "max_pixels": max_pixels,
                "filesystems": filesystems.items,
                "token": token,
                "threads": None if resources.get("num_gpus") else cpus_per_worker,
            },
            batch_size=1,
            # Ray Data restarts a dead actor (max_restarts=-1) and sends the files it held
            # to the new one (max_task_retries=-1): its defaults, which Ray 2.60 deprecates
            # setting here (`**ray_remote_args`).
            compute=ray.data.ActorPoolStrategy(size=workers),
            **resources,
        )
        failures: list[tuple[int, str]] = []
        backends: set[str] = set()
        for row in dataset.iter_rows():
            index, error = int(row["index"]), str(row["error"])
            backends.add(str(row["backend"]))
            if error:  # reported as it happens, listed in input order at the end
                result.summary.failed += 1
                failures.append((index, error))
                report(error)
            else:
                result.summary.done += 1
                result.output_pixels += int(row["pixels"])
                if on_done is not None:
                    source, target = pairs[index]
                    on_done(source.shown, target.shown)
        result.summary.errors += [message for _, message in sorted(failures)]
        result.backends = sorted(backends)
    except BaseException as exc:
        _remove_temporaries(pairs, filesystems, token)
        cause = _srcnn_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    finally:
        restore_console()
        context.enable_progress_bars, context.print_on_execution_start = saved
        if joined:
            ray.shutdown()
