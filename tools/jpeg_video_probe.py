"""Do the JPEG-aware weights help on frames decoded from compressed video? Measured on the T91
hold-out (never Set5/Set14), as ``upscale`` would see the frames of an H.264 file.

    python tools/jpeg_video_probe.py --jpeg-weights runs/jpeg/srcnn_x2_jpeg.npz [--scale 2]
        [--crf 18 23 28 33] [--frames 12]

Each hold-out image (the JPEG-aware weights' ``val_images``) becomes a short clip: a window
panning one HR pixel per frame across it, each frame downscaled as training does (MATLAB's
imresize) and encoded with libx264 (PyAV, yuv420p, preset medium, the given CRF); the decoded
frames are upscaled by bicubic and by both sets of weights and scored on Y against the HR
frames (the paper's protocol: 8-bit output, the border of ``scale`` pixels cropped). Prints
the mean PSNR gains per CRF.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from jpeg_threshold import holdout_names, holdout_parser  # tools/, beside this script

from srcnn_fast.evaluate import bicubic_upscaler, crop_border, luma_255, psnr
from srcnn_fast.imagefile import read_image
from srcnn_fast.imageops import matlab_downscale
from srcnn_fast.infer import Upscaler, shipped_weights_path


def clip_frames(hr: np.ndarray, scale: int, frames: int) -> list[np.ndarray]:
    """HR frames: a window panning diagonally one pixel per frame, sized so that its LR
    frame has even sides (yuv420p)."""
    step = 2 * scale
    height = (hr.shape[0] - frames) // step * step
    width = (hr.shape[1] - frames) // step * step
    return [hr[i : i + height, i : i + width, :3] for i in range(frames)]


def h264_roundtrip(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as decoded:
        return [f.to_ndarray(format="rgb24") for f in decoded.decode(video=0)]


def main() -> None:
    parser = holdout_parser(__doc__)
    parser.add_argument("--crf", type=int, nargs="+", default=[18, 23, 28, 33])
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args()
    scale = args.scale
    jpeg_path = args.jpeg_weights or shipped_weights_path(scale, "jpeg")
    names = holdout_names(jpeg_path)
    up = Upscaler(scale, backend=args.backend, jpeg_weights=jpeg_path)
    bicubic = bicubic_upscaler(scale)
    print(f"T91 hold-out x{scale}, {len(names)} clips of {args.frames} frames, libx264")
    print("| CRF | bicubic dB | clean weights gain | JPEG-aware gain | JPEG-aware - clean |")
    print("|---|---|---|---|---|")
    for crf in [None, *args.crf]:
        scores: dict[str, list[float]] = {"bicubic": [], "clean": [], "jpeg": []}
        for name in names:
            hr_frames = clip_frames(read_image(Path(args.data) / name), scale, args.frames)
            lr_frames = [matlab_downscale(f, scale) for f in hr_frames]
            if crf is not None:
                lr_frames = h264_roundtrip(lr_frames, crf)
            for hr, lr in zip(hr_frames, lr_frames, strict=True):
                truth = crop_border(luma_255(hr), scale)
                outputs = {
                    "bicubic": bicubic(lr),
                    "clean": up(lr, degradation="clean"),
                    "jpeg": up(lr, degradation="jpeg"),
                }
                for method, out in outputs.items():
                    scores[method].append(psnr(crop_border(luma_255(out), scale), truth))
        b, c, j = (float(np.mean(scores[m])) for m in ("bicubic", "clean", "jpeg"))
        shown = "lossless" if crf is None else str(crf)
        print(f"| {shown} | {b:.2f} | {c - b:+.2f} | {j - b:+.2f} | {j - c:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
