"""``srcnn-fast``: a thin command line over the library.

It only parses arguments, calls the library, and maps :class:`~srcnn_fast.errors.SrcnnError`
to a one-line message and an exit code: 0 success, 1 a failure (some files failed, bad weights),
2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import re
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .backends import BACKEND_NAMES, PRECISIONS
from .batch import DEFAULT_MAX_PIXELS
from .console import say
from .errors import SrcnnError, UsageError
from .train import TrainConfig
from .train.config import Check, about
from .weights_choice import DEGRADATIONS, JPEG_AUTO_THRESHOLDS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _error(message: str) -> None:
    say(f"srcnn-fast: error: {message}")  # on a line of its own, under a progress bar too


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def _jpeg_quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a JPEG quality is 1..100: {text!r}")
    return value


def _thresholds() -> str:
    """The auto thresholds as help text: "88 at x2, 88 at x3, 88 at x4"."""
    return ", ".join(f"{q} at x{s}" for s, q in sorted(JPEG_AUTO_THRESHOLDS.items()))


def _qp_thresholds() -> str:
    """The video auto thresholds as help text: "H.264 QP 29.5 at x2, ...; VP9 q-index ..."."""
    from .weights_choice import QP_THRESHOLDS, quantiser_name

    return "; ".join(
        " ".join(quantiser_name(codec))
        + " "
        + ", ".join(f"{qp:g} at x{s}" for s, qp in sorted(by_scale.items()))
        for codec, by_scale in QP_THRESHOLDS.items()
    )


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[^\s/:]+:\d+)$")


def _ray_address(text: str) -> str:
    # `--ray` takes an optional value, so in `upscale --ray photos/` argparse hands it the
    # first input: refuse what cannot be an address instead of trying to join it.
    if not _RAY_ADDRESS.match(text):
        raise argparse.ArgumentTypeError(
            f"not a Ray address: {text!r} (auto, local, HOST:PORT or ray://HOST:PORT; "
            "write --ray=ADDRESS, or put --ray after the inputs)"
        )
    return text


def _scale(args: argparse.Namespace) -> int | None:
    """-s if given; else the weights' own scale (-w), else the command's default."""
    if args.scale is not None:
        return args.scale
    return None if args.weights else args.default_scale


# --- upscale ---------------------------------------------------------------------------------


def _check_shipped_scale(args: argparse.Namespace) -> None:
    """-s without -w must be a scale we ship weights for: a usage error, in the CLI's words."""
    from .infer import SHIPPED_SCALES

    if args.weights is None and args.scale is not None and args.scale not in SHIPPED_SCALES:
        shipped = ", ".join(map(str, SHIPPED_SCALES))
        raise UsageError(
            f"-s {args.scale}: no shipped weights for scale {args.scale} (shipped: {shipped}); "
            "give weights for it with -w FILE"
        )


def _check_flags_for(args: argparse.Namespace, videos: list[Path]) -> None:
    """Refuse the flags that only images take where there is a video, and the video flags
    where there is none (usage errors)."""
    if videos:
        image_only = [
            ("--tile", args.tile is not None),
            ("--alpha network", args.alpha != "bicubic"),
            ("--max-pixels", args.max_pixels != DEFAULT_MAX_PIXELS),
        ]
        for flag, given in image_only:
            if given:
                raise UsageError(f"{videos[0]}: {flag} applies to images only, not to video")
        return
    video_only = (
        ("--codec", args.codec),
        ("--crf", args.crf),
        ("--preset", args.preset),
        ("--segment", args.segment),
    )
    for flag, value in video_only:
        if value is not None:
            raise UsageError(f"{flag} applies to video inputs only, and none was given")


def _check_weights_for(args: argparse.Namespace) -> None:
    """--weights-for chooses among the shipped weights: with -w it has nothing to choose."""
    if args.weights is not None and args.weights_for != "auto":
        raise UsageError(
            f"--weights-for {args.weights_for} chooses among the shipped weights; with -w FILE, "
            "that file serves every input"
        )


def _check_precision(args: argparse.Namespace) -> None:
    """A reduced precision runs on one backend: naming another is a usage error (exit 2)."""
    from .backends import PRECISION_BACKENDS

    needed = PRECISION_BACKENDS.get(args.precision)
    if needed is not None and args.backend not in ("auto", needed):
        raise UsageError(
            f"--precision {args.precision} runs on the {needed} backend, not --backend "
            f"{args.backend}"
        )


def cmd_upscale(args: argparse.Namespace) -> int:
    from .batch import run_jobs
    from .imagefile import IMAGE_EXTENSIONS
    from .jobs import check_output_option, collect_jobs
    from .jpeg import image_hint
    from .video import is_media
    from .y4m import is_y4m_route

    if is_y4m_route(args.inputs, args.output):
        return _upscale_pipe(args)
    if args.ray is not None:
        if args.weights_for != "auto":
            # The Ray workers run one set of weights (srcnn_fast.distributed): say so, rather
            # than run other weights than asked.
            raise UsageError(f"--weights-for {args.weights_for} is not supported with --ray")
        return _upscale_on_ray(args)
    if args.ray_workers is not None:
        _error("--ray-workers needs --ray")
        return EXIT_USAGE
    upscaler = _upscaler(args)
    # Folders and globs take videos too; a file named on its own is a video (or other media,
    # which the video path refuses in one line) when FFmpeg reads it as one. Each file is
    # probed once: the planner's answer is reused to split the jobs.
    media = functools.cache(is_media)
    every, problems = collect_jobs(
        args.inputs, upscaler.scale, args.output, args.recursive, also=media
    )
    jobs, video_jobs = [], []
    for job in every:
        is_video = job.source.suffix.lower() not in IMAGE_EXTENSIONS and media(job.source)
        (video_jobs if is_video else jobs).append(job)
    _check_flags_for(args, [job.source for job in video_jobs])
    for problem in problems:
        _error(problem)
    if args.output is not None:
        out = Path(args.output)
        several = len(every) > 1 or len(args.inputs) > 1 or any(j.target != out for j in every)
        check_output_option(args.output, several, out.is_file())
    progress = None if not args.quiet else False
    video_failed = _upscale_videos(video_jobs, upscaler, args) if video_jobs else 0
    if not jobs and not problems and video_jobs:
        return EXIT_FAILED if video_failed else EXIT_OK

    def done(job) -> None:
        if args.verbose:  # the choice "auto" made for this file, and why
            choice = upscaler.weights_for(image_hint(job.source))
            print(f"{job.source} -> {job.target}: {choice}")
        elif not args.quiet and not sys.stderr.isatty():
            print(f"{job.source} -> {job.target}")

    summary = run_jobs(
        jobs,
        upscaler,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        max_pixels=args.max_pixels,
        progress=progress,
        report=_error,
        on_done=done,
    )
    summary.failed += len(problems)
    if not args.quiet or summary.failed:
        print(f"srcnn-fast: {summary.line()} ({upscaler.backend_name} backend)", file=sys.stderr)
    return EXIT_FAILED if summary.failed or video_failed else EXIT_OK


def _upscaler(args: argparse.Namespace) -> Any:
    """The upscale command's :class:`~srcnn_fast.infer.Upscaler`, its options checked."""
    from .infer import Upscaler

    _check_shipped_scale(args)
    _check_weights_for(args)
    _check_precision(args)
    return Upscaler(
        _scale(args),
        args.weights,
        args.backend,
        args.precision,
        alpha=args.alpha,
        tile=args.tile,
        degradation=args.weights_for,
    )


def _upscale_pipe(args: argparse.Namespace) -> int:
    """``upscale - -o -``: a YUV4MPEG2 stream from stdin (or a .y4m file) to stdout (or a .y4m
    file). stdout carries frames alone: every message goes to stderr."""
    import contextlib

    from .y4m import STDIO, stdout_for_frames, upscale_y4m_path, y4m_target

    if len(args.inputs) > 1:
        raise UsageError("-: a YUV4MPEG2 pipe takes one input (- for stdin, or a .y4m file)")
    source = args.inputs[0]
    to_stdout = args.output == STDIO or (args.output is None and source == STDIO)
    refused = [
        ("--codec", args.codec is not None),
        ("--crf", args.crf is not None),
        ("--preset", args.preset is not None),
        ("--ray", args.ray is not None or args.ray_workers is not None),
        ("--tile", args.tile is not None),
        ("--alpha network", args.alpha != "bicubic"),
        ("--max-pixels", args.max_pixels != DEFAULT_MAX_PIXELS),
        ("--recursive", args.recursive),
        ("--skip-existing", args.skip_existing and to_stdout),
    ]
    for flag, given in refused:
        if given:
            raise UsageError(
                f"{flag} does not apply to a YUV4MPEG2 pipe (raw frames in, raw frames out)"
            )
    # stdout is taken for the frames before anything else can print to it.
    with stdout_for_frames() if to_stdout else contextlib.nullcontext() as frames:
        upscaler = _upscaler(args)
        target = y4m_target(source, args.output, upscaler.scale)
        if target != STDIO and args.skip_existing and Path(target).exists():
            if not args.quiet:
                print(f"srcnn-fast: {target}: exists, skipped", file=sys.stderr)
            return EXIT_OK
        if target != STDIO:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        summary = upscale_y4m_path(
            source,
            target,
            upscaler,
            stdout=frames,
            overwrite=args.overwrite,
            progress=False if args.quiet else None,
        )
    if args.verbose:
        for line in summary.weights:
            print(f"srcnn-fast: {summary.source} -> {summary.target}: {line}", file=sys.stderr)
    if summary.problem():
        _error(summary.problem())
    if not args.quiet:
        print(f"srcnn-fast: {summary.line()} ({upscaler.backend_name} backend)", file=sys.stderr)
    return EXIT_FAILED if summary.problem() else EXIT_OK


def _upscale_videos(jobs: list, upscaler: Any, args: argparse.Namespace) -> int:
    """Each video job in turn, under the images' rules for existing outputs; a line per
    video (its fps and bottleneck), one line per problem. Returns the number that failed."""
    from .video import upscale_video

    lines = _VideoLines(len(jobs), args)
    for job in jobs:
        try:
            if not lines.ready(job):
                continue
            summary = upscale_video(
                job.source,
                job.target,
                upscaler,
                **_video_options(args),
                progress=False if args.quiet else None,
                on_weights=functools.partial(_say_weights, job) if args.verbose else None,
                segment_seconds=_segment_seconds(args),
                on_note=None if args.quiet else _note,
            )
        except (SrcnnError, OSError) as exc:
            lines.failed(job, exc)
            continue
        lines.done(job, summary, None, f" ({upscaler.backend_name} backend)")
    return lines.close()


class _VideoLines:
    """What a run over videos says, locally or on Ray: each video's lines as it is finished
    (its error; or its notes, its problem and its summary line), and the closing line over
    several, as the images' run has one."""

    def __init__(self, videos: int, args: argparse.Namespace) -> None:
        from .batch import Summary

        self.videos, self.args = videos, args
        self.total, self.frames = Summary(), 0
        self.started = time.perf_counter()
        self.probed: dict = {}

    def ready(self, job: Any) -> bool:
        """Whether to make ``job``'s video: False for an existing output under
        --skip-existing (said, counted); its folder made, and refused where it cannot take new
        files (raises)."""
        from .batch import check_folder_writable

        if job.target.exists() and self.args.skip_existing:
            if not self.args.quiet:
                print(f"srcnn-fast: {job.target}: exists, skipped", file=sys.stderr)
            self.total.skipped += 1
            return False
        check_folder_writable(job.target, self.probed)
        job.target.parent.mkdir(parents=True, exist_ok=True)
        return True

    def failed(self, job: Any, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            where = exc.filename if exc.filename is not None else job.source
            self.done(job, None, f"{where}: {exc.strerror or exc}", "")
        else:
            self.done(job, None, str(exc), "")

    def done(self, job: Any, summary: Any, error: str | None, ran_on: str) -> None:
        """A finished video: its ``summary``, or None and its one-line ``error``; ``ran_on``
        ends its summary line (" (cpu backend)")."""
        if summary is None:
            _error(error or f"{job.source}: failed")
            self.total.failed += 1
            return
        for note in summary.notes:
            print(f"srcnn-fast: warning: {note}", file=sys.stderr)
        self.frames += summary.frames
        problem = summary.problem()
        if problem:
            _error(problem)
            self.total.failed += 1
        else:
            self.total.done += 1
        if not self.args.quiet:
            print(f"srcnn-fast: {summary.line()}{ran_on}", file=sys.stderr)

    def close(self) -> int:
        """The closing line over several videos; the number that failed."""
        from .video import videos_line

        total = self.total
        total.seconds = time.perf_counter() - self.started
        if self.videos > 1 and (not self.args.quiet or total.failed):
            print(f"srcnn-fast: {videos_line(self.videos, total, self.frames)}", file=sys.stderr)
        return total.failed


def _video_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(codec=args.codec, crf=args.crf, preset=args.preset, overwrite=args.overwrite)


def _segment_seconds(args: argparse.Namespace) -> float:
    from .segments import DEFAULT_SEGMENT_SECONDS

    return DEFAULT_SEGMENT_SECONDS if args.segment is None else args.segment


def _note(line: str) -> None:
    """A video's line said as it happens (resuming, starting over)."""
    print(f"srcnn-fast: {line}", file=sys.stderr, flush=True)


def _say_weights(job: Any, line: str) -> None:
    """``-v``: a video stream's weights and why, on stderr as soon as they are chosen (before
    the first frame), so that a long run with the wrong weights can be stopped early."""
    print(f"srcnn-fast: {job.source} -> {job.target}: {line}", file=sys.stderr, flush=True)


def _upscale_on_ray(args: argparse.Namespace) -> int:
    """``upscale --ray``: the same files, names, refusals and summary as the local run; the
    videos' segments on the cluster too (:mod:`srcnn_fast.distributed_video`), before the
    images, in one connection."""
    from .distributed import connected, run_distributed
    from .infer import load_weights
    from .jobs import check_output_option, collect_jobs
    from .video import is_media

    media = functools.cache(is_media)
    scale = load_weights(args.weights, _scale(args)).scale
    every, problems = collect_jobs(args.inputs, scale, args.output, args.recursive, also=media)
    video_jobs = [job for job in every if media(job.source)]
    _check_flags_for(args, [job.source for job in video_jobs])
    if video_jobs and args.output is not None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", args.output):
            raise UsageError(
                f"{video_jobs[0].source}: with --ray a video is written to a path every node "
                "sees, not to a URI"
            )
        out = Path(args.output)
        several = len(every) > 1 or len(args.inputs) > 1 or any(j.target != out for j in every)
        check_output_option(args.output, several, out.is_file())

    def done(source: str, target: str) -> None:
        # As locally: the list of outputs where no live display is shown.
        if not args.quiet and not sys.stderr.isatty():
            print(f"{source} -> {target}")

    upscaler = None
    if video_jobs:  # refused before any cluster is joined, as the local run refuses them
        from .infer import Upscaler

        _check_shipped_scale(args)
        _check_precision(args)
        upscaler = Upscaler(_scale(args), args.weights, args.backend, args.precision)
    with connected(args.ray, args.quiet) if video_jobs else contextlib.nullcontext():
        video_failed = _upscale_videos_on_ray(video_jobs, upscaler, args) if video_jobs else 0
        if video_jobs and len(video_jobs) == len(every) and not problems:
            return EXIT_FAILED if video_failed else EXIT_OK
        result = run_distributed(
            args.inputs,
            args.output,
            scale=_scale(args),
            weights=args.weights,
            backend=args.backend,
            precision=args.precision,
            alpha=args.alpha,
            tile=args.tile,
            recursive=args.recursive,
            overwrite=args.overwrite,
            skip_existing=args.skip_existing,
            max_pixels=args.max_pixels,
            address=args.ray,
            num_workers=args.ray_workers,
            progress=not args.quiet,
            quiet=args.quiet,
            report=_error,
            on_done=done,
            leave=media,
        )
    if not args.quiet or result.summary.failed:
        print(f"srcnn-fast: {result.line()}", file=sys.stderr)
    return EXIT_FAILED if result.summary.failed or video_failed else EXIT_OK


def _upscale_videos_on_ray(jobs: list, upscaler: Any, args: argparse.Namespace) -> int:
    """The videos of an ``upscale --ray`` run, planned here and made on the cluster: the
    local run's lines for each, as it is finished, and its closing line. Returns the number
    that failed."""
    from .distributed_video import run_videos

    lines, ready = _VideoLines(len(jobs), args), []
    for job in jobs:
        try:
            if lines.ready(job):
                ready.append(job)
        except (SrcnnError, OSError) as exc:
            lines.failed(job, exc)
    run_videos(
        ready,
        upscaler,
        options=_video_options(args),
        backend=args.backend,
        segment_seconds=_segment_seconds(args),
        num_workers=args.ray_workers,
        on_weights=_say_weights if args.verbose else None,
        on_note=None if args.quiet else _note,
        on_result=lines.done,
        progress=not args.quiet and sys.stderr.isatty(),  # as the local run's bar
    )
    return lines.close()


# --- convert ---------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_keras_file

    weights = convert_keras_file(args.input, args.output, scale=args.scale)
    print(f"{args.input} -> {args.output}: SRCNN {weights.arch.name}, scale {weights.scale}")
    return EXIT_OK


# --- calibrate -------------------------------------------------------------------------------

#: Where `calibrate` finds its images by default: T91 in the data folder beside a checkout.
DEFAULT_CALIBRATION_DATA = Path("..") / "shared" / "data" / "T91"


def cmd_calibrate(args: argparse.Namespace) -> int:
    import time

    from .calibrate import calibrate
    from .model import SRCNNWeights

    data = Path(args.data) if args.data else DEFAULT_CALIBRATION_DATA
    if not data.is_dir():
        raise UsageError(
            f"{data}: no such folder of calibration images; name one with --data "
            "(the training images, e.g. T91)"
        )
    output = Path(args.output or args.weights)
    weights = SRCNNWeights.load(args.weights)
    if weights.arch.f2 != 1:
        raise UsageError(
            f"{args.weights}: precision int8 needs a 1x1 conv2; this model's is "
            f"{weights.arch.f2}x{weights.arch.f2}"
        )
    start = time.perf_counter()
    weights.int8 = calibrate(weights, data, limit=args.images, input_bits=args.input_bits)
    weights.save(output)
    c = weights.int8
    print(
        f"{args.weights} -> {output}: int8 calibration on {c.provenance['images']} images of "
        f"{data} (conv1 input {c.input_bits} bits) in {time.perf_counter() - start:.0f} s"
    )
    return EXIT_OK


# --- train -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    train(_from_options(TrainConfig, args), resume=not args.restart)
    return EXIT_OK


#: How a value the command line could not read is described, by the type it should have had.
_TYPE_NAMES = {int: "an integer", float: "a number"}


def _value_parser(kind: type, check: Check | None) -> Callable[[str], Any]:
    """argparse's ``type`` for a config value: the text as ``kind``, refused (a usage error,
    exit 2) when it is not one or fails ``check``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {_TYPE_NAMES[kind]}: {text!r}") from None
        if check is not None and not check.holds(value):
            raise argparse.ArgumentTypeError(f"{check.message}: {text!r}")
        return value

    return parse


def _shown(value: Any) -> str:
    """A default as the command line would give it."""
    if isinstance(value, tuple):
        return " ".join(f"{v:g}" for v in value) or "none"
    return str(value)


def _add_options(parser: argparse.ArgumentParser, config_type: type) -> None:
    """One option per field of the dataclass ``config_type`` (TrainConfig), all made from the
    field: spelling (``--field-name``, or its :class:`About`'s flags), type and default from
    its annotation and default, choices and checks, help from its documentation. A bool that
    defaults to True becomes ``--no-field-name``; a dataclass-valued field (the architecture)
    becomes a group with one option per field of its own."""
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        info, hint = about(field), hints[field.name]
        if dataclasses.is_dataclass(hint):
            # Its fields' options are named and stored by their own names (--f1 -> args.f1).
            group = parser.add_argument_group(field.name, info.doc)
            part_hints = typing.get_type_hints(hint)
            for part in dataclasses.fields(hint):
                group.add_argument(
                    f"--{part.name}",
                    dest=part.name,
                    type=_value_parser(part_hints[part.name], info.check),
                    default=part.default,
                    help=f"default {part.default}",
                )
            continue
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        if hint is bool:
            flag = f"--no-{flag[2:]}" if default else flag
            parser.add_argument(
                *(info.flags or (flag,)),
                dest=field.name,
                action="store_false" if default else "store_true",
                help=_escaped(f"no {info.doc}" if default else info.doc),
            )
            continue
        kind, many = _value_kind(hint)
        flags = info.flags or (flag,)
        shown = "" if default is None else f" (default: {_shown(default)})"
        parser.add_argument(
            *flags,
            dest=field.name,
            # Named by the option (as argparse would without dest), or its choices.
            metavar=None if info.choices else flags[-1][2:].upper().replace("-", "_"),
            type=_value_parser(kind, info.check),
            nargs="+" if many else None,
            choices=info.choices,
            required=required,
            default=default,
            help=_escaped(info.doc + shown),
        )


def _escaped(help_text: str) -> str:
    return help_text.replace("%", "%%")  # argparse %-formats help texts


def _value_kind(hint: Any) -> tuple[type, bool]:
    """(the type of one value, whether the field is a tuple of them) for an annotation such
    as ``int``, ``float | None`` or ``tuple[float, ...]``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return args[0], True
    return (args[0] if args else hint), False


def _from_options(config_type: type, args: argparse.Namespace) -> Any:
    """The config that the options made by :func:`_add_options` describe."""
    hints = typing.get_type_hints(config_type)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_type):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            parts = {part.name: getattr(args, part.name) for part in dataclasses.fields(hint)}
            try:
                values[field.name] = hint(**parts)
            except ValueError as exc:  # e.g. an even kernel size
                raise UsageError(f"bad {hint.__name__.lower()}: {exc}") from None
        else:
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if typing.get_origin(hint) is tuple else value
    return config_type(**values)


# --- eval ------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import bicubic_upscaler, evaluate
    from .infer import Upscaler

    _check_shipped_scale(args)
    _check_weights_for(args)
    _check_precision(args)
    upscaler = Upscaler(
        _scale(args), args.weights, args.backend, args.precision, degradation=args.weights_for
    )
    methods = {"bicubic": bicubic_upscaler(upscaler.scale), "SRCNN": upscaler}
    result = evaluate(
        args.data,
        upscaler.scale,
        methods,
        keep_images=bool(args.figure),
        jpeg_quality=args.jpeg,
    )
    print(result.table())
    if args.figure:
        from .figure import comparison_figure

        print(f"figure: {comparison_figure(result, args.figure)}")
    return EXIT_OK


# --- info ------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from .backends import BACKEND_NAMES, available_backends, backend_details, explain_auto
    from .infer import SHIPPED_SCALES, shipped_jpeg_weights_path, shipped_weights_path
    from .model import SRCNNWeights

    print(f"srcnn-fast {__version__}")
    print("backends, fastest first:")
    available, details = available_backends(), backend_details()
    for name in BACKEND_NAMES:
        state = details[name] if available[name] is None else f"unavailable: {available[name]}"
        print(f"  {name:<10} {state}")
    chosen, why = explain_auto()
    print(f"auto -> {chosen}: {why}; override with --backend or SRCNN_FAST_BACKEND")
    from .video import video_support

    print(f"video: {video_support()}")
    for scale in SHIPPED_SCALES:
        jpeg = shipped_jpeg_weights_path(scale)
        for kind, path in (("", shipped_weights_path(scale)), (" for JPEG inputs", jpeg)):
            if path is None:
                continue
            weights = SRCNNWeights.load(path)
            val = weights.provenance.get("val_psnr_db")
            trained = f", validation {val:.2f} dB" if isinstance(val, float) else ""
            print(f"weights x{scale}{kind}: SRCNN {weights.arch.name}{trained} ({weights.source})")
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srcnn-fast", description="Fast, exact SRCNN image super-resolution."
    )
    parser.add_argument("--version", action="version", version=f"srcnn-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_model_options(p: argparse.ArgumentParser, default_scale: int) -> None:
        p.add_argument(
            "-s",
            "--scale",
            type=_positive_int,
            default=None,
            help=f"upscaling factor (shipped weights: 2, 3, 4); default: the weights' own "
            f"scale with -w, else {default_scale}",
        )
        p.set_defaults(default_scale=default_scale)
        p.add_argument("-w", "--weights", help="weights file (default: the shipped ones)")
        p.add_argument(
            "--backend",
            default="auto",
            choices=("auto", *BACKEND_NAMES),
            help="auto (default: the fastest available; env SRCNN_FAST_BACKEND overrides), "
            "cuda, cpu, reference",
        )
        p.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="fp32",
            help="fp16: the CUDA backend's tensor-core mode; bf16: the cpu backend's AVX512_BF16 "
            "mode; int8: the cpu backend's VNNI mode, calibrated weights (default fp32)",
        )
        p.add_argument(
            "--weights-for",
            choices=DEGRADATIONS,
            default="auto",
            help="which shipped weights: auto (default: the JPEG-aware ones for a JPEG file of "
            f"quality <= {_thresholds()} and for a video stream of mean quantiser >= "
            f"{_qp_thresholds()}, else the clean ones), clean or jpeg",
        )

    p = sub.add_parser("upscale", help="upscale image files, folders or globs, and videos")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help="image files, folders or globs; video files (any container FFmpeg reads); - for a "
        "YUV4MPEG2 stream on stdin",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (one input) or folder (default: NAME_xS.EXT beside each); - for "
        "YUV4MPEG2 on stdout (the default for input -)",
    )
    add_model_options(p, 2)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave inputs whose output exists alone (resume a folder)",
    )
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="folders: also their sub-folders (the tree is mirrored under -o)",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse inputs of more pixels than this, read from the file's header before "
        "decoding (default %(default)s: 20000x20000 passes)",
    )
    p.add_argument(
        "--tile",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="upscale in N x N input-pixel tiles, output identical to untiled (default: tile "
        "only images too big for free memory; 0: never)",
    )
    p.add_argument(
        "--alpha",
        choices=("bicubic", "network"),
        default="bicubic",
        help="how transparency is upscaled: bicubic (default) or through the network",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        type=_ray_address,
        metavar="ADDRESS",
        help="run on a Ray cluster (needs the ray extra): a pool of workers, one per GPU, else "
        "one per CPU; a video's segments are spread over them; image inputs and -o may be s3://, "
        "gs://, abfs://, hdfs:// URIs. ADDRESS: auto "
        "(the default: the running cluster, else a local Ray), local, HOST:PORT or "
        "ray://HOST:PORT",
    )
    p.add_argument(
        "--ray-workers",
        type=_positive_int,
        metavar="N",
        help="with --ray: the number of workers (default: one per GPU, else one per CPU)",
    )
    video = p.add_argument_group("video", "for video inputs (needs the video extra)")
    video.add_argument(
        "--codec",
        help="video encoder, e.g. libx264, libx265, libvpx-vp9, libsvtav1, ffv1 (default: the "
        "input's codec where it can be encoded, else libx264)",
    )
    video.add_argument(
        "--crf",
        type=_non_negative_int,
        help="constant quality (lower is better; default: 18 for libx264, 20 libx265, 24 VP9, "
        "28 SVT-AV1; 0 is lossless with libx264)",
    )
    video.add_argument(
        "--preset",
        help="encoder speed preset (default: medium for libx264/libx265, 8 for SVT-AV1)",
    )
    video.add_argument(
        "--segment",
        type=_seconds,
        metavar="SECONDS",
        help="make a video in closed segments of about this many seconds, cut at its "
        "keyframes, kept in a hidden folder beside the output so that a rerun after an "
        "interruption resumes (default: 10; 0: in one pass, no resume)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="for each file, also which weights it got and why",
    )
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("convert", help="convert Keras weights to srcnn-fast's raw format")
    p.add_argument("input", metavar="IN", help=".h5, .weights.h5 or .keras file")
    p.add_argument("output", metavar="OUT", help="raw-array weights file (.npz)")
    p.add_argument(
        "-s",
        "--scale",
        type=_positive_int,
        required=True,
        help="the scale the weights were trained for (Keras files do not record it)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "calibrate", help="add an int8 calibration (--precision int8) to a weights file"
    )
    p.add_argument("weights", metavar="WEIGHTS", help="weights file (.npz); updated in place")
    p.add_argument("-o", "--output", help="write the calibrated weights here instead")
    p.add_argument(
        "--data",
        help=f"folder of training images (PNG) to calibrate on (default: "
        f"{DEFAULT_CALIBRATION_DATA})",
    )
    p.add_argument("--images", type=_positive_int, help="use only the first N images")
    p.add_argument(
        "--input-bits",
        type=int,
        choices=(8, 16),
        help="conv1's input precision (default: 8 unless the int8 network then loses over "
        "0.03 dB against float32 on the calibration images)",
    )
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("train", help="train SRCNN with Keras on a folder of images")
    _add_options(p, TrainConfig)
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="backends available here, the one auto picks, and why")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("eval", help="PSNR/SSIM on a benchmark folder (paper protocol)")
    p.add_argument("--data", required=True, help="e.g. ../shared/data/Set5")
    add_model_options(p, 3)
    p.add_argument(
        "--figure",
        metavar="PNG",
        help="also write side-by-side crops (bicubic / SRCNN / ground truth)",
    )
    p.add_argument(
        "--jpeg",
        type=_jpeg_quality,
        metavar="Q",
        help="score JPEG inputs: each LR image saved as a JPEG by Pillow at quality Q (1..100) "
        "first, and decoded as upscale decodes files",
    )
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except SrcnnError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        # The library names its files in SrcnnErrors; an OSError that still gets here (a
        # path the system refuses outright, such as a name too long) is a user's path too.
        where = exc.filename if exc.filename is not None else "srcnn-fast"
        _error(f"{where}: {exc.strerror or exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
