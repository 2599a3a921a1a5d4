"""Do the JPEG-aware weights help on frames decoded from compressed video? Measured on the T91
hold-out (never Set5/Set14), as ``upscale`` would see the frames of an H.264 file.

    python tools/jpeg_video_probe.py --jpeg-weights runs/jpeg/srcnn_x2_jpeg.npz [--scale 2]
        [--crf 18 23 28 33] [--frames 12]

Each hold-out image (the JPEG-aware weights' ``val_images``) becomes a short clip: a window
panning one HR pixel per frame across it, each frame downscaled as training does (MATLAB's
imresize) and encoded with libx264 (PyAV, yuv420p, preset medium, the given CRF); the decoded
frames are upscaled by bicubic and by both sets of weights and scored on Y against the HR
frames (the paper's protocol: 8-bit output, the border of ``scale`` pixels cropped). Prints
the mean PSNR gains and the mean macroblock QP (what ``upscale`` reads from a stream,
:mod:`srcnn_fast.video_quantiser`) per CRF, then, clip by clip, the QP threshold that
serves the clips best: the evidence for ``QP_THRESHOLDS``.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
from jpeg_threshold import holdout_names, holdout_parser  # tools/, beside this script

from srcnn_fast.evaluate import bicubic_upscaler, crop_border, luma_255, psnr
from srcnn_fast.imagefile import read_image
from srcnn_fast.imageops import matlab_downscale
from srcnn_fast.infer import Upscaler, shipped_weights_path
from srcnn_fast.video_quantiser import QuantiserTally


def clip_frames(hr: np.ndarray, scale: int, frames: int) -> list[np.ndarray]:
    """HR frames: a window panning diagonally one pixel per frame, sized so that its LR
    frame has even sides (yuv420p)."""
    step = 2 * scale
    height = (hr.shape[0] - frames) // step * step
    width = (hr.shape[1] - frames) // step * step
    return [hr[i : i + height, i : i + width, :3] for i in range(frames)]


#: Each encoder as its users run it (container, options), and the CRFs probed: libx264's
#: preset medium, libvpx-vp9's "good" deadline with its usual speed for files (CRF mode: b=0).
ENCODERS = {
    "libx264": ("mp4", {"preset": "medium"}, [18, 21, 23, 25, 27, 29, 31, 33]),
    "libvpx-vp9": (
        "webm",
        {"b": "0", "deadline": "good", "cpu-used": "2", "row-mt": "1"},
        [20, 28, 34, 40, 46, 52, 58, 63],
    ),
}


def roundtrip(
    frames: list[np.ndarray], crf: int, encoder: str = "libx264"
) -> tuple[list[np.ndarray], float]:
    """The frames through the encoder (yuv420p, ``ENCODERS``) and back, and their mean
    quantiser as ``upscale`` reads it (H.264: macroblock QP; VP9: q-index)."""
    import av

    container, options, _ = ENCODERS[encoder]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=24)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), **options}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    tally = QuantiserTally()
    with av.open(buffer) as decoded:
        stream = decoded.streams.video[0]
        stream.codec_context.options = {"export_side_data": "venc_params"}
        out = []
        for frame in decoded.decode(stream):
            tally.add(frame)
            out.append(frame.to_ndarray(format="rgb24"))
    if tally.mean is None:
        raise SystemExit(f"this FFmpeg's {encoder} decoder exported no quantisers (venc_params)")
    return out, tally.mean


def best_threshold(clips: list[tuple[float, float]]) -> tuple[float, float]:
    """(threshold, mean gain over the clean weights) of the threshold that does best on
    ``clips`` ((mean quantiser, JPEG-aware - clean dB) each): the JPEG-aware weights from it
    up. Candidates lie halfway between neighbouring clips' quantisers (rounded to a tenth),
    so that a clip a hair off either side is judged as the probe's were, plus "never" (inf)."""
    values = sorted({qp for qp, _ in clips})
    candidates = [round((a + b) / 2, 1) for a, b in itertools.pairwise(values)]
    candidates += [values[0] - 0.5, float("inf")]
    scored = [
        (float(np.mean([gain if qp >= t else 0.0 for qp, gain in clips])), t) for t in candidates
    ]
    gain, threshold = max(scored)  # a tie goes to the higher threshold: the clean weights
    return threshold, gain


def main() -> None:
    parser = holdout_parser(__doc__)
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="libx264")
    parser.add_argument("--crf", type=int, nargs="+", help="default: the encoder's list")
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
    scale = args.scale
    crfs = args.crf or ENCODERS[args.codec][2]
    jpeg_path = args.jpeg_weights or shipped_weights_path(scale, "jpeg")
    names = holdout_names(jpeg_path)
    up = Upscaler(scale, backend=args.backend, jpeg_weights=jpeg_path)
    bicubic = bicubic_upscaler(scale)
    print(f"T91 hold-out x{scale}, {len(names)} clips of {args.frames} frames, {args.codec}")
    print(
        "| CRF | mean quantiser (clips' range) | bicubic dB | clean weights gain | JPEG-aware gain "
        "| JPEG-aware - clean |"
    )
    print("|---|---|---|---|---|---|")
    clips: list[tuple[float, float]] = []  # (mean QP, JPEG-aware - clean) of each clip
    for crf in [None, *crfs]:
        scores: dict[str, list[float]] = {"bicubic": [], "clean": [], "jpeg": []}
        qps = []
        for name in names:
            hr_frames = clip_frames(read_image(Path(args.data) / name), scale, args.frames)
            lr_frames = [matlab_downscale(f, scale) for f in hr_frames]
            if crf is not None:
                lr_frames, qp = roundtrip(lr_frames, crf, args.codec)
                qps.append(qp)
            first = len(scores["clean"])
            for hr, lr in zip(hr_frames, lr_frames, strict=True):
                truth = crop_border(luma_255(hr), scale)
                outputs = {
                    "bicubic": bicubic(lr),
                    "clean": up(lr, degradation="clean"),
                    "jpeg": up(lr, degradation="jpeg"),
                }
                for method, out in outputs.items():
                    scores[method].append(psnr(crop_border(luma_255(out), scale), truth))
            if crf is not None:
                gain = np.mean(scores["jpeg"][first:]) - np.mean(scores["clean"][first:])
                clips.append((qps[-1], float(gain)))
        b, c, j = (float(np.mean(scores[m])) for m in ("bicubic", "clean", "jpeg"))
        shown = "lossless" if crf is None else str(crf)
        qp = "-" if crf is None else f"{np.mean(qps):.1f} ({min(qps):.1f}-{max(qps):.1f})"
        print(
            f"| {shown} | {qp} | {b:.2f} | {c - b:+.2f} | {j - b:+.2f} | {j - c:+.3f} |",
            flush=True,
        )
    threshold, gain = best_threshold(clips)
    always = float(np.mean([g for _, g in clips]))
    print(
        f"Best threshold over the {len(clips)} compressed clips: {threshold:g} (JPEG-aware "
        f"weights from it up): {gain:+.3f} dB over the clean weights on every clip, "
        f"{gain - always:+.3f} over the JPEG-aware weights on every clip"
    )


if __name__ == "__main__":
    main()
