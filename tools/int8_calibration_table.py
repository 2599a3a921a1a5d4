"""What each step of the int8 calibration buys: docs/performance.md's "What it costs" table.

    python tools/int8_calibration_table.py [--scale 3] [--input-bits 16] [--data ../shared/data]

For the shipped weights of one scale, calibrates on T91 with one choice changed at a time
(conv1 and conv2 rounded to nearest or by GPTQ; conv1's clip rule; conv3 refitted or not) and
prints each variant's mean PSNR against float32 on Set5 and Set14, through the NumPy emulation
(``int8.emulate``, conv3 in bf16 where the int8 kernel runs it so). ~10 minutes a scale on 2
cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from srcnn_fast import calibrate as cal
from srcnn_fast import imageops
from srcnn_fast.backends import int8
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.evaluate import find_pairs
from srcnn_fast.imagefile import read_image
from srcnn_fast.infer import shipped_weights_path
from srcnn_fast.model import SRCNNWeights


def test_images(data: Path, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(set name, LR luma in [0, 1], HR luma 0..255) of Set5 and Set14."""
    images = []
    for name in ("Set5", "Set14"):
        for pair in find_pairs(data / name / f"x{scale}", scale):
            lr = imageops.image_luma(imageops.to_float(read_image(pair.lr)))
            hr = imageops.image_luma(imageops.to_float(read_image(pair.hr))) * 255.0
            images.append((name, lr.astype(np.float32), hr.astype(np.float64)))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--input-bits", type=int, choices=(8, 16), default=16)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    args = parser.parse_args()
    data, scale, bits = Path(args.data), args.scale, args.input_bits
    weights = SRCNNWeights.load(shipped_weights_path(scale))
    reference = ReferenceBackend(weights)
    tests = test_images(data, scale)
    exact = [cal._psnr(reference.upscale_luma(lr), hr, scale) for _, lr, hr in tests]
    bf16 = int8.conv3_in_bf16(scale)

    def score(params: int8.Int8Params) -> str:
        losses: dict[str, list[float]] = {"Set5": [], "Set14": []}
        for (name, lr, hr), base in zip(tests, exact, strict=True):
            out = int8.emulate(weights, lr, params, bf16)
            losses[name].append(cal._psnr(out, hr, scale) - base)
        return " | ".join(f"{np.mean(v):+.4f}" for v in losses.values())

    images = [
        cal.CalibrationImage(lr, hr, reference.upscale_luma(lr), 0.0)
        for lr, hr in cal.calibration_images(data / "T91", scale)
    ]
    s1 = cal.conv1_scales(weights)
    fold = int8.interior_fold(weights)
    rounded = np.clip(int8.round_even(fold / s1), -int8.WEIGHT_MAX, int8.WEIGHT_MAX)
    gptq = cal.conv1_integers(weights, [(im.lr, im.hr) for im in images], s1, bits)
    print(f"x{scale}, {bits}-bit input: | calibration | Set5 | Set14 |")
    for w1_name, w1q in (("to nearest", rounded), ("GPTQ", gptq)):
        sums, z1 = cal.conv1_samples(weights, images, w1q, bits)
        for rule in cal.CLIP_RULES:
            clip = cal.clip_values(z1, rule)
            for w2_name in ("to nearest", "GPTQ"):
                params = cal.conv2_params(weights, z1, clip, w1q, bits, w2_name == "GPTQ")
                label = f"conv1 {w1_name}, conv2 {w2_name}, clip at the {rule}"
                print(f"| {label} | {score(params)} |", flush=True)
                if w1_name == "GPTQ" and w2_name == "GPTQ":
                    refitted, _ = cal.with_refitted_conv3(weights, images, sums, params)
                    print(f"| {label}, conv3 refitted | {score(refitted)} |", flush=True)


if __name__ == "__main__":
    main()
