"""The shipped weights beat bicubic on Set5 by at least 1 dB at every scale (paper protocol)."""

from __future__ import annotations

import pytest

from srcnn_fast.evaluate import bicubic_upscaler, evaluate
from srcnn_fast.infer import Upscaler

MIN_GAIN_DB = 1.0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_weights_beat_bicubic_on_set5(scale: int, data_dir) -> None:
    up = Upscaler(scale, backend="reference")
    result = evaluate(data_dir / "Set5", scale, {"bicubic": bicubic_upscaler(scale), "srcnn": up})
    bicubic, srcnn = result.mean("bicubic"), result.mean("srcnn")
    gain = srcnn.psnr - bicubic.psnr
    assert gain >= MIN_GAIN_DB, f"x{scale}: SRCNN {srcnn.psnr:.2f} vs bicubic {bicubic.psnr:.2f}"
    assert srcnn.ssim > bicubic.ssim
