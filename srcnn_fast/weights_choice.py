"""Which weights an input gets, clean or JPEG-aware, and why: the rules alone.

Below the library (:mod:`srcnn_fast.infer`), the file code (:mod:`srcnn_fast.jpeg`) and the
video code (:mod:`srcnn_fast.video_quantiser`): those measure an input (a JPEG file's quality
from its tables, a stream's mean quantiser from its first frames) and hand the measurement to
:class:`~srcnn_fast.infer.Upscaler` as a hint; the thresholds and the choice with its reason
live here, once. Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEGRADATIONS",
    "JPEG_AUTO_THRESHOLDS",
    "QP_THRESHOLDS",
    "ImageHint",
    "WeightsChoice",
    "auto_threshold",
    "choose_for_image",
    "choose_for_video",
    "qp_threshold",
    "quantiser_name",
]

#: What an input went through, for the choice of weights (:class:`srcnn_fast.infer.Upscaler`):
#: "auto" decides per file, "clean" and "jpeg" force a choice.
DEGRADATIONS = ("auto", "clean", "jpeg")
#: "auto" uses the JPEG-aware weights for JPEG files of this estimated quality or lower, by
#: scale: the highest quality up to which they beat the clean weights on the T91 hold-out
#: (tools/jpeg_threshold.py, docs/training.md).
JPEG_AUTO_THRESHOLDS = {2: 88, 3: 88, 4: 88}
#: The threshold of a scale not measured (JPEG-aware weights of one's own, ``jpeg_weights=``).
JPEG_AUTO_THRESHOLD = 85
#: "auto" uses the JPEG-aware weights for a stream whose mean quantiser over its first frames
#: is at least this, by codec (PyAV's ``codec_context.name``) and scale, each on its codec's
#: own scale (tools/jpeg_video_probe.py --codec, docs/training.md).
QP_THRESHOLDS: dict[str, dict[int, float]] = {
    "h264": {2: 29.5, 3: 30.7, 4: 33.1},
    "vp9": {2: 155.5, 3: 180.4, 4: 180.4},
}
#: How a message names each codec and its quantiser.
QUANTISER_NAMES = {"h264": ("H.264", "QP"), "vp9": ("VP9", "q-index")}


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights an input gets, and why (``upscale -v`` prints it)."""

    #: "clean" or "jpeg": which shipped weights; "given": the upscaler's own (``weights=``).
    weights: str
    #: Why, in words: "JPEG quality 60 <= 85", "PNG, not a JPEG", "asked for jpeg" ...
    reason: str

    def __str__(self) -> str:
        kind = {"jpeg": "JPEG-aware weights", "clean": "clean weights"}.get(self.weights)
        return f"{kind} ({self.reason})" if kind else f"the weights given ({self.reason})"


@dataclass(frozen=True)
class ImageHint:
    """What the file code measured about an image's file (:func:`srcnn_fast.jpeg.image_hint`):
    its kind for a message ("PNG", "JPEG") and, for a JPEG, the quality it was written at."""

    kind: str
    jpeg_quality: int | None = None


def auto_threshold(scale: int) -> int:
    """The highest estimated JPEG quality for which "auto" picks the JPEG-aware weights."""
    return JPEG_AUTO_THRESHOLDS.get(scale, JPEG_AUTO_THRESHOLD)


def qp_threshold(codec: str, scale: int) -> float | None:
    """The mean quantiser from which "auto" picks the JPEG-aware weights for a stream of
    ``codec``; None: not measured."""
    return QP_THRESHOLDS.get(codec, {}).get(scale)


def quantiser_name(codec: str) -> tuple[str, str]:
    """("H.264", "QP"): the codec and its quantiser, for messages."""
    return QUANTISER_NAMES.get(codec, (codec, "quantiser"))


def choose_for_image(hint: ImageHint | None, scale: int) -> WeightsChoice:
    """ "auto"'s choice for an image: the JPEG-aware weights for a JPEG of quality at most the
    scale's threshold, the clean ones for everything else (None: a bare array, whose history
    cannot be known)."""
    quality = None if hint is None else hint.jpeg_quality
    if quality is None:
        return WeightsChoice("clean", f"{'an array' if hint is None else hint.kind}, not a JPEG")
    threshold = auto_threshold(scale)
    if quality <= threshold:
        return WeightsChoice("jpeg", f"JPEG quality {quality} <= {threshold}")
    return WeightsChoice("clean", f"JPEG quality {quality} > {threshold}")


def choose_for_video(codec: str, mean_qp: float | None, scale: int) -> WeightsChoice:
    """ "auto"'s choice for a video stream: the JPEG-aware weights for an H.264 or VP9 stream
    whose mean quantiser over its first frames reaches the threshold for its codec and the
    scale, the clean ones for finer quantisers and for codecs whose quantiser is not read."""
    name, unit = quantiser_name(codec)
    if codec not in QP_THRESHOLDS:
        return WeightsChoice("clean", f"{codec} video: its quantiser is not read")
    threshold = qp_threshold(codec, scale)
    if threshold is None:
        return WeightsChoice("clean", f"no {name} {unit} threshold measured for x{scale}")
    if mean_qp is None:
        return WeightsChoice("clean", f"{name} video without exported {unit}s")
    if mean_qp >= threshold:
        return WeightsChoice("jpeg", f"{name} mean {unit} {mean_qp:.1f} >= {threshold:g}")
    return WeightsChoice("clean", f"{name} mean {unit} {mean_qp:.1f} < {threshold:g}")
