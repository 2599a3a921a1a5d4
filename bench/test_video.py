"""Video throughput: our pipeline against the frames-to-PNG route and plain decode + encode.

For a synthetic 640x360 clip (moving gradients plus noise, libx264, 24 fps), upscaled x2
(1280x720) and x3 (1920x1080), on ``cpu`` fp32 (bf16 too where that precision exists) and on
``cuda`` where a GPU is, each route timed end to end, in one run:

- **pipeline**: ``upscale_video`` (decode, upscale, encode overlapped; every stage keeps its
  library's thread count: Numba's whole pool, libx264's automatic count);
- **serial**: the same three stages one after another (``overlap=False``), each on every
  core (Numba's whole pool, libx264's automatic thread count): on a CPU-only machine the
  floor the pipeline must not be slower than;
- **png route**: FFmpeg (through PyAV) writes the frames as PNGs, ``srcnn-fast upscale``
  upscales the folder, PyAV reassembles them: what people do today;
- **decode+encode**: decode, resize with FFmpeg's scaler, encode: the floor no upscaler beats.

Each stage is also timed alone (decode to planes; upscale of the decoded planes; encode,
as the decode+encode floor less the decode): "vs slowest stage" is the pipeline's time over
the slowest of them. In the serial route x264's own threads still run behind each encode
call (frame threads and lookahead keep encoding while the next frame is upscaled), so serial
is the loop a person writes, a little faster than a strict one-stage-at-a-time schedule: a
floor that errs in the serial loop's favour, never the pipeline's. All routes encode with
libx264 at the same CRF and preset.
Run (the full 10 s clip: about 15-20 minutes on 2 cores):

    pytest bench/test_video.py -s

``test_segmented_route_keeps_the_pipelines_speed`` times the segmented route (issue 29: the
clip cut into 2 s segments at its keyframes, each decoded, upscaled and encoded on its own,
then joined by remuxing) against one pass, x2 on ``cpu`` fp32, alternately, best of two each
(goal: at least 0.95x one pass's fps; about 2 minutes on 2 cores):

    pytest bench/test_video.py -s -k segmented

``SRCNN_BENCH_VIDEO_SECONDS=1`` shortens the clip (a smoke test). The table is printed and
written to ``.benchmarks/video.json``. Goals (issue 22): pipeline >= 3x the PNG route; on a
CPU no slower than serial; on a GPU within 1.3x of its slowest stage.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from srcnn_fast.backends import backend_problem
from srcnn_fast.infer import Upscaler

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

SECONDS = float(os.environ.get("SRCNN_BENCH_VIDEO_SECONDS", "10"))
RATE = 24
WIDTH, HEIGHT = 640, 360
ENCODE = {"crf": "18", "preset": "medium"}  # the pipeline's libx264 defaults
RESULTS = Path(__file__).resolve().parents[1] / ".benchmarks" / "video.json"


def make_clip(path: Path, keyint: int | None = None) -> int:
    """A synthetic clip: gradients moving at different speeds, plus noise; its frame count.
    ``keyint``: a keyframe every so many frames (default: libx264's, 250)."""
    frames = max(2, round(SECONDS * RATE))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    with av.open(str(path), "w") as container:
        options = {"crf": "20"} if keyint is None else {"crf": "20", "g": str(keyint)}
        stream = container.add_stream("libx264", rate=RATE, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            r = 127 + 100 * np.sin((x + 4 * i) / 37) * np.cos((y - 2 * i) / 23)
            g = 127 + 100 * np.sin((x - 3 * i) / 53 + y / 71)
            b = 127 + 100 * np.cos((y + 5 * i) / 29)
            rgb = np.stack([r, g, b], -1) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(rgb, 0, 255).astype(np.uint8), "rgb24")
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    return frames


def encode_frames(frames, path: Path, width: int, height: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE, options=dict(ENCODE))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(frames):
            frame.pts, frame.time_base = i, Fraction(1, RATE)  # PNGs carry no timestamps
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decode_encode(clip: Path, out: Path, scale: int) -> None:
    """The floor: decode, FFmpeg's bicubic resize, encode (no network)."""
    with av.open(str(clip)) as container:
        container.streams.video[0].thread_type = "AUTO"
        frames = (
            f.reformat(width=WIDTH * scale, height=HEIGHT * scale, interpolation="BICUBIC")
            for f in container.decode(video=0)
        )
        encode_frames(frames, out, WIDTH * scale, HEIGHT * scale)


def png_route(clip: Path, work: Path, scale: int, backend: str, precision: str) -> None:
    """FFmpeg writes PNGs, our CLI upscales the folder, FFmpeg reassembles."""
    from srcnn_fast.cli import main

    lr, hr = work / "lr", work / "hr"
    lr.mkdir()
    with av.open(str(clip)) as container, av.open(str(lr / "f%05d.png"), "w", "image2") as out:
        container.streams.video[0].thread_type = "AUTO"
        png = out.add_stream("png", rate=RATE)
        png.width, png.height, png.pix_fmt = WIDTH, HEIGHT, "rgb24"
        for frame in container.decode(video=0):
            out.mux(png.encode(frame.reformat(format="rgb24")))
        out.mux(png.encode(None))
    args = ["upscale", str(lr), "-o", str(hr), "-s", str(scale), "--backend", backend, "-q"]
    if precision != "fp32":
        args += ["--precision", precision]
    assert main(args) == 0
    with av.open(str(hr / f"f%05d_x{scale}.png"), "r", "image2") as frames:
        encode_frames(
            (f.reformat(format="yuv420p") for f in frames.decode(video=0)),
            work / "png_route.mp4",
            WIDTH * scale,
            HEIGHT * scale,
        )


def configurations() -> list[tuple[str, str]]:
    found = [("cpu", "fp32")]
    try:
        Upscaler(2, backend="cpu", precision="bf16")
        found.append(("cpu", "bf16"))
    except Exception:  # the precision does not exist (yet), or this CPU lacks it
        pass
    if backend_problem("cuda") is None:
        found.append(("cuda", "fp32"))
    return found


def decode_planes(clip: Path) -> list[list[np.ndarray]]:
    """Every frame's Y, U, V planes (the decode stage alone)."""
    with av.open(str(clip)) as container:
        container.streams.video[0].thread_type = "AUTO"
        return [
            [
                np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, : p.width].copy()
                for p in frame.planes
            ]
            for frame in container.decode(video=0)
        ]


def _routes(
    clip: Path,
    tmp_path: Path,
    scale: int,
    backend: str,
    precision: str,
    lr_planes: list[list[np.ndarray]],
    decode_only: float,
    encode_only: float,
) -> list[dict]:
    """The pipeline, serial and PNG routes on one backend; seconds and ratios."""
    from srcnn_fast.video import upscale_video

    config = f"{backend} {precision}"
    upscaler = Upscaler(scale, backend=backend, precision=precision)
    upscaler.upscale_planes([np.zeros((HEIGHT, WIDTH), np.uint8)])  # compile, warm up
    seconds = {}
    started = time.perf_counter()
    upscale_video(
        clip, tmp_path / "serial.mp4", upscaler, overlap=False, overwrite=True, progress=False
    )
    seconds["serial"] = time.perf_counter() - started
    started = time.perf_counter()
    pipe = upscale_video(clip, tmp_path / "pipe.mp4", upscaler, overwrite=True, progress=False)
    seconds["pipeline"] = time.perf_counter() - started
    work = tmp_path / f"png_{backend}_{precision}"
    work.mkdir()
    started = time.perf_counter()
    png_route(clip, work, scale, backend, precision)
    seconds["png route"] = time.perf_counter() - started
    shutil.rmtree(work)
    started = time.perf_counter()
    for planes in lr_planes:
        upscaler.upscale_planes(planes)
    upscale_only = time.perf_counter() - started
    slowest = max(decode_only, upscale_only, encode_only)
    return [
        {"route": "upscale only", "config": config, "seconds": upscale_only},
        {
            "route": "serial",
            "config": config,
            "seconds": seconds["serial"],
            "vs png route": seconds["png route"] / seconds["serial"],
        },
        {
            "route": "pipeline",
            "config": config,
            "seconds": seconds["pipeline"],
            "vs png route": seconds["png route"] / seconds["pipeline"],
            "vs serial": seconds["serial"] / seconds["pipeline"],
            "vs slowest stage": seconds["pipeline"] / slowest,
            "bottleneck": pipe.line().rpartition("bottleneck: ")[2],
            "stage alone s (decode, upscale, encode)": [
                round(t, 2) for t in (decode_only, upscale_only, encode_only)
            ],
        },
        {"route": "png route", "config": config, "seconds": seconds["png route"]},
    ]


@pytest.mark.parametrize("scale", [2, 3])
def test_video_throughput(tmp_path: Path, scale: int, capsys) -> None:
    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip)
    started = time.perf_counter()
    decode_encode(clip, tmp_path / "de.mp4", scale)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    lr_planes = decode_planes(clip)
    decode_only = time.perf_counter() - started
    rows: list[dict] = [
        {"route": "decode+encode", "config": "ffmpeg", "seconds": floor},
        {"route": "decode only", "config": "ffmpeg", "seconds": decode_only},
    ]
    # The encoder alone is about the floor less the decode (the resize is small beside it).
    encode_only = max(floor - decode_only, 1e-9)
    for backend, precision in configurations():
        rows += _routes(
            clip, tmp_path, scale, backend, precision, lr_planes, decode_only, encode_only
        )
    with capsys.disabled():
        print(
            f"\nvideo {WIDTH}x{HEIGHT} -> {WIDTH * scale}x{HEIGHT * scale} (x{scale}), "
            f"{frames} frames, libx264 crf {ENCODE['crf']} {ENCODE['preset']}; "
            f"decode+encode floor {frames / floor:.1f} fps"
        )
        for row in rows:
            extra = {k: v for k, v in row.items() if k not in ("route", "config", "seconds")}
            shown = ", ".join(
                f"{k} {v:.2f}x" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()
            )
            fps = frames / row["seconds"]
            print(f"  {row['route']:<14}{row['config']:<12}{fps:>7.2f} fps  {shown}")
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous[f"x{scale}"] = {"frames": frames, "rows": rows, "time": time.time()}
    RESULTS.write_text(json.dumps(previous, indent=1))


#: Seconds per segment in the segmented route's bench: five segments in the 10 s clip, so the
#: cost of each segment's start (opening decoder and encoder, seeking, the first keyframe) and
#: of the join shows; the default (10 s) would cut the clip in one.
BENCH_SEGMENT_SECONDS = 2.0


def test_segmented_route_keeps_the_pipelines_speed(tmp_path: Path, capsys) -> None:
    from srcnn_fast.video import upscale_video

    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip, keyint=round(BENCH_SEGMENT_SECONDS * RATE))
    upscaler = Upscaler(2, backend="cpu")
    upscaler.upscale_planes([np.zeros((HEIGHT, WIDTH), np.uint8)])  # compile, warm up
    best = {"one pass": float("inf"), "segmented": float("inf")}
    segments = {"one pass": 0, "segmented": BENCH_SEGMENT_SECONDS}
    for _ in range(2):  # alternately: a neighbour's load falls on both routes alike
        for route, seconds in segments.items():
            started = time.perf_counter()
            upscale_video(
                clip,
                tmp_path / "out.mp4",
                upscaler,
                overwrite=True,
                progress=False,
                segment_seconds=seconds,
            )
            best[route] = min(best[route], time.perf_counter() - started)
    ratio = best["one pass"] / best["segmented"]
    with capsys.disabled():
        print(
            f"\nvideo {WIDTH}x{HEIGHT} -> {2 * WIDTH}x{2 * HEIGHT} (x2, cpu fp32), {frames} "
            f"frames, {BENCH_SEGMENT_SECONDS:g} s segments: one pass "
            f"{frames / best['one pass']:.2f} fps, segmented {frames / best['segmented']:.2f} "
            f"fps: {ratio:.3f}x (goal >= 0.95x)"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous["segmented x2"] = {"frames": frames, "seconds": best, "ratio": ratio}
    RESULTS.write_text(json.dumps(previous, indent=1))
    assert ratio >= 0.95, f"segmented at {ratio:.3f}x one pass's fps (goal >= 0.95x)"


def test_ray_route_scales_with_workers(tmp_path: Path, capsys, monkeypatch) -> None:
    """``--ray`` (issue 29 items 3 and 6): the segmented route's clip made locally, then on a
    local Ray with 1 and 2 one-CPU workers (segments as Ray tasks, joined on the driver), each
    timed end to end, alternately, best of ``SRCNN_BENCH_RAY_ROUNDS`` (default 2), after the
    cluster has started; the join's own seconds too. About 6 minutes on 2 cores:

        pytest bench/test_video.py -s -k ray
    """
    ray = pytest.importorskip("ray", reason="needs the ray extra")
    from srcnn_fast import video
    from srcnn_fast.cli import main

    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip, keyint=round(BENCH_SEGMENT_SECONDS * RATE))
    joins: list[float] = []
    join = video.SegmentedRun.join

    def timed_join(run):  # the driver's share: the remux of every segment into the output
        started = time.perf_counter()
        try:
            return join(run)
        finally:
            joins.append(time.perf_counter() - started)

    monkeypatch.setattr(video.SegmentedRun, "join", timed_join)
    base = ["upscale", str(clip), "-o", str(tmp_path / "out.mp4"), "--overwrite", "-q"]
    base += ["--backend", "cpu", "--segment", str(BENCH_SEGMENT_SECONDS)]
    routes = {"local": [], "ray, 1 worker": ["--ray", "--ray-workers", "1"]}
    routes["ray, 2 workers"] = ["--ray", "--ray-workers", "2"]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        seconds = {route: (float("inf"), 0.0, 0.0) for route in routes}
        for _ in range(int(os.environ.get("SRCNN_BENCH_RAY_ROUNDS", "2"))):
            for route, extra in routes.items():  # alternately: others' load falls on all alike
                started = time.perf_counter()
                assert main([*base, *extra]) == 0
                took = (time.perf_counter() - started, joins[-1], os.getloadavg()[0])
                seconds[route] = min(seconds[route], took)
    finally:
        ray.shutdown()
    with capsys.disabled():
        print(
            f"\nvideo {WIDTH}x{HEIGHT} -> {2 * WIDTH}x{2 * HEIGHT} (x2, cpu fp32, libx264), "
            f"{frames} frames, {BENCH_SEGMENT_SECONDS:g} s segments:"
        )
        for route, (total, joined, load) in seconds.items():
            print(
                f"  {route:15s} {frames / total:6.2f} fps ({total:.1f} s, join {joined:.2f} s = "
                f"{100 * joined / total:.1f}%), {seconds['local'][0] / total:.2f}x local; "
                f"load average {load:.1f} at its end (other processes count)"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous["ray x2"] = {"frames": frames, "seconds": seconds}
    RESULTS.write_text(json.dumps(previous, indent=1))
