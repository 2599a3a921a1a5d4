"""The shipped weights reach the ECCV 2014 SRCNN figures on Set5 at every scale (paper protocol),
the floor that issue 3 and the README's quality table claim, and their Set14 gains over bicubic
do not fall below the README's table. Evaluation is deterministic (the NumPy reference), so the
comparison needs no tolerance beyond the table's rounding: a retrained file that falls short
fails here, with its numbers. ``precision="bf16"`` stays within 0.01 dB of float32 on both
sets (where the CPU has AVX512_BF16), ``precision="int8"`` within 0.03 dB (issue 28): the
kernel where the CPU has VNNI, else its NumPy emulation, so every machine checks the bar."""

from __future__ import annotations

import numpy as np
import pytest

from srcnn_fast import imageops
from srcnn_fast.backends import int8
from srcnn_fast.backends.simd import bf16_problem, int8_problem
from srcnn_fast.evaluate import ECCV_2014_PSNR, bicubic_upscaler, evaluate
from srcnn_fast.infer import Upscaler


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_reach_the_eccv_figures_on_set5(scale: int, data_dir) -> None:
    up = Upscaler(scale, backend="reference")
    result = evaluate(data_dir / "Set5", scale, {"bicubic": bicubic_upscaler(scale), "srcnn": up})
    bicubic, srcnn = result.mean("bicubic"), result.mean("srcnn")
    paper = ECCV_2014_PSNR["Set5", scale]
    assert srcnn.psnr >= paper, (
        f"Set5 x{scale}: SRCNN {srcnn.psnr:.3f} dB < ECCV 2014 {paper:.2f} dB "
        f"(bicubic {bicubic.psnr:.3f} dB, short by {paper - srcnn.psnr:.3f} dB)"
    )
    assert srcnn.ssim > bicubic.ssim, f"SSIM {srcnn.ssim:.4f} <= bicubic {bicubic.ssim:.4f}"


#: Set14 gain over bicubic (dB) of the shipped weights, as the README's quality table prints it
#: (rounded to 0.01 dB): a floor against regressions, below issue 3's target (the TPAMI 2016
#: gains: +2.22 / +1.76 / +1.50 dB).
README_SET14_GAIN = {2: 2.21, 3: 1.68, 4: 1.40}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_keep_the_readme_set14_gains(scale: int, data_dir) -> None:
    up = Upscaler(scale, backend="reference")
    result = evaluate(data_dir / "Set14", scale, {"bicubic": bicubic_upscaler(scale), "srcnn": up})
    gain = result.mean("srcnn").psnr - result.mean("bicubic").psnr
    floor = README_SET14_GAIN[scale] - 0.005  # the table rounds to 0.01 dB
    assert gain >= floor, f"Set14 x{scale}: gain {gain:.3f} dB < the README's {floor + 0.005:.2f}"


#: How far ``precision="bf16"`` may fall below float32 (issue 21): mean PSNR on each set.
BF16_PSNR_LOSS = 0.01


@pytest.mark.skipif(bf16_problem() is not None, reason=str(bf16_problem()))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bf16_stays_within_a_hundredth_of_a_db(scale: int, data_dir) -> None:
    # The cpu kernel both ways on Set5 and Set14 (measured: 0.0015-0.0074 dB below; without
    # the activations' centring Set5 x2 lost 0.037 dB, in all three layers 0.018 with it).
    fp32 = Upscaler(scale, backend="cpu")
    bf16 = Upscaler(scale, backend="cpu", precision="bf16")
    for name in ("Set5", "Set14"):
        result = evaluate(data_dir / name, scale, {"fp32": fp32, "bf16": bf16})
        loss = result.mean("fp32").psnr - result.mean("bf16").psnr
        assert loss <= BF16_PSNR_LOSS, (
            f"{name} x{scale}: bf16 {loss:.4f} dB below float32 (max {BF16_PSNR_LOSS})"
        )


#: How far ``precision="int8"`` may fall below float32 (issue 28): mean PSNR on each set.
INT8_PSNR_LOSS = 0.03


class _EmulatedInt8:
    """``Upscaler(precision="int8")``'s pipeline with the network emulated in NumPy
    (``int8.emulate``): what the kernel computes, to its float32 rounding order."""

    def __init__(self, scale: int) -> None:
        self.up = Upscaler(scale, backend="reference")
        weights = self.up.weights
        params = int8.params_for(weights)
        bf16 = int8.conv3_in_bf16(scale) and bf16_problem() is None

        def network(luma: np.ndarray) -> np.ndarray:
            return int8.emulate(weights, luma, params, bf16).astype(np.float32)

        self.network = network

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return imageops.upscale_image(image, self.up.scale, self.network)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_int8_stays_within_three_hundredths_of_a_db(scale: int, data_dir) -> None:
    # The shipped calibrations (measured with the kernel on a Zen 4: Set5 -0.024 / -0.026 /
    # -0.010 dB, Set14 -0.005 / -0.014 / -0.007 at x2 / x3 / x4: the README's table).
    fp32 = Upscaler(scale, backend="cpu")
    quantised = (
        Upscaler(scale, backend="cpu", precision="int8")
        if int8_problem() is None
        else _EmulatedInt8(scale)
    )
    for name in ("Set5", "Set14"):
        result = evaluate(data_dir / name, scale, {"fp32": fp32, "int8": quantised})
        loss = result.mean("fp32").psnr - result.mean("int8").psnr
        assert loss <= INT8_PSNR_LOSS, (
            f"{name} x{scale}: int8 {loss:.4f} dB below float32 (max {INT8_PSNR_LOSS})"
        )
