"""YUV4MPEG2 pipes: `srcnn-fast upscale - -o -` and :mod:`srcnn_fast.y4m`.

The input streams are written by PyAV's yuv4mpegpipe muxer (FFmpeg's own, as `ffmpeg -f
yuv4mpegpipe` would write them; no ffmpeg binary needed) and the output is read back both by
our parser (strictly: header, whole frames, nothing after) and by PyAV's demuxer. The frames
must EQUAL the file route's: the same .y4m file upscaled by `upscale_video` into a lossless
FFV1 file, decoded.
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import subprocess
import sys
import threading
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from srcnn_fast import cli, y4m
from srcnn_fast.errors import ImageError, OutputError
from srcnn_fast.infer import Upscaler
from srcnn_fast.model import Architecture, SRCNNWeights

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

PYTHON = sys.executable
RATE = Fraction(30000, 1001)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    """Tiny random x2 weights: the plumbing is under test, not the network."""
    path = tmp_path / "tiny_x2.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=2).save(path)
    return path


def y4m_stream(
    fmt: str, frames: int = 3, width: int = 41, height: int = 29, seed: int = 0
) -> bytes:
    """A YUV4MPEG2 stream written by FFmpeg's muxer (PyAV) of random frames, at 30000/1001
    fps; its A tag set to 4:3 (PyAV cannot set the sample aspect ratio it writes)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    # strict -1: FFmpeg calls the >8-bit colourspaces (C420p10, ...) non-standard.
    container = av.open(buffer, "w", format="yuv4mpegpipe", options={"strict": "-1"})
    stream = container.add_stream("rawvideo", rate=RATE)
    stream.width, stream.height, stream.pix_fmt = width, height, fmt
    for i in range(frames):
        frame = av.VideoFrame(width, height, fmt)
        high = frame.format.components[0].bits > 8
        dtype, top = (np.dtype("<u2"), 1023) if high else (np.dtype(np.uint8), 255)
        for plane in frame.planes:
            rows = np.frombuffer(plane, dtype).reshape(plane.height, -1)
            rows[:, : plane.width] = rng.integers(0, top + 1, (plane.height, plane.width))
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    data = buffer.getvalue()
    assert b" A0:0 " in data[:80]
    return data.replace(b" A0:0 ", b" A4:3 ", 1)


def parse(data: bytes) -> tuple[y4m.Y4MHeader, list[list[np.ndarray]]]:
    """Header and frames of a whole stream; fails on anything that is not YUV4MPEG2 (a stray
    line of text on stdout, a short frame, bytes after the last frame)."""
    stream = io.BytesIO(data)
    header = y4m.read_header(stream, "output")
    frames = [[p.copy() for p in planes] for _, planes in y4m.read_frames(stream, header)]
    assert stream.tell() == len(data)
    return header, frames


def decoded(path_or_bytes: Path | bytes, fmt: str | None = None) -> list[list[np.ndarray]]:
    """A file's (or a y4m stream's) frames as decoded by PyAV, plane by plane."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    frames = []
    with av.open(source, format=fmt) as container:
        for frame in container.decode(video=0):
            dtype = np.uint8 if frame.format.components[0].bits <= 8 else np.dtype("<u2")
            frames.append(
                [
                    np.frombuffer(p, dtype).reshape(p.height, -1)[:, : p.width].copy()
                    for p in frame.planes
                ]
            )
    return frames


def assert_frames_equal(actual: list, expected: list, what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} frames, wanted {len(expected)}"
    for n, (got, want) in enumerate(zip(actual, expected, strict=True)):
        for p, (a, b) in enumerate(zip(got, want, strict=True)):
            assert a.shape == b.shape, f"{what}: frame {n} plane {p}: {a.shape} != {b.shape}"
            diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
            assert diff.max() == 0, f"{what}: frame {n} plane {p}: max |diff| {diff.max()} != 0"


def run_cli(*args: str, stdin: bytes = b"", timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "srcnn_fast.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def error_lines(stderr: bytes) -> list[str]:
    text = stderr.decode()
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("srcnn-fast: error:")]


# --- the pipe gives the file route's frames ---------------------------------------------------


@pytest.mark.parametrize(
    "fmt",
    [
        "yuv420p",
        "yuv422p",
        "yuv444p",
        "yuv420p10le",
        "yuv422p10le",
        "yuv444p10le",
        "yuvj420p",  # XCOLORRANGE=FULL: full-range luma, mapped as the file route maps it
        "gray",  # Cmono
    ],
)
def test_pipe_frames_equal_the_file_route(tmp_path, tiny, fmt):
    from srcnn_fast.video import upscale_video

    data = y4m_stream(fmt)
    done = run_cli("upscale", "-", "-o", "-", "-w", str(tiny), "--backend", "cpu", stdin=data)
    assert done.returncode == 0, done.stderr.decode()
    assert error_lines(done.stderr) == []
    assert "stdin -> stdout: 3 frames" in done.stderr.decode()

    header, frames = parse(done.stdout)  # stdout is y4m and nothing else
    source = y4m.read_header(io.BytesIO(data), "input")
    assert (header.width, header.height) == (82, 58)
    assert header.rate == RATE and header.aspect == Fraction(4, 3)
    assert header.colourspace == source.colourspace
    assert header.full_range == (fmt == "yuvj420p")
    assert [t for t in header.tags if t[:1] not in b"WH"] == [
        t for t in source.tags if t[:1] not in b"WH"
    ]
    with av.open(io.BytesIO(done.stdout), format="yuv4mpegpipe") as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (82, 58)
        assert stream.average_rate == RATE and stream.sample_aspect_ratio == Fraction(4, 3)

    # The file route on the same stream (PyAV reads .y4m files), into lossless FFV1.
    src, dst = tmp_path / "in.y4m", tmp_path / "out.mkv"
    src.write_bytes(data)
    upscaler = Upscaler(weights=tiny, backend="cpu")
    upscale_video(src, dst, upscaler, codec="ffv1", progress=False)
    expected = decoded(dst)
    assert_frames_equal(frames, expected, f"{fmt}: pipe vs file route")
    assert_frames_equal(decoded(done.stdout, "yuv4mpegpipe"), expected, f"{fmt}: PyAV's read")
    if fmt.endswith("10le"):
        assert max(int(f[0].max()) for f in frames) > 255  # really 10-bit samples


#: `ffmpeg -i IN OUT` played by PyAV, for an FFmpeg binary may not be installed: argv IN, OUT
#: (- for stdin or stdout: YUV4MPEG2, rawvideo) and the codec of a file OUT.
FFMPEG = """
import sys, av
def end(name, mode):
    if name != "-":
        return av.open(name, mode)
    pipe = sys.stdin.buffer if mode == "r" else sys.stdout.buffer
    return av.open(pipe, mode, format="yuv4mpegpipe", options={"strict": "-1"})
with end(sys.argv[1], "r") as source, end(sys.argv[2], "w") as out:
    video = source.streams.video[0]
    codec = "rawvideo" if sys.argv[2] == "-" else sys.argv[3]
    stream = out.add_stream(codec, rate=video.average_rate)
    stream.width, stream.height = video.codec_context.width, video.codec_context.height
    stream.pix_fmt = video.codec_context.format.name
    for frame in source.decode(video):
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
"""


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p10le"])
def test_an_ffmpeg_pipeline_equals_the_file_route(tmp_path, tiny, fmt):
    """ffmpeg -i in.mkv -f yuv4mpegpipe - | srcnn-fast upscale - -o - | ffmpeg -i - out.mkv,
    three processes joined by OS pipes, gives the frames `srcnn-fast upscale in.mkv` gives."""
    from srcnn_fast.video import upscale_video

    src, piped, direct = tmp_path / "in.mkv", tmp_path / "piped.mkv", tmp_path / "direct.mkv"
    (tmp_path / "in.y4m").write_bytes(y4m_stream(fmt, frames=4))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # in.mkv: the frames in lossless FFV1 (a real container for the first "ffmpeg" to decode).
    made = subprocess.run([PYTHON, "-c", FFMPEG, str(tmp_path / "in.y4m"), str(src), "ffv1"])
    assert made.returncode == 0
    first = subprocess.Popen([PYTHON, "-c", FFMPEG, str(src), "-"], stdout=subprocess.PIPE, env=env)
    middle = subprocess.Popen(
        [PYTHON, "-m", "srcnn_fast.cli", "upscale", "-", "-o", "-", "-w", str(tiny)],
        stdin=first.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    last = subprocess.Popen(
        [PYTHON, "-c", FFMPEG, "-", str(piped), "ffv1"], stdin=middle.stdout, env=env
    )
    assert first.stdout is not None and middle.stdout is not None
    first.stdout.close()  # the next process holds them now
    middle.stdout.close()
    assert last.wait(timeout=300) == 0
    assert first.wait(timeout=60) == 0
    stderr = middle.communicate(timeout=300)[1]
    assert middle.returncode == 0, stderr.decode()
    assert "stdin -> stdout: 4 frames" in stderr.decode()
    upscale_video(src, direct, Upscaler(weights=tiny), codec="ffv1", progress=False)
    assert_frames_equal(decoded(piped), decoded(direct), f"{fmt}: pipeline vs file route")


def test_file_ends_equal_the_pipe(tmp_path, tiny):
    """`upscale in.y4m -o out.y4m` writes what the pipe writes; outputs are never written over
    the input or an existing file (without --overwrite), a bad header leaves no file."""
    data = y4m_stream("yuv420p10le", frames=2)
    upscaler = Upscaler(weights=tiny, backend="reference")
    piped = io.BytesIO()
    summary = y4m.upscale_y4m(io.BytesIO(data), piped, upscaler, progress=False)
    assert summary.frames == 2 and summary.problem() is None
    src, dst = tmp_path / "in.y4m", tmp_path / "out.y4m"
    src.write_bytes(data)
    y4m.upscale_y4m_path(str(src), str(dst), upscaler, progress=False)
    assert dst.read_bytes() == piped.getvalue()
    with pytest.raises(OutputError, match="already exists"):
        y4m.upscale_y4m_path(str(src), str(dst), upscaler, progress=False)
    with pytest.raises(OutputError, match="is the input itself"):
        y4m.upscale_y4m_path(str(src), str(src), upscaler, overwrite=True, progress=False)
    assert src.read_bytes() == data
    cut = tmp_path / "cut.y4m"  # a stream cut inside frame 2: frame 1 stays in the output
    cut.write_bytes(data[: len(data) - 10])
    summary = y4m.upscale_y4m_path(str(cut), str(tmp_path / "cut_x2.y4m"), upscaler)
    assert summary.frames == 1 and summary.problem().startswith(f"{cut}: the stream ends inside")
    assert len(parse((tmp_path / "cut_x2.y4m").read_bytes())[1]) == 1
    bad = tmp_path / "bad.y4m"
    bad.write_bytes(b"YUV4MPEG2 W8 C420jpeg\nFRAME\n")
    with pytest.raises(ImageError, match="no H"):
        y4m.upscale_y4m_path(str(bad), str(tmp_path / "bad_x2.y4m"), upscaler, progress=False)
    with pytest.raises(ImageError, match="no such file"):
        y4m.upscale_y4m_path(str(tmp_path / "none.y4m"), "-", upscaler, stdout=io.BytesIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.y4m",
        "cut.y4m",
        "cut_x2.y4m",
        "in.y4m",
        "out.y4m",
        "tiny_x2.npz",
    ]


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv420p10le"])
def test_a_video_file_into_a_y4m_file(tmp_path, tiny, fmt):
    """`upscale clip.mkv -o out.y4m` (the file route, into FFmpeg's YUV4MPEG2 muxer): raw
    frames, 10-bit too, at the source's frame rate, equal to the lossless file route's; the
    audio, which y4m cannot hold, is left out with a warning, never a traceback."""
    from test_video import make_clip

    from srcnn_fast.video import upscale_video

    src = tmp_path / "clip.mkv"
    make_clip(src, width=41, height=29, frames=4, fmt=fmt, audio=True)
    done = run_cli("upscale", str(src), "-o", str(tmp_path / "out.y4m"), "-w", str(tiny))
    assert done.returncode == 0, done.stderr.decode()
    assert "audio stream #1 not copied" in done.stderr.decode()
    header, frames = parse((tmp_path / "out.y4m").read_bytes())
    assert (header.width, header.height, header.rate) == (82, 58, Fraction(25))
    upscale_video(src, tmp_path / "ffv1.mkv", Upscaler(weights=tiny), codec="ffv1", progress=False)
    assert_frames_equal(frames, decoded(tmp_path / "ffv1.mkv"), f"{fmt}: .y4m vs ffv1")


def test_which_commands_take_the_y4m_route_and_where_they_write(tmp_path):
    route, target = y4m.is_y4m_route, y4m.y4m_target
    assert route(["-"], None) and route(["-"], "-") and route(["a.mkv"], "-")
    assert route(["a.y4m"], None) and route(["a.Y4M"], "b.y4m") and route(["a.y4m"], "out/")
    assert route(["a.y4m"], str(tmp_path))  # an existing folder
    assert not route(["a.y4m"], "b.mkv")  # a video file like any other: the file route
    assert not route(["a.mkv"], None) and not route(["a.y4m", "b.y4m"], None)
    assert target("-", None, 2) == "-" and target("a.y4m", "-", 2) == "-"
    assert target("d/a.y4m", None, 3) == str(Path("d/a_x3.y4m"))
    assert target("d/a.y4m", "out/", 2) == str(Path("out/a_x2.y4m"))
    assert target("-", "x.y4m", 2) == "x.y4m"


def test_cli_y4m_files_beside_in_a_folder_and_skipped(tmp_path, tiny, capsys):
    data = y4m_stream("yuv422p", frames=2)
    src = tmp_path / "clip.y4m"
    src.write_bytes(data)
    expected = io.BytesIO()
    y4m.upscale_y4m(io.BytesIO(data), expected, Upscaler(weights=tiny, backend="reference"))
    common = ["-w", str(tiny), "--backend", "reference"]
    assert cli.main(["upscale", str(src), *common]) == cli.EXIT_OK
    assert (tmp_path / "clip_x2.y4m").read_bytes() == expected.getvalue()
    assert cli.main(["upscale", str(src), "-o", f"{tmp_path}/new/", *common]) == cli.EXIT_OK
    assert (tmp_path / "new" / "clip_x2.y4m").read_bytes() == expected.getvalue()
    capsys.readouterr()
    assert cli.main(["upscale", str(src), *common]) == cli.EXIT_FAILED  # exists
    assert "clip_x2.y4m: already exists (use --overwrite" in capsys.readouterr().err
    assert cli.main(["upscale", str(src), "--skip-existing", *common]) == cli.EXIT_OK
    assert "clip_x2.y4m: exists, skipped" in capsys.readouterr().err


# --- broken streams -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "stdin: empty, no YUV4MPEG2 header"),
        (b"RIFF\x00\x00WAVEfmt \n", "stdin: not a YUV4MPEG2 stream"),
        (b"YUV4MPEG W8 H8\n", "stdin: not a YUV4MPEG2 stream"),
        (b"YUV4MPEG2 H8 F25:1\n", "no W (width) tag"),
        (b"YUV4MPEG2 W8 F25:1\n", "no H (height) tag"),
        (b"YUV4MPEG2 W0 H8\n", "bad W0"),
        (b"YUV4MPEG2 Wabc H8\n", "bad Wabc"),
        (b"YUV4MPEG2 W8 H99999999\n", "bad H99999999 (the height must be 1 to 32768)"),
        (b"YUV4MPEG2 W8 H8 F25\n", "bad F25"),
        (b"YUV4MPEG2 W8 H8 Ax:y\n", "bad Ax:y"),
        (b"YUV4MPEG2 W8 H8 Iz\n", "bad Iz"),
        (b"YUV4MPEG2 W8 H8 C420p11\n", "colourspace C420p11 is not supported"),
        (b"YUV4MPEG2 W8 H1 C420jpeg\n", "8x1 frame is smaller than C420jpeg's chroma"),
        (b"YUV4MPEG2 W8 H8 X" + b"x" * 5000, "without an end of line in 4096 bytes"),
    ],
)
def test_malformed_headers_are_one_line(data, message):
    with pytest.raises(ImageError) as raised:
        y4m.read_header(io.BytesIO(data), "stdin")
    text = str(raised.value)
    assert message in text and text.startswith("stdin: ") and "\n" not in text


def test_header_tags_read_and_written_back():
    header = y4m.read_header(
        io.BytesIO(b"YUV4MPEG2 W7 H5 F24:1 It A0:0 C411 XYSCSS=411 XCOLORRANGE=FULL\n"), "s"
    )
    assert header.plane_shapes() == [(5, 7), (5, 2), (5, 2)]
    assert header.rate == 24 and header.aspect is None and header.full_range
    assert header.scaled(3).line() == (
        b"YUV4MPEG2 W21 H15 F24:1 It A0:0 C411 XYSCSS=411 XCOLORRANGE=FULL\n"
    )
    plain = y4m.read_header(io.BytesIO(b"YUV4MPEG2 W3 H3\n"), "s")  # C defaults to 4:2:0
    assert plain.colourspace == "420jpeg" and plain.frame_bytes == 9 + 2 * 4


def test_cli_malformed_header_one_line_exit_1():
    done = run_cli("upscale", "-", "-o", "-", stdin=b"YUV4MPEG2 W8 Cfoo\nFRAME\n")
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        "srcnn-fast: error: stdin: YUV4MPEG2 header has no H (height) tag"
    ]
    assert done.stderr.decode().count("\n") == 1
    assert done.stdout == b""


def test_cli_stream_cut_mid_frame_keeps_the_frames_before(tiny):
    data = y4m_stream("yuv420p", frames=4)
    header = y4m.read_header(io.BytesIO(data), "in")
    cut = len(header.line()) + 2 * (6 + header.frame_bytes) + 6 + 100  # 100 bytes into #3
    done = run_cli("upscale", "-", "-w", str(tiny), stdin=data[:cut])  # stdout by default
    assert done.returncode == 1
    assert error_lines(done.stderr) == [
        "srcnn-fast: error: stdin: the stream ends inside frame 3 (100 of its 1819 bytes); "
        "2 frames were written to stdout before it"
    ]
    _, frames = parse(done.stdout)
    assert len(frames) == 2  # 41x29 4:2:0: 1189 + 2 x 21 x 15 = 1819 bytes a frame


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"FRA", "the stream ends inside frame 2's FRAME line"),
        (b"FRAMEX\n", "frame 2 does not start with a FRAME line (found b'FRAMEX\\n')"),
        (b"garbage\n", "frame 2 does not start with a FRAME line (found b'garbage\\n')"),
    ],
)
def test_broken_frame_lines_end_the_stream_there(tiny, tail, message):
    data = y4m_stream("yuv444p", frames=1) + tail
    out = io.BytesIO()
    summary = y4m.upscale_y4m(
        io.BytesIO(data), out, Upscaler(weights=tiny, backend="reference"), progress=False
    )
    assert summary.frames == 1 and summary.cut is not None
    assert summary.problem() == f"stdin: {message}; 1 frame was written to stdout before it"
    assert len(parse(out.getvalue())[1]) == 1


def test_a_reader_that_leaves_gets_one_line(tiny):
    """The program reading stdout exits early: one line (broken pipe), exit 1."""
    data = y4m_stream("yuv420p", frames=300, width=16, height=16)
    process = subprocess.Popen(
        [PYTHON, "-m", "srcnn_fast.cli", "upscale", "-", "-o", "-", "-w", str(tiny)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None and process.stdin is not None

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):  # it stops reading when it fails
            process.stdin.write(data)
            process.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert process.stdout.read(10) == b"YUV4MPEG2 "  # the header, once it has read the input's
    process.stdout.close()
    process.wait(timeout=300)
    feeder.join()
    stderr = process.stderr.read() if process.stderr else b""
    assert process.returncode == 1, stderr.decode()
    lines = error_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("srcnn-fast: error: stdout: closed by the"), (
        stderr.decode()
    )
    assert "(broken pipe)" in lines[0]


# --- stdout holds frames alone, refusals --------------------------------------------------------


def test_stdout_for_frames_sends_everything_else_to_stderr(tmp_path):
    script = (
        "import os, sys\n"
        "from srcnn_fast.y4m import stdout_for_frames\n"
        "with stdout_for_frames() as frames:\n"
        "    print('a print')\n"
        "    sys.stdout.flush()\n"
        "    os.write(1, b'C code on fd 1\\n')\n"
        "    frames.write(b'FRAMES')\n"
        "print('after')\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", script],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"FRAMES"
    assert done.stderr.decode().splitlines() == ["a print", "C code on fd 1", "after"]


def test_terminals_are_refused():
    """Raw frames are not typed in or shown: a terminal on stdin or stdout is a usage error."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for side in ("stdin", "stdout"):
        leader, follower = pty.openpty()
        try:
            ends = {side: follower}
            done = subprocess.run(
                [PYTHON, "-m", "srcnn_fast.cli", "upscale", "-", "-o", "-"],
                stdin=ends.get("stdin", subprocess.DEVNULL),
                stdout=ends.get("stdout", subprocess.PIPE),
                stderr=subprocess.PIPE,
                timeout=120,
                env=env,
            )
        finally:
            os.close(follower)
            os.close(leader)
        assert done.returncode == 2, done.stderr.decode()
        lines = error_lines(done.stderr)
        assert len(lines) == 1 and "is a terminal" in lines[0], lines


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-", "-o", "-", "--codec", "ffv1"], "--codec does not apply to a YUV4MPEG2 pipe"),
        (["-", "-o", "-", "--crf", "18"], "--crf does not apply to a YUV4MPEG2 pipe"),
        (["-", "--preset", "slow"], "--preset does not apply to a YUV4MPEG2 pipe"),
        (["-", "-o", "-", "--ray"], "--ray does not apply to a YUV4MPEG2 pipe"),
        (["-", "-o", "-", "--tile", "64"], "--tile does not apply to a YUV4MPEG2 pipe"),
        (["-", "a.png"], "-: a YUV4MPEG2 pipe takes one input"),
        (["-", "-o", "out.mkv"], "-o out.mkv: a YUV4MPEG2 stream is written to - (stdout) or"),
        (["-", "-o", "new/"], "-o new/: stdin has no name to name its output by"),
        (["-", "--skip-existing"], "--skip-existing does not apply to a YUV4MPEG2 pipe"),
    ],
)
def test_options_that_mean_nothing_for_pipes_are_usage_errors(capsys, args, message):
    assert cli.main(["upscale", *args]) == cli.EXIT_USAGE
    err = capsys.readouterr()
    assert err.out == ""
    assert err.err.startswith(f"srcnn-fast: error: {message}") and err.err.count("\n") == 1


# --- weights, memory ------------------------------------------------------------------------


def test_weights_clean_unless_asked(jpeg_weights):
    """Raw frames carry no quantiser: clean weights under auto; --weights-for jpeg is obeyed,
    and those frames then come out as the JPEG-aware weights make them."""
    auto = Upscaler(scale=2, backend="reference")
    assert y4m.weights_for_stream(auto).weights == "clean"
    jpeg = Upscaler(scale=2, backend="reference", degradation="jpeg")
    assert y4m.weights_for_stream(jpeg).weights == "jpeg"
    data = y4m_stream("yuv444p", frames=1, width=12, height=10)
    out = {}
    for name, upscaler in (("clean", auto), ("jpeg", jpeg)):
        buffer = io.BytesIO()
        summary = y4m.upscale_y4m(io.BytesIO(data), buffer, upscaler, progress=False)
        assert summary.weights == [str(y4m.weights_for_stream(upscaler))]
        out[name] = parse(buffer.getvalue())[1][0]
    planes = parse(data)[1][0]
    expected = auto.upscale_planes(planes, 8, degradation="jpeg")
    assert_frames_equal([out["jpeg"]], [expected], "--weights-for jpeg")
    assert not np.array_equal(out["jpeg"][0], out["clean"][0])


class LazyStream(io.RawIOBase):
    """A YUV4MPEG2 stream made as it is read: ``frames`` frames, never all in memory."""

    def __init__(self, frames: int, width: int = 64, height: int = 48) -> None:
        self.header = b"YUV4MPEG2 W%d H%d F25:1 Ip A1:1 C420jpeg\n" % (width, height)
        self.frame = b"FRAME\n" + bytes(range(256)) * (width * height * 3 // 2 // 256)
        self.left, self.pending = frames, memoryview(self.header)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.pending and self.left:
            self.left -= 1
            self.pending = memoryview(self.frame)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class Sink(io.RawIOBase):
    """Counts what is written and keeps none of it."""

    written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written += len(data)
        return len(data)


def test_memory_stays_flat_however_long_the_stream(tiny):
    """tracemalloc's peak (NumPy's buffers included) for 400 frames is that for 40: the
    reader, upscaler and writer hold a few frames at a time (queues of y4m.DEPTH), never the
    stream. Holding every frame would add 360 x 4.6 kB input (+ 18 kB output) = 1.6-8 MB."""
    upscaler = Upscaler(weights=tiny, backend="reference")
    frame_in = 64 * 48 * 3 // 2

    def peak(frames: int) -> int:
        sink = Sink()
        reader = io.BufferedReader(LazyStream(frames))
        tracemalloc.start()
        try:
            summary = y4m.upscale_y4m(reader, sink, upscaler, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert summary.frames == frames and summary.problem() is None
            assert sink.written == len(b"YUV4MPEG2 W128 H96 F25:1 Ip A1:1 C420jpeg\n") + frames * (
                6 + 4 * frame_in
            )

    peak(5)  # warm up: the backend's first call
    short, long = peak(40), peak(400)
    print(f"tracemalloc peak: 40 frames {short / 1e6:.2f} MB, 400 frames {long / 1e6:.2f} MB")
    assert short > 4 * frame_in  # it measures the frames
    assert long < short + 1e6, f"400 frames peak {long} vs 40 frames {short} bytes"
