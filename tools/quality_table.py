"""Print the README's quality table: mean PSNR/SSIM of bicubic and the shipped weights on
Set5 and Set14 at x2/x3/x4, with the paper's protocol (the numbers `srcnn-fast eval` prints).

    python tools/quality_table.py [--data ../shared/data] [--backend reference]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from srcnn_fast.evaluate import bicubic_upscaler, evaluate
from srcnn_fast.infer import Upscaler

# Published SRCNN results (DESIGN.md section 5): 9-1-5 trained on T91 (ECCV 2014, Set5), and
# 9-5-5 trained on ImageNet (TPAMI 2016), the latter with the Set14 figures.
ECCV = {("Set5", 2): 36.34, ("Set5", 3): 32.39, ("Set5", 4): 30.09}
TPAMI = {
    ("Set5", 2): 36.66, ("Set5", 3): 32.75, ("Set5", 4): 30.49,
    ("Set14", 2): 32.45, ("Set14", 3): 29.30, ("Set14", 4): 27.50,
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    parser.add_argument("--backend", default="reference")
    args = parser.parse_args()
    print(
        "| set | scale | bicubic PSNR / SSIM | SRCNN (shipped) PSNR / SSIM | gain "
        "| ECCV 2014 (9-1-5, T91) | TPAMI 2016 (9-5-5, ImageNet): PSNR, gain |"
    )
    print("|---|---|---|---|---|---|---|")
    for dataset in ("Set5", "Set14"):
        for scale in (2, 3, 4):
            up = Upscaler(scale, backend=args.backend)
            result = evaluate(
                Path(args.data) / dataset, scale, {"bicubic": bicubic_upscaler(scale), "srcnn": up}
            )
            b, s = result.mean("bicubic"), result.mean("srcnn")
            eccv = f"{ECCV[dataset, scale]:.2f}" if (dataset, scale) in ECCV else ""
            tpami = TPAMI[dataset, scale]
            print(
                f"| {dataset} | x{scale} | {b.psnr:.2f} / {b.ssim:.4f} | {s.psnr:.2f} / "
                f"{s.ssim:.4f} | +{s.psnr - b.psnr:.2f} dB | {eccv} | {tpami:.2f}, "
                f"+{tpami - b.psnr:.2f} dB |"
            )


if __name__ == "__main__":
    main()
