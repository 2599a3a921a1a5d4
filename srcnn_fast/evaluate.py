"""PSNR / SSIM on a benchmark folder, with the SRCNN paper's protocol.

Protocol (``../shared/data/README.md``): upscale ``img_NNN_LR.png`` by S, round and clip to
8 bits, convert both it and ``img_NNN_HR.png`` to BT.601 luma in [16, 235], crop S pixels from
every border, PSNR = 10 log10(255^2 / MSE), averaged over the set. SSIM is Wang et al.'s (11x11
Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03), over the same cropped luma.

JPEG inputs (``jpeg_quality``): each LR image is first saved as a JPEG by Pillow at that quality
and decoded as ``upscale`` decodes files; an :class:`~srcnn_fast.infer.Upscaler` also gets the
JPEG file's bytes, so that its "auto" choice sees what it would see on that file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import imageops
from .errors import DataError
from .imagefile import decode_image, read_image
from .infer import Upscaler
from .jpeg import image_hint, jpeg_bytes

ImageUpscaler = Callable[[np.ndarray], np.ndarray]

#: Published SRCNN PSNR (dB) under this protocol, by (set, scale) (DESIGN.md section 5): the
#: 9-1-5 model trained on T91 (ECCV 2014, Set5 only), and 9-5-5 trained on ImageNet (TPAMI 2016).
ECCV_2014_PSNR = {("Set5", 2): 36.34, ("Set5", 3): 32.39, ("Set5", 4): 30.09}
TPAMI_2016_PSNR = {
    ("Set5", 2): 36.66, ("Set5", 3): 32.75, ("Set5", 4): 30.49,
    ("Set14", 2): 32.45, ("Set14", 3): 29.30, ("Set14", 4): 27.50,
}  # fmt: skip


def luma_255(image: np.ndarray) -> np.ndarray:
    """8-bit image -> float64 BT.601 luma on the 0..255 scale (grayscale is its own luma)."""
    values = imageops.to_float(image).astype(np.float64)
    if values.ndim == 3:
        values = imageops.rgb_to_luma(values[..., :3]).astype(np.float64)
    return values * 255.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _gaussian_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    n = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(x, n, axis=0) @ kernel
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=1) @ kernel


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11x11 Gaussian window, 'valid' filtering."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if min(a.shape) < 11:
        raise DataError(f"SSIM needs images at least 11 pixels on a side, got {a.shape}")
    t = np.arange(11) - 5.0
    kernel = np.exp(-(t * t) / (2 * 1.5**2))
    kernel /= kernel.sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gaussian_valid(a, kernel), _gaussian_valid(b, kernel)
    var_a = _gaussian_valid(a * a, kernel) - mu_a**2
    var_b = _gaussian_valid(b * b, kernel) - mu_b**2
    cov = _gaussian_valid(a * b, kernel) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def crop_border(x: np.ndarray, border: int) -> np.ndarray:
    return x[border : x.shape[0] - border, border : x.shape[1] - border] if border else x


def score(output: np.ndarray, truth: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of an 8-bit output against the 8-bit ground truth, paper protocol."""
    y_out = crop_border(luma_255(output), scale)
    y_true = crop_border(luma_255(truth), scale)
    return psnr(y_out, y_true), ssim(y_out, y_true)


@dataclass
class ImagePair:
    name: str
    lr: Path
    hr: Path


def find_pairs(folder: str | Path, scale: int) -> list[ImagePair]:
    """``*_LR.png`` / ``*_HR.png`` pairs in ``folder/xS`` (or in ``folder`` itself)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such evaluation folder")
    base = folder / f"x{scale}" if (folder / f"x{scale}").is_dir() else folder
    pairs = []
    for lr in sorted(base.glob("*_LR.*")):
        hr = lr.with_name(re.sub(r"_LR(\.[^.]+)$", r"_HR\1", lr.name))
        if hr.exists():
            pairs.append(ImagePair(lr.name.rsplit("_LR", 1)[0], lr, hr))
    if not pairs:
        raise DataError(f"{base}: no *_LR.* / *_HR.* image pairs for scale {scale}")
    return pairs


@dataclass
class Scores:
    psnr: float
    ssim: float


@dataclass
class EvalRow:
    name: str
    methods: dict[str, Scores] = field(default_factory=dict)
    #: Outputs per method plus ``"ground truth"``, kept only when asked (for figures).
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResult:
    dataset: str
    scale: int
    rows: list[EvalRow]
    #: The quality the LR images were JPEG-compressed at; None: the clean LR files.
    jpeg_quality: int | None = None

    def mean(self, method: str) -> Scores:
        return Scores(
            float(np.mean([r.methods[method].psnr for r in self.rows])),
            float(np.mean([r.methods[method].ssim for r in self.rows])),
        )

    def methods(self) -> list[str]:
        return list(self.rows[0].methods) if self.rows else []

    def table(self) -> str:
        """Per-image and mean PSNR (dB) / SSIM, one column pair per method."""
        methods = self.methods()
        width = max([len(r.name) for r in self.rows] + [4])
        jpeg = "" if self.jpeg_quality is None else f" JPEG q={self.jpeg_quality}"
        head = f"{self.dataset} x{self.scale}{jpeg}".ljust(width) + "".join(
            f" | {m + ' PSNR':>13} {'SSIM':>6}" for m in methods
        )
        lines = [head, "-" * len(head)]
        for row in [*self.rows, EvalRow("mean", {m: self.mean(m) for m in methods})]:
            if row.name == "mean":
                lines.append("-" * len(head))
            lines.append(
                row.name.ljust(width)
                + "".join(
                    f" | {row.methods[m].psnr:13.2f} {row.methods[m].ssim:6.4f}" for m in methods
                )
            )
        return "\n".join(lines)


def bicubic_upscaler(scale: int) -> ImageUpscaler:
    """The baseline: the same pipeline with bicubic alone on the luma."""

    def run(image: np.ndarray) -> np.ndarray:
        return imageops.upscale_image(
            image, scale, lambda luma: imageops.bicubic_upscale(luma, scale)
        )

    return run


def evaluate(
    folder: str | Path,
    scale: int,
    methods: dict[str, ImageUpscaler],
    keep_images: bool = False,
    jpeg_quality: int | None = None,
) -> EvalResult:
    """Score every method on every pair of the folder (keeping the outputs if asked), on the
    LR files or, with ``jpeg_quality``, on JPEGs of them (see the module docstring)."""
    rows = []
    for pair in find_pairs(folder, scale):
        lr, hr = read_image(pair.lr), read_image(pair.hr)
        source: Path | bytes = pair.lr
        if jpeg_quality is not None:
            source = jpeg_bytes(lr, jpeg_quality)
            lr = decode_image(source, f"{pair.lr} as JPEG q={jpeg_quality}")[0]
        row = EvalRow(pair.name)
        for method, run in methods.items():
            out = run(lr, hint=image_hint(source)) if isinstance(run, Upscaler) else run(lr)
            if out.shape != hr.shape:
                raise DataError(
                    f"{pair.lr}: upscaled to {out.shape}, but {pair.hr.name} is {hr.shape}"
                )
            row.methods[method] = Scores(*score(out, hr, scale))
            if keep_images:
                row.images[method] = out
        if keep_images:
            row.images["ground truth"] = hr
        rows.append(row)
    return EvalResult(Path(folder).name, scale, rows, jpeg_quality)
