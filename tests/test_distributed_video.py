"""Videos over ``--ray`` (issue 29 item 3), on the two-node local Ray cluster of
tests/test_distributed.py: segments made on the workers and joined on the driver give the
local run's frames (ffv1: max diff 0, same timestamps), names, lines and refusals; images and
videos in one run; a worker killed mid-segment; a run interrupted locally resumed on Ray."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'srcnn-fast[ray]'")
import ray
from test_distributed import cluster as cluster  # the fixture: one cluster for this module
from test_segments import GOP, _count_segments, _same_frames
from test_video import make_clip, read_clip

from srcnn_fast.cli import main
from srcnn_fast.distributed_video import TASK_RETRIES
from srcnn_fast.imagefile import write_image

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

#: 23 ffv1 frames at 25 fps, a keyframe every 5: 0.2 s segments are five.
FRAMES, SEGMENT = 23, "0.2"
LINE = (
    r"srcnn-fast: {src} -> {dst}: {frames} frames in [\d.]+ s, [\d.]+ fps; bottleneck: "
    r"decode \d+%, upscale \d+%, encode \d+%"
)


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    from srcnn_fast.model import Architecture, SRCNNWeights

    path = tmp_path / "tiny_x2.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(path)
    return path


def upscale(capsys, *argv: str) -> tuple[int, list[str]]:
    """The CLI's exit code and stderr lines."""
    capsys.readouterr()
    code = main(["upscale", *argv, "--backend", "cpu", "--codec", "ffv1", "--segment", SEGMENT])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_video_on_two_workers_is_the_local_run(
    cluster: str, tmp_path: Path, weights: Path, capsys, monkeypatch
) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, frames=FRAMES, options=GOP)
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    code, lines = upscale(capsys, str(src), "-o", str(local), "-w", str(weights))
    assert code == 0, lines

    # Relative paths, as locally: the workers (started elsewhere) work in the driver's folder.
    monkeypatch.chdir(tmp_path)
    code, lines = upscale(capsys, "clip.mkv", "-o", "ray.mkv", "-w", str(weights), "--ray", cluster)
    assert code == 0, lines
    _same_frames(read_clip(local), read_clip(remote))
    assert read_clip(remote)["audio"] == read_clip(local)["audio"]
    line = LINE.format(src="clip.mkv", dst="ray.mkv", frames=FRAMES)
    assert re.fullmatch(line + r" on 2 CPU workers \(cpu backend\)", lines[-1]), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mkv",
        "local.mkv",
        "ray.mkv",
        "tiny_x2.npz",
    ], "no work folder, no temporary file left"

    # Refused as locally, before any work: an existing output, the input itself; skipped.
    for extra in ([], ["--skip-existing"]):
        expected = upscale(capsys, str(src), "-o", str(local), "-w", str(weights), *extra)
        got = upscale(
            capsys, str(src), "-o", str(local), "-w", str(weights), "--ray", cluster, *extra
        )
        assert got == expected, extra
    assert expected[1] == [f"srcnn-fast: {local}: exists, skipped"]
    assert upscale(capsys, str(src), "-o", str(src), "-w", str(weights), "--ray", cluster) == (
        1,
        [f"srcnn-fast: error: {src}: is the input itself; not overwritten"],
    )
    # A problem the worker meets making a segment: the local run's one line; nothing left.
    crf = ["-o", str(tmp_path / "crf.mkv"), "-w", str(weights), "--crf", "20"]
    expected = upscale(capsys, str(src), *crf)
    assert expected[0] == 1 and expected[1][0].startswith("srcnn-fast: error: --crf: the ffv1")
    assert upscale(capsys, str(src), *crf, "--ray", cluster) == expected
    assert not any("crf" in p.name for p in tmp_path.iterdir()), os.listdir(tmp_path)
    code, lines = upscale(capsys, str(src), "-o", "s3://bucket/out/", "--ray", cluster)
    assert (code, lines) == (
        2,
        [
            f"srcnn-fast: error: {src}: with --ray a video is written to a path every node sees, "
            "not to a URI"
        ],
    )

    # Interrupted locally after two segments, resumed on Ray: only the other three made there.
    made = _count_segments(monkeypatch, stop_at=2)
    resumed = tmp_path / "resumed.mkv"
    code, lines = upscale(capsys, str(src), "-o", str(resumed), "-w", str(weights))
    assert (code, lines) == (130, ["srcnn-fast: error: interrupted"])
    assert made == [0, 1]
    code, lines = upscale(
        capsys, str(src), "-o", str(resumed), "-w", str(weights), "--ray", cluster
    )
    assert code == 0 and f"srcnn-fast: {resumed}: resuming: 2 of 5 segments done" in lines, lines
    assert "(10 kept from the interrupted run)" in lines[-1], lines
    _same_frames(read_clip(local), read_clip(resumed))


def test_images_and_videos_in_one_ray_run(
    cluster: str, tmp_path: Path, weights: Path, capsys
) -> None:
    """A folder of two images, a video made in segments and one too short to cut (one pass,
    one task): the local run's outputs, the images byte for byte."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "clip.mkv", frames=FRAMES, options=GOP)
    make_clip(folder / "short.mkv", frames=4, seed=3, options=GOP)
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        write_image(folder / name, rng.integers(0, 256, (20, 24, 3)).astype(np.uint8))
    local, remote = tmp_path / "local", tmp_path / "ray"
    code, local_lines = upscale(capsys, str(folder), "-o", str(local), "-w", str(weights))
    assert code == 0, local_lines
    code, lines = upscale(
        capsys, str(folder), "-o", str(remote), "-w", str(weights), "--ray", cluster, "-q"
    )
    assert (code, lines) == (0, [])
    code, lines = upscale(
        capsys,
        str(folder),
        "-o",
        str(remote),
        "-w",
        str(weights),
        "--ray",
        cluster,
        "--overwrite",
        "-v",
    )
    assert code == 0, lines
    # -v: each video's weights, chosen on the driver (segments) or the worker (one pass).
    for name in ("clip", "short"):
        said = f"srcnn-fast: {folder / name}.mkv -> {remote / name}_x2.mkv: video stream #0: "
        said += "the weights given"
        assert sum(line.startswith(said) for line in lines) == 1, "\n".join(lines)
    names = sorted(p.name for p in remote.iterdir())
    assert (
        names
        == sorted(p.name for p in local.iterdir())
        == ["a_x2.png", "b_x2.png", "clip_x2.mkv", "short_x2.mkv"]
    )
    for name in ("a_x2.png", "b_x2.png"):
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    for name in ("clip_x2.mkv", "short_x2.mkv"):
        _same_frames(read_clip(local / name), read_clip(remote / name))
    # The closing line over the videos, as locally (its counts; its times differ).
    closing = [re.sub(r" in [\d.]+ s;.*", "", line) for line in lines if " videos: " in line]
    assert closing == [
        re.sub(r" in [\d.]+ s;.*", "", line) for line in local_lines if " videos: " in line
    ]
    assert closing == ["srcnn-fast: 2 videos: 2 upscaled"], closing
    videos = [line for line in lines if " frames in " in line]
    assert len(videos) == 2 and all("CPU worker" in line for line in videos), lines
    assert re.fullmatch(r"srcnn-fast: 2 upscaled in [\d.]+ s: .* on \d CPU workers? .*", lines[-1])


@pytest.fixture()
def crashing(cluster: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Join the cluster as a new Ray job whose worker processes die in segment 2, its complete
    temporary file truncated to a partial one, not renamed (as in tests/test_distributed.py's
    crash_once): the first ``request.param`` times it is made. Returns the folder where each
    death leaves a file."""
    deaths, times = tmp_path / "deaths", request.param
    deaths.mkdir()

    def install() -> None:  # runs in every worker process of the job, as it starts
        import os

        from srcnn_fast import video

        transcode = video._transcode

        def crash_before_the_rename(av, container, tmp, path, *args, **kwargs):
            result = transcode(av, container, tmp, path, *args, **kwargs)
            for death in range(times) if path.name == "segment-00002.mkv" else ():
                try:
                    os.close(os.open(deaths / str(death), os.O_CREAT | os.O_EXCL))
                except FileExistsError:  # an earlier attempt died there
                    continue
                os.truncate(tmp, 10)
                os._exit(1)
            return result

        video._transcode = crash_before_the_rename

    ray.shutdown()
    ray.init(address=cluster, runtime_env={"worker_process_setup_hook": install})
    yield deaths
    ray.shutdown()
    ray.init(address=cluster)


@pytest.mark.parametrize("crashing", [1], indirect=True)
def test_a_worker_killed_mid_segment_is_redone_and_never_joined(
    crashing: Path, tmp_path: Path, weights: Path, capsys
) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, frames=FRAMES, options=GOP)
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    assert upscale(capsys, str(src), "-o", str(local), "-w", str(weights))[0] == 0
    code, lines = upscale(capsys, str(src), "-o", str(remote), "-w", str(weights), "--ray")
    assert os.listdir(crashing) == ["0"], "a worker died in segment 2"
    assert code == 0, lines
    _same_frames(read_clip(local), read_clip(remote))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), os.listdir(tmp_path)


@pytest.mark.parametrize("crashing", [TASK_RETRIES + 1], indirect=True)
def test_a_segment_whose_every_try_dies_fails_its_video_and_the_rerun_resumes(
    crashing: Path, cluster: str, tmp_path: Path, weights: Path, capsys
) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, frames=FRAMES, options=GOP)
    remote = tmp_path / "ray.mkv"
    code, lines = upscale(capsys, str(src), "-o", str(remote), "-w", str(weights), "--ray")
    assert len(os.listdir(crashing)) == TASK_RETRIES + 1, "every try of segment 2 died"
    failed = f"srcnn-fast: error: {src}: segment 2: failed on the cluster ("
    assert code == 1 and sum(line.startswith(failed) for line in lines) == 1, lines
    assert not remote.exists()
    # The segments that were made are kept: a run on a sound cluster makes only segment 2.
    ray.shutdown()
    ray.init(address=cluster)
    code, lines = upscale(capsys, str(src), "-o", str(remote), "-w", str(weights), "--ray")
    assert code == 0 and f"srcnn-fast: {remote}: resuming: 4 of 5 segments done" in lines, lines
    local = tmp_path / "local.mkv"
    assert upscale(capsys, str(src), "-o", str(local), "-w", str(weights))[0] == 0
    _same_frames(read_clip(local), read_clip(remote))


def test_the_weights_chosen_on_the_driver_run_on_the_workers(
    cluster: str, tmp_path: Path, jpeg_weights: Path, capsys
) -> None:
    """A coarsely quantised H.264 stream gets the JPEG-aware weights, chosen once on the
    driver from its QP (the stand-in pair exists only in this process: the workers get the
    weights themselves), in segments: the local run's frames."""
    from test_video_weights import COARSE, h264_clip

    src = tmp_path / "coarse.mp4"
    h264_clip(src, COARSE, frames=FRAMES, params=":keyint=5:min-keyint=5")
    local, remote = tmp_path / "local.mkv", tmp_path / "ray.mkv"
    code, lines = upscale(capsys, str(src), "-o", str(local), "-v")
    assert code == 0, lines
    code, lines = upscale(capsys, str(src), "-o", str(remote), "-v", "--ray", cluster)
    assert code == 0, lines
    said = f"srcnn-fast: {src} -> {remote}: video stream #0: JPEG-aware weights (H.264 mean QP"
    assert sum(line.startswith(said) for line in lines) == 1, "\n".join(lines)
    assert re.search(r" on 2 CPU workers \(cpu backend\)$", lines[-1]), lines
    _same_frames(read_clip(local), read_clip(remote))


def test_run_videos_counts_its_segments_on_a_bar(
    cluster: str, tmp_path: Path, weights: Path, capsys
) -> None:
    """The library call under ``--ray``: each job's result handed back, and with
    ``progress`` a bar counting the tasks done (the CLI shows it where stderr is a terminal)."""
    from srcnn_fast.distributed_video import run_videos
    from srcnn_fast.infer import Upscaler
    from srcnn_fast.jobs import Job

    src = tmp_path / "clip.mkv"
    make_clip(src, frames=FRAMES, options=GOP)
    results = []
    capsys.readouterr()
    ran = run_videos(
        [Job(src, tmp_path / "out.mkv")],
        Upscaler(weights=weights, backend="cpu"),
        options={"codec": "ffv1"},
        backend="cpu",
        segment_seconds=float(SEGMENT),
        on_result=lambda *result: results.append(result),
        progress=True,
    )
    assert (ran.workers, ran.backends) == (2, ["cpu"])
    ((job, summary, error, ran_on),) = results
    assert (job.source, summary.frames, error, ran_on) == (
        src,
        FRAMES,
        None,
        " on 2 CPU workers (cpu backend)",
    )
    assert "5/5" in capsys.readouterr().err
