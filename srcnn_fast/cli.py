"""``srcnn-fast``: a thin command line over the library.

It only parses arguments, calls the library, and maps :class:`~srcnn_fast.errors.SrcnnError`
to a one-line message and an exit code: 0 success, 1 a failure (some files failed, bad weights),
2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .backends import BACKEND_NAMES
from .batch import DEFAULT_MAX_PIXELS
from .errors import SrcnnError, UsageError
from .train import DOWNSCALERS, LOSSES, OPTIMIZERS, TrainConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _error(message: str) -> None:
    print(f"srcnn-fast: error: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _downscale_factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a downscale factor must be in (0, 1]: {text!r}")
    return value


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


def cmd_upscale(args: argparse.Namespace) -> int:
    from .batch import check_output_option, collect_jobs, run_jobs
    from .infer import Upscaler

    if args.ray is not None:
        return _upscale_on_ray(args)
    if args.ray_workers is not None:
        _error("--ray-workers needs --ray")
        return EXIT_USAGE
    _check_shipped_scale(args)
    upscaler = Upscaler(
        _scale(args), args.weights, args.backend, args.precision, alpha=args.alpha, tile=args.tile
    )
    jobs, problems = collect_jobs(args.inputs, upscaler.scale, args.output, args.recursive)
    for problem in problems:
        _error(problem)
    if args.output is not None:
        out = Path(args.output)
        several = len(jobs) > 1 or len(args.inputs) > 1 or any(j.target != out for j in jobs)
        check_output_option(args.output, several, out.is_file())
    progress = None if not args.quiet else False

    def done(job) -> None:
        if not args.quiet and not sys.stderr.isatty():
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
    return EXIT_FAILED if summary.failed else EXIT_OK


def _upscale_on_ray(args: argparse.Namespace) -> int:
    """``upscale --ray``: the same files, names, refusals and summary as the local run."""
    from .distributed import run_distributed

    def done(source: str, target: str) -> None:
        # As locally: the list of outputs where no live display is shown.
        if not args.quiet and not sys.stderr.isatty():
            print(f"{source} -> {target}")

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
    )
    if not args.quiet or result.summary.failed:
        print(f"srcnn-fast: {result.line()}", file=sys.stderr)
    return EXIT_FAILED if result.summary.failed else EXIT_OK


# --- convert ---------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_keras_file

    weights = convert_keras_file(args.input, args.output, scale=args.scale)
    print(f"{args.input} -> {args.output}: SRCNN {weights.arch.name}, scale {weights.scale}")
    return EXIT_OK


# --- train -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .model import Architecture
    from .train import train

    try:
        arch = Architecture(f1=args.f1, n1=args.n1, f2=args.f2, n2=args.n2, f3=args.f3)
    except ValueError as exc:  # an even kernel size
        _error(f"bad architecture: {exc}")
        return EXIT_USAGE
    config = TrainConfig(
        data=args.data,
        scale=args.scale,
        out=args.out,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        final_learning_rate=args.final_lr,
        optimizer=args.optimizer,
        init_std=args.init_std,
        revive_dead=args.revive_dead,
        loss=args.loss,
        input_offset=args.input_offset,
        centre_hidden=args.centre_hidden,
        identity_init=args.identity_init,
        last_layer_lr_factor=args.last_layer_lr,
        patch=args.patch,
        augment=not args.no_augment,
        downscales=tuple(args.downscales),
        downscaler=args.downscaler,
        val_fraction=args.val_fraction,
        init=args.init,
        seed=args.seed,
        arch=arch,
        checkpoint_dir=args.checkpoint_dir,
    )
    train(config, resume=not args.restart)
    return EXIT_OK


# --- eval ------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import bicubic_upscaler, evaluate
    from .infer import Upscaler

    _check_shipped_scale(args)
    upscaler = Upscaler(_scale(args), args.weights, args.backend, args.precision)
    methods = {"bicubic": bicubic_upscaler(upscaler.scale), "SRCNN": upscaler}
    result = evaluate(args.data, upscaler.scale, methods, keep_images=bool(args.figure))
    print(result.table())
    if args.figure:
        from .figure import comparison_figure

        print(f"figure: {comparison_figure(result, args.figure)}")
    return EXIT_OK


# --- info ------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from .backends import BACKEND_NAMES, available_backends, backend_details, explain_auto
    from .infer import SHIPPED_SCALES, shipped_weights_path
    from .model import SRCNNWeights

    print(f"srcnn-fast {__version__}")
    print("backends, fastest first:")
    available, details = available_backends(), backend_details()
    for name in BACKEND_NAMES:
        state = details[name] if available[name] is None else f"unavailable: {available[name]}"
        print(f"  {name:<10} {state}")
    chosen, why = explain_auto()
    print(f"auto -> {chosen}: {why}; override with --backend or SRCNN_FAST_BACKEND")
    for scale in SHIPPED_SCALES:
        weights = SRCNNWeights.load(shipped_weights_path(scale))
        val = weights.provenance.get("val_psnr_db")
        trained = f", validation {val:.2f} dB" if isinstance(val, float) else ""
        print(f"weights x{scale}: SRCNN {weights.arch.name}{trained} ({weights.source})")
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
            choices=("fp32", "fp16"),
            default="fp32",
            help="fp16: the CUDA backend's tensor-core mode (default fp32)",
        )

    p = sub.add_parser("upscale", help="upscale image files, folders or globs")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files, folders or globs")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file (one input) or folder (default: NAME_xS.EXT beside each)",
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
        "one per CPU; inputs and -o may be s3://, gs://, abfs://, hdfs:// URIs. ADDRESS: auto "
        "(the default: the running cluster, else a local Ray), local, HOST:PORT or "
        "ray://HOST:PORT",
    )
    p.add_argument(
        "--ray-workers",
        type=_positive_int,
        metavar="N",
        help="with --ray: the number of workers (default: one per GPU, else one per CPU)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
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

    p = sub.add_parser("train", help="train SRCNN with Keras on a folder of images")
    p.add_argument("--data", required=True, help="folder of training images (e.g. T91)")
    p.add_argument("-s", "--scale", type=_positive_int, required=True)
    p.add_argument("--out", required=True, help="weights file to write (.npz)")
    p.add_argument("--epochs", type=_positive_int, default=40)
    p.add_argument("--steps", type=_positive_int, default=1000, help="batches per epoch")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="initial rate (cosine decay)")
    p.add_argument("--final-lr", type=float, default=1e-5, help="rate at the last epoch")
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="adam (default), or sgd with momentum 0.9 (the paper's)",
    )
    p.add_argument(
        "--init-std",
        type=float,
        help="Gaussian initial kernels of this deviation (the paper: 0.001); default Glorot",
    )
    p.add_argument(
        "--last-layer-lr",
        type=float,
        default=1.0,
        help="factor on the last layer's rate (the paper: 0.1)",
    )
    p.add_argument("--patch", type=_positive_int, default=33, help="sub-image size")
    p.add_argument(
        "--no-augment", action="store_true", help="no flips/rotations or downscaled copies"
    )
    p.add_argument(
        "--downscales",
        type=_downscale_factor,
        nargs="+",
        default=list(TrainConfig.downscales),
        metavar="F",
        help="train on copies of each image downscaled by these factors (1: the image itself; "
        f"default: {' '.join(f'{f:g}' for f in TrainConfig.downscales)})",
    )
    p.add_argument(
        "--downscaler",
        choices=DOWNSCALERS,
        default=TrainConfig.downscaler,
        help="how LR images are made: matlab (default; imresize, as the benchmark sets' LR "
        "files) or pillow (Pillow's BICUBIC resize)",
    )
    p.add_argument("--init", help="start from these weights (e.g. another scale's)")
    p.add_argument(
        "--revive-dead",
        action="store_true",
        help="re-initialise dead ReLU channels at the start and after each epoch",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="mse",
        help="mse (default), l1 (mean absolute error) or psnr (minus the sub-images' mean PSNR)",
    )
    p.add_argument(
        "--input-offset",
        type=float,
        default=0.0,
        help="subtract this from the input luma while training (folded into conv1's bias)",
    )
    p.add_argument(
        "--centre-hidden",
        action="store_true",
        help="also centre conv2's and conv3's inputs while training (folded into the biases)",
    )
    p.add_argument(
        "--identity-init",
        action="store_true",
        help="start from a network that outputs its bicubic input (learn the residual)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the images held out for validation",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the initial weights and the sub-images drawn (not the hold-out split)",
    )
    for name, default in (("f1", 9), ("n1", 64), ("f2", 1), ("n2", 32), ("f3", 5)):
        p.add_argument(
            f"--{name}",
            type=_positive_int,
            default=default,
            help=f"architecture (default {default})",
        )
    p.add_argument("--checkpoint-dir", help="checkpoints and train.log (default OUT.ckpt)")
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
