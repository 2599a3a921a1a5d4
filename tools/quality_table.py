"""Print the README's quality tables: mean PSNR/SSIM of bicubic and the shipped weights on
Set5 and Set14 at x2/x3/x4, with the paper's protocol (the numbers `srcnn-fast eval` prints);
with ``--jpeg``, the gains over bicubic on JPEG inputs (`srcnn-fast eval --jpeg Q`).

    python tools/quality_table.py [--data ../shared/data] [--backend reference] [--weights DIR]
    python tools/quality_table.py --jpeg [--scales 2 3 4] [--weights DIR]

``--weights DIR`` scores DIR/srcnn_x{S}.npz and DIR/srcnn_x{S}_jpeg.npz instead (candidates,
before they are shipped). The clean table's last two columns are the cpu backend's
``--precision bf16`` (AVX512_BF16 or AMX) and ``--precision int8`` (VNNI or AMX, the weights'
own calibration): each one's PSNR and its difference from the SRCNN column, to 4 decimals;
"n/a" where this CPU cannot run it. The JPEG table: each LR image saved as a JPEG by Pillow at
quality q (or the clean LR file), then upscaled by bicubic, the clean weights, the JPEG-aware
weights and "auto" (what `upscale` picks for that file); PSNR on Y, averaged over the 19
images of Set5 and Set14 together, and over each set alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from srcnn_fast.backends.simd import bf16_problem, int8_problem
from srcnn_fast.evaluate import (
    ECCV_2014_PSNR,
    TPAMI_2016_PSNR,
    EvalResult,
    bicubic_upscaler,
    evaluate,
)
from srcnn_fast.infer import Upscaler, shipped_weights_path

#: The JPEG table's inputs: the clean LR files (None), then these qualities.
JPEG_INPUTS = (None, 90, 75, 50)
SETS = ("Set5", "Set14")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--backend", default="reference")
    parser.add_argument("--weights", help="folder of srcnn_x{2,3,4}[_jpeg].npz (default: shipped)")
    parser.add_argument("--jpeg", action="store_true", help="the JPEG-input table")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument(
        "--figure", metavar="PNG", help="with --jpeg: write the README's crops (Set5 x2, q=50) only"
    )
    args = parser.parse_args()
    if args.figure:
        jpeg_figure(args)
    elif args.jpeg:
        jpeg_table(args)
    else:
        clean_table(args)


def _weights(args: argparse.Namespace, scale: int, suffix: str = "") -> Path | None:
    if args.weights:
        path = Path(args.weights) / f"srcnn_x{scale}{suffix}.npz"
    elif suffix:
        path = shipped_weights_path(scale, "jpeg")
    else:
        return None
    # A scale without JPEG-aware weights: its JPEG-aware column is empty, auto is clean.
    return path if path.is_file() or not suffix else None


def clean_table(args: argparse.Namespace) -> None:
    print(
        "| set | scale | bicubic PSNR / SSIM | SRCNN (shipped) PSNR / SSIM | gain "
        "| ECCV 2014 (9-1-5, T91) | TPAMI 2016 (9-5-5, ImageNet): PSNR, gain "
        "| SRCNN bf16 (cpu) PSNR, vs SRCNN | SRCNN int8 (cpu) PSNR, vs SRCNN |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    bf16 = bf16_problem() is None
    int8 = int8_problem() is None
    for dataset in SETS:
        for scale in args.scales:
            weights = _weights(args, scale)
            up = Upscaler(scale, weights=weights, backend=args.backend)
            methods = {"bicubic": bicubic_upscaler(scale), "srcnn": up}
            if bf16:
                methods["bf16"] = Upscaler(scale, weights=weights, backend="cpu", precision="bf16")
            if int8:
                methods["int8"] = Upscaler(scale, weights=weights, backend="cpu", precision="int8")
            result = evaluate(Path(args.data) / dataset, scale, methods)
            b, s = result.mean("bicubic"), result.mean("srcnn")
            eccv = ECCV_2014_PSNR.get((dataset, scale))
            eccv_text = f"{eccv:.2f}" if eccv else ""
            tpami = TPAMI_2016_PSNR[dataset, scale]
            reduced = {name: "n/a" for name in ("bf16", "int8")}
            for name in reduced.keys() & methods.keys():
                m = result.mean(name).psnr
                reduced[name] = f"{m:.2f}, {m - s.psnr:+.4f} dB"
            print(
                f"| {dataset} | x{scale} | {b.psnr:.2f} / {b.ssim:.4f} | {s.psnr:.2f} / "
                f"{s.ssim:.4f} | +{s.psnr - b.psnr:.2f} dB | {eccv_text} | {tpami:.2f}, "
                f"+{tpami - b.psnr:.2f} dB | {reduced['bf16']} | {reduced['int8']} |"
            )


def _mean_psnr(results: list[EvalResult], method: str) -> float:
    return float(np.mean([row.methods[method].psnr for r in results for row in r.rows]))


def jpeg_table(args: argparse.Namespace) -> None:
    print(
        "| scale | input | bicubic dB (Set5+Set14) | clean weights gain | JPEG-aware gain "
        "| auto gain | auto gain Set5 / Set14 |"
    )
    print("|---|---|---|---|---|---|---|")
    for scale in args.scales:
        clean_path, jpeg_path = _weights(args, scale), _weights(args, scale, "_jpeg")
        clean_path = clean_path or shipped_weights_path(scale)
        methods = {
            "bicubic": bicubic_upscaler(scale),
            "clean": Upscaler(scale, clean_path, args.backend, degradation="clean"),
            "auto": Upscaler(scale, clean_path, args.backend, jpeg_weights=jpeg_path),
        }
        if jpeg_path is not None:
            methods["jpeg"] = Upscaler(scale, jpeg_path, args.backend)
        for quality in JPEG_INPUTS:
            results = [
                evaluate(Path(args.data) / name, scale, methods, jpeg_quality=quality)
                for name in SETS
            ]
            bicubic = _mean_psnr(results, "bicubic")
            gains = {m: f"{_gain(results, m):+.2f}" for m in methods if m != "bicubic"}
            per_set = " / ".join(f"{_gain([r], 'auto'):+.2f}" for r in results)
            shown = "clean PNG" if quality is None else f"JPEG q={quality}"
            print(
                f"| x{scale} | {shown} | {bicubic:.2f} | {gains['clean']} "
                f"| {gains.get('jpeg', '-')} | {gains['auto']} | {per_set} |",
                flush=True,
            )


def jpeg_figure(args: argparse.Namespace, scale: int = 2, quality: int = 50) -> None:
    """Crops of Set5 at ``scale`` from JPEGs of ``quality``: the input (enlarged by
    nearest neighbour), bicubic, the clean and the JPEG-aware weights, the ground truth."""
    from srcnn_fast.figure import comparison_figure

    jpeg_path = _weights(args, scale, "_jpeg")
    if jpeg_path is None:
        raise SystemExit(f"no JPEG-aware weights for x{scale}")
    shown_input = f"JPEG q={quality} input"
    methods = {
        shown_input: lambda lr: np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1),
        "bicubic": bicubic_upscaler(scale),
        # "clean" forced: the inputs are JPEGs, which "auto" would hand the JPEG-aware weights.
        "clean weights": Upscaler(scale, _weights(args, scale), args.backend, degradation="clean"),
        "JPEG-aware": Upscaler(scale, jpeg_path, args.backend),
    }
    result = evaluate(
        Path(args.data) / "Set5", scale, methods, keep_images=True, jpeg_quality=quality
    )
    path = comparison_figure(
        result,
        args.figure,
        methods=(*methods, "ground truth"),
        crop=64,
        max_images=3,
        window=("bicubic", "JPEG-aware"),
    )
    print(f"figure: {path}")


def _gain(results: list[EvalResult], method: str) -> float:
    """Mean PSNR gain of ``method`` over bicubic across the images of ``results``."""
    return _mean_psnr(results, method) - _mean_psnr(results, "bicubic")


if __name__ == "__main__":
    main()
