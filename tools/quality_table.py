"""Print the README's quality table: mean PSNR/SSIM of bicubic and the shipped weights on
Set5 and Set14 at x2/x3/x4, with the paper's protocol (the numbers `srcnn-fast eval` prints).

    python tools/quality_table.py [--data ../shared/data] [--backend reference] [--weights DIR]

``--weights DIR`` scores DIR/srcnn_x{2,3,4}.npz instead (candidates, before they are shipped).
The last column is the cpu backend's ``--precision bf16`` (AVX512_BF16): its PSNR and the
difference from the SRCNN column, to 4 decimals; "n/a" where this CPU cannot run it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from srcnn_fast.backends.simd import bf16_problem
from srcnn_fast.evaluate import ECCV_2014_PSNR, TPAMI_2016_PSNR, bicubic_upscaler, evaluate
from srcnn_fast.infer import Upscaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--backend", default="reference")
    parser.add_argument("--weights", help="folder of srcnn_x{2,3,4}.npz (default: shipped)")
    args = parser.parse_args()
    print(
        "| set | scale | bicubic PSNR / SSIM | SRCNN (shipped) PSNR / SSIM | gain "
        "| ECCV 2014 (9-1-5, T91) | TPAMI 2016 (9-5-5, ImageNet): PSNR, gain "
        "| SRCNN bf16 (cpu) PSNR, vs SRCNN |"
    )
    print("|---|---|---|---|---|---|---|---|")
    bf16 = bf16_problem() is None
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            weights = Path(args.weights) / f"srcnn_x{scale}.npz" if args.weights else None
            up = Upscaler(scale, weights=weights, backend=args.backend)
            methods = {"bicubic": bicubic_upscaler(scale), "srcnn": up}
            if bf16:
                methods["bf16"] = Upscaler(scale, weights=weights, backend="cpu", precision="bf16")
            result = evaluate(Path(args.data) / dataset, scale, methods)
            b, s = result.mean("bicubic"), result.mean("srcnn")
            eccv = ECCV_2014_PSNR.get((dataset, scale))
            eccv_text = f"{eccv:.2f}" if eccv else ""
            tpami = TPAMI_2016_PSNR[dataset, scale]
            h = result.mean("bf16").psnr if bf16 else None
            bf16_text = f"{h:.2f}, {h - s.psnr:+.4f} dB" if h is not None else "n/a"
            print(
                f"| {dataset} | x{scale} | {b.psnr:.2f} / {b.ssim:.4f} | {s.psnr:.2f} / "
                f"{s.ssim:.4f} | +{s.psnr - b.psnr:.2f} dB | {eccv_text} | {tpami:.2f}, "
                f"+{tpami - b.psnr:.2f} dB | {bf16_text} |"
            )


if __name__ == "__main__":
    main()
