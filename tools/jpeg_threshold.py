"""Measure the quality below which the JPEG-aware weights beat the clean ones, on the T91
hold-out (the images neither set of weights trained on; never Set5/Set14): the evidence for
``srcnn_fast.jpeg.JPEG_AUTO_THRESHOLDS``.

    python tools/jpeg_threshold.py --jpeg-weights runs/jpeg/srcnn_x2_jpeg.npz [--scale 2]
        [--data ../shared/data/T91] [--qualities 50 60 70 80 85 90 95]

Each hold-out image (the ``val_images`` the JPEG-aware weights' provenance records) is cropped
to a multiple of the scale and downscaled as training does (MATLAB's imresize); its LR image is
then saved as a JPEG by Pillow at each quality and scored as ``srcnn-fast eval --jpeg Q``
scores. Prints the mean PSNR of bicubic and both sets of weights per quality, and the highest
quality up to which the JPEG-aware weights win at every quality measured.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from srcnn_fast.evaluate import bicubic_upscaler, evaluate
from srcnn_fast.imagefile import read_image, write_image
from srcnn_fast.imageops import matlab_downscale
from srcnn_fast.infer import Upscaler, shipped_weights_path
from srcnn_fast.model import SRCNNWeights


def holdout_pairs(data: Path, names: list[str], scale: int, folder: Path) -> None:
    """Write ``folder/NAME_HR.png`` and ``NAME_LR.png`` for each hold-out image."""
    for name in names:
        hr = read_image(data / name)
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale, :3]
        stem = Path(name).stem
        write_image(folder / f"{stem}_HR.png", hr)
        write_image(folder / f"{stem}_LR.png", matlab_downscale(hr, scale))


def holdout_parser(doc: str) -> argparse.ArgumentParser:
    """The options the hold-out tools share (this one and jpeg_video_probe)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    here = Path(__file__).resolve().parents[2]
    parser.add_argument("--data", default=str(here / "shared/data/T91"))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--jpeg-weights", help="default: the shipped srcnn_xS_jpeg.npz")
    parser.add_argument("--backend", default="cpu")
    return parser


def holdout_names(jpeg_path: str | Path) -> list[str]:
    """The T91 images the JPEG-aware weights held out (their provenance's ``val_images``)."""
    return SRCNNWeights.load(jpeg_path).provenance["val_images"]


def main() -> None:
    parser = holdout_parser(__doc__)
    parser.add_argument("--clean-weights", help="default: the shipped srcnn_xS.npz")
    parser.add_argument(
        "--qualities", type=int, nargs="+", default=[30, 50, 60, 70, 75, 80, 85, 90, 95]
    )
    args = parser.parse_args()
    scale = args.scale
    jpeg_path = args.jpeg_weights or shipped_weights_path(scale, "jpeg")
    clean_path = args.clean_weights or shipped_weights_path(scale)
    names = holdout_names(jpeg_path)
    clean_seen = set(SRCNNWeights.load(clean_path).provenance.get("train_images", ()))
    if clean_seen & set(names):
        raise SystemExit(
            f"{clean_path} trained on hold-out images: {sorted(clean_seen & set(names))}"
        )
    methods = {
        "bicubic": bicubic_upscaler(scale),
        "clean": Upscaler(scale, clean_path, args.backend),
        "jpeg": Upscaler(scale, jpeg_path, args.backend),
    }
    print(f"T91 hold-out x{scale}, {len(names)} images: {', '.join(names)}")
    print("| input | bicubic dB | clean weights gain | JPEG-aware gain | JPEG-aware - clean |")
    print("|---|---|---|---|---|")
    wins: dict[int, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        holdout_pairs(Path(args.data), names, scale, Path(tmp))
        for quality in [None, *sorted(args.qualities)]:
            result = evaluate(tmp, scale, methods, jpeg_quality=quality)
            b, c, j = (result.mean(m).psnr for m in ("bicubic", "clean", "jpeg"))
            if quality is not None:
                wins[quality] = j > c
            shown = "clean PNG" if quality is None else f"JPEG q={quality}"
            print(f"| {shown} | {b:.2f} | {c - b:+.2f} | {j - b:+.2f} | {j - c:+.3f} |", flush=True)
    threshold = None
    for quality in sorted(wins):
        if not wins[quality]:
            break
        threshold = quality
    print(f"JPEG-aware weights win at every quality up to: {threshold}")


if __name__ == "__main__":
    main()
