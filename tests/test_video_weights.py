"""Video and the choice of weights: each H.264 frame's quantiser read from the decoder, "auto"
choosing each stream's weights from the mean QP of its first frames, the forced choices, the
per-frame hint of ``upscale_planes``/``stream``, and ``upscale -v`` saying what each stream got.

The clips are encoded here by libx264 at a constant QP with equal I, P and B quantisers
(``ipratio=1:pbratio=1``), so every frame's mean QP is known exactly.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from test_video import make_clip, read_clip, reference_planes

from srcnn_fast import video_quantiser, weights_choice
from srcnn_fast.infer import Upscaler, shipped_weights_path
from srcnn_fast.video_quantiser import LOOKAHEAD_FRAMES, first_frames_mean_qp, frame_qp, side_data
from srcnn_fast.weights_choice import qp_threshold

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")

FRAMES = LOOKAHEAD_FRAMES + 4  # frames after those the choice read get the same weights
THRESHOLD = qp_threshold("h264", 2)
COARSE, FINE = int(THRESHOLD) + 6, int(THRESHOLD) - 8


def h264_clip(
    path: Path, qp: int, frames: int = FRAMES, fmt: str = "yuv420p", params: str = ""
) -> None:
    options = {"qp": str(qp), "x264-params": "ipratio=1:pbratio=1" + params}
    make_clip(path, width=48, height=32, frames=frames, codec="libx264", fmt=fmt, options=options)


class _Side:
    """A stand-in for a PyAV side-data entry: its type's name and its bytes."""

    def __init__(self, data: bytes, name: str = "VIDEO_ENC_PARAMS") -> None:
        self.type = type("Type", (), {"name": name})()
        self.data = data

    def __bytes__(self) -> bytes:
        return self.data


class _Frame:
    def __init__(self, sides: list[_Side], bits: int = 8) -> None:
        self.side_data = sides
        component = type("Component", (), {"bits": bits})()
        self.format = type("Format", (), {"components": [component]})()


def enc_params(qp: int, deltas: list[int], kind: int = 1) -> bytes:
    """An AVVideoEncParams record as FFmpeg lays it out on a 64-bit build: header (nb_blocks,
    blocks_offset, block_size, type, qp, delta_qp[4][2]), then 20-byte blocks."""
    header = struct.pack("<I4xQQii32x", len(deltas), 64, 20, kind, qp)
    blocks = b"".join(struct.pack("<5i", 16 * i, 0, 16, 16, d) for i, d in enumerate(deltas))
    return header + blocks


def test_frame_qp_parses_the_record() -> None:
    assert frame_qp(_Frame([_Side(enc_params(30, [2, -1, 5]))])) == 32.0, "macroblock deltas"
    assert frame_qp(_Frame([_Side(b"x"), _Side(enc_params(30, [2, -1, 5]))], bits=10)) is None
    assert frame_qp(_Frame([_Side(enc_params(30, [2, -1, 5]))], bits=10)) == 20.0, "QP'_Y - 12"
    assert frame_qp(_Frame([_Side(enc_params(30, []))])) == 30.0, "no blocks: the picture QP"
    assert frame_qp(_Frame([_Side(enc_params(30, [4]), name="SEI_UNREGISTERED")])) is None
    assert frame_qp(_Frame([_Side(enc_params(120, [4], kind=0))], bits=10)) == 124.0, "VP9"
    assert frame_qp(_Frame([_Side(enc_params(30, [4], kind=2))])) is None, "MPEG-2: not read"
    cut = enc_params(30, [4, 4])[:-8]  # blocks past the end: the picture QP alone
    assert frame_qp(_Frame([_Side(cut)])) == 30.0
    assert frame_qp(_Frame([])) is None


class _SideMapping(dict):
    """PyAV 18.1.1's side data: a mapping from each type to its entry (iterating gives types;
    18.1.0's iterated as its entries, the list stand-in)."""


def test_frame_qp_reads_side_data_as_a_mapping_too() -> None:
    """PyAV 18.1.1 turned ``frame.side_data`` from a sequence of entries into a mapping: the
    reader finds the record in both (with the mapping iterated as a sequence it met a type and
    failed with "'Type' object has no attribute 'type'", CI's 31 failures)."""
    record = _Side(enc_params(30, [2, -1, 5]))
    other = _Side(b"x", name="SEI_UNREGISTERED")
    frame = _Frame([])
    frame.side_data = _SideMapping({other.type: other, record.type: record})
    assert frame_qp(frame) == 32.0
    assert side_data(frame, "SEI_UNREGISTERED") == [other]
    assert side_data(_Frame([other, record]), "VIDEO_ENC_PARAMS") == [record]


def decoded_qps(path: Path, export: bool = True) -> list[float | None]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if export:
            stream.codec_context.options = {"export_side_data": "venc_params"}
        return [frame_qp(frame) for frame in container.decode(stream)]


def test_frame_qp_reads_each_h264_frame(tmp_path: Path) -> None:
    h264_clip(tmp_path / "a.mp4", 33, frames=5)
    assert decoded_qps(tmp_path / "a.mp4") == [33.0] * 5
    # x264's --qp at 10 bits is QP'_Y, whose step on 10-bit samples is that of QP'_Y - 12 on
    # 8-bit ones: read on the 8-bit scale (as its CRF is: 10-bit CRF 18 is QP'_Y ~38).
    h264_clip(tmp_path / "ten.mp4", 45, frames=3, fmt="yuv420p10le")
    assert decoded_qps(tmp_path / "ten.mp4") == [33.0] * 3, "10-bit on the 8-bit scale"
    assert decoded_qps(tmp_path / "a.mp4", export=False) == [None] * 5, "not asked: nothing"
    make_clip(tmp_path / "b.mkv", frames=3, audio=False)  # ffv1 exports no quantiser
    assert decoded_qps(tmp_path / "b.mkv") == [None] * 3
    tally = video_quantiser.QuantiserTally()
    assert tally.mean is None
    # The choice's own reader: slice threads only, the first frames of the streams asked for.
    assert first_frames_mean_qp(tmp_path / "a.mp4", [0], frames=3) == {0: 33.0}
    assert first_frames_mean_qp(tmp_path / "b.mkv", [0]) == {0: None}
    assert first_frames_mean_qp(tmp_path / "missing.mp4", [0]) == {0: None}
    assert first_frames_mean_qp(tmp_path / "a.mp4", []) == {}


@pytest.mark.parametrize(("qp", "expected"), [(COARSE, "jpeg"), (FINE, "clean")])
def test_auto_chooses_each_streams_weights_from_its_mean_qp(
    tmp_path: Path, jpeg_weights: Path, qp: int, expected: str
) -> None:
    from srcnn_fast.video import upscale_video

    src, dst = tmp_path / "clip.mp4", tmp_path / "out.mkv"
    h264_clip(src, qp)
    up = Upscaler(2, backend="reference")  # the shipped clean weights and the stand-in pair
    summary = upscale_video(src, dst, up, codec="ffv1", progress=False)
    choice = up.weights_for_video("h264", float(qp))
    assert choice.weights == expected
    sign = ">=" if expected == "jpeg" else "<"
    assert choice.reason == f"H.264 mean QP {qp:.1f} {sign} {THRESHOLD:g}"
    assert summary.weights == [f"video stream #0: {choice}"]
    before, after = read_clip(src), read_clip(dst)
    audio = [packet[0] for packet in after["audio"]]
    assert audio == [packet[0] for packet in before["audio"]] and audio, "audio copied"
    assert len(after["frames"]) == FRAMES
    weights = jpeg_weights if expected == "jpeg" else shipped_weights_path(2)
    for index, (decoded, out) in enumerate(zip(before["frames"], after["frames"], strict=True)):
        for plane, want in zip(out, reference_planes(decoded, weights), strict=True):
            assert np.array_equal(plane, want), f"frame {index}: not the {expected} weights"


def test_vp9_q_index_is_read_and_chosen_on_its_own_scale(
    tmp_path: Path, jpeg_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libvpx at a fixed quantizer q (0..63) codes q-index 4q in every frame."""
    clip = tmp_path / "vp9.webm"
    options = {"crf": "30", "qmin": "30", "qmax": "30", "b": "0", "deadline": "realtime"}
    make_clip(clip, width=48, height=32, frames=4, codec="libvpx-vp9", audio=False, options=options)
    assert first_frames_mean_qp(clip, [0]) == {0: 120.0}
    up = Upscaler(2, backend="reference")
    monkeypatch.setattr(weights_choice, "QP_THRESHOLDS", {"vp9": {2: 150.0}})
    assert str(up.weights_for_video("vp9", 120.0)) == "clean weights (VP9 mean q-index 120.0 < 150)"
    monkeypatch.setattr(weights_choice, "QP_THRESHOLDS", {"vp9": {2: 100.0}})
    assert up.weights_for_video("vp9", 120.0).weights == "jpeg"
    assert up.weights_for_video("h264", 40.0).reason == "h264 video: its quantiser is not read"


def test_two_streams_a_lost_first_packet_and_a_short_stream(tmp_path: Path) -> None:
    """Each stream is read on its own (a short one beside a long one, each its own QP), and a
    packet that does not decode is skipped, not the end of the read."""
    two = tmp_path / "two.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(two), "w") as out:
        streams = []
        for qp in (36, 20):
            options = {"qp": str(qp), "x264-params": "ipratio=1:pbratio=1"}
            stream = out.add_stream("libx264", rate=25, options=options)
            stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
            streams.append(stream)
        for i in range(3 * LOOKAHEAD_FRAMES):
            for stream in streams[: 1 if i >= 3 else 2]:  # the second stream: 3 frames
                frame = av.VideoFrame.from_ndarray(
                    rng.integers(0, 255, (32, 48, 3), np.uint8), format="rgb24"
                )
                frame.pts = i
                out.mux(stream.encode(frame.reformat(format="yuv420p")))
        for stream in streams:
            out.mux(stream.encode(None))
    assert first_frames_mean_qp(two, [0, 1, 7]) == {0: 36.0, 1: 20.0, 7: None}

    src, broken = tmp_path / "g.mkv", tmp_path / "broken.mkv"
    h264_clip(src, 36, frames=20, params=":keyint=5:min-keyint=5:scenecut=0")
    with av.open(str(src)) as good, av.open(str(broken), "w") as out:
        stream = out.add_stream_from_template(good.streams.video[0])
        for n, packet in enumerate(p for p in good.demux(good.streams.video[0]) if p.size):
            if n == 0:  # the first keyframe's payload replaced by noise
                data = bytes(packet)
                junk = av.Packet(data[:4] + rng.integers(0, 256, len(data) - 4, np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base = packet.pts, packet.dts, packet.time_base
                junk.is_keyframe = True
                packet = junk
            packet.stream = stream
            out.mux(packet)
    assert first_frames_mean_qp(broken, [0]) == {0: 36.0}


def test_forced_and_unread_choices(
    tmp_path: Path, jpeg_weights: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srcnn_fast.video import _qp_matters, upscale_video

    coarse, lossless = tmp_path / "coarse.mp4", tmp_path / "lossless.mkv"
    h264_clip(coarse, COARSE, frames=4)  # fewer frames than the choice reads: the mean of 4
    make_clip(lossless, frames=3)
    forced = Upscaler(2, backend="reference", degradation="clean")
    summary = upscale_video(coarse, tmp_path / "a.mkv", forced, codec="ffv1", progress=False)
    assert summary.weights == ["video stream #0: clean weights (asked for clean)"]
    assert summary.frames == 4
    up = Upscaler(2, backend="reference")
    summary = upscale_video(lossless, tmp_path / "b.mkv", up, progress=False)
    unread = "clean weights (ffv1 video: its quantiser is not read)"
    assert summary.weights == [f"video stream #0: {unread}"]
    assert str(up.weights_for_video("h264", None)) == (
        "clean weights (H.264 video without exported QPs)"
    )
    given = Upscaler(2, tiny_weights, backend="reference")
    assert given.weights_for_video("h264", 50.0).weights == "given"
    # A stream's first frames are read only where the choice depends on the QP.
    assert _qp_matters(up, "h264") and not _qp_matters(up, "ffv1")
    assert not _qp_matters(forced, "h264") and not _qp_matters(given, "h264")
    monkeypatch.setattr(weights_choice, "QP_THRESHOLDS", {"h264": {}})
    assert str(up.weights_for_video("h264", 50.0)) == (
        "clean weights (no H.264 QP threshold measured for x2)"
    )


def test_planes_and_stream_take_a_per_frame_hint(jpeg_weights: Path) -> None:
    rng = np.random.default_rng(3)
    planes = [rng.integers(16, 236, shape, dtype=np.uint8) for shape in ((12, 14), (6, 7), (6, 7))]
    up = Upscaler(2, backend="cpu")
    jpeg = Upscaler(2, jpeg_weights, backend="cpu").upscale_planes(planes)
    clean = Upscaler(2, shipped_weights_path(2), backend="cpu").upscale_planes(planes)
    for got, want in zip(up.upscale_planes(planes, degradation="jpeg"), jpeg, strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(up.upscale_planes(planes), clean, strict=True):
        np.testing.assert_array_equal(got, want)  # bare planes under "auto": clean
    (streamed,) = up.stream([planes], degradation="jpeg")
    for got, want in zip(streamed, jpeg, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(jpeg[0], clean[0])


def test_upscale_verbose_names_each_streams_weights(
    tmp_path: Path, jpeg_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from srcnn_fast.cli import main

    h264_clip(tmp_path / "clip.mp4", COARSE, frames=4)
    argv = ["upscale", str(tmp_path / "clip.mp4"), "--backend", "reference", "--codec", "ffv1"]
    assert main([*argv, "-o", str(tmp_path / "out.mkv"), "-v"]) == 0
    err = capsys.readouterr().err
    assert f"video stream #0: JPEG-aware weights (H.264 mean QP {COARSE:.1f} >= " in err, err
    assert main([*argv, "-o", str(tmp_path / "o2.mkv"), "-v", "--weights-for", "clean"]) == 0
    assert "video stream #0: clean weights (asked for clean)" in capsys.readouterr().err


def test_the_weights_line_comes_before_the_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30 item 2: ``-v`` says which weights a video got when they are chosen, so that a
    long run with the wrong ones can be stopped, not after the last frame."""
    from srcnn_fast.cli import main

    events: list[str] = []
    real = Upscaler.upscale_planes

    def upscale_planes(self, *args, **kwargs):
        events.append("upscale")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Upscaler, "upscale_planes", upscale_planes)
    h264_clip(tmp_path / "clip.mp4", FINE, frames=4)
    argv = ["upscale", str(tmp_path / "clip.mp4"), "--backend", "reference", "--codec", "ffv1"]
    import sys

    class Err:
        def write(self, text: str) -> int:
            if "video stream #0: clean weights (H.264 mean QP" in text:
                events.append("weights line")
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stderr", Err())
    assert main([*argv, "-o", str(tmp_path / "out.mkv"), "-v"]) == 0
    assert events[:2] == ["weights line", "upscale"] and events.count("upscale") == 4, events


def test_mean_qp_exactly_at_the_threshold_chooses_jpeg_at_every_scale(tmp_path: Path) -> None:
    """Issue 30 item 7: the rule is "mean QP >= threshold", and the boundary is reachable: 6
    frames at QP 29 and 6 at QP 30 read 29.5, x2's threshold (x264 at QP 30 with a keyframe
    every other frame, and the I frames' QP one step finer: ipratio 2^(1/6)). At each scale and
    codec, the threshold itself gives the JPEG-aware weights and the float just below it the
    clean ones (the shipped pairs, so the choice is between two real files)."""
    clip = tmp_path / "boundary.mp4"
    options = {
        "qp": "30",
        "x264-params": "ipratio=1.1225:pbratio=1:keyint=2:min-keyint=1:scenecut=0:bframes=0",
    }
    make_clip(clip, 48, 32, frames=LOOKAHEAD_FRAMES, codec="libx264", options=options)
    assert decoded_qps(clip) == [29.0, 30.0] * (LOOKAHEAD_FRAMES // 2)
    (mean,) = first_frames_mean_qp(clip, [0]).values()
    assert mean == 29.5 == qp_threshold("h264", 2), mean
    checked = []
    for codec in ("h264", "vp9"):
        for scale in (2, 3, 4):
            threshold = qp_threshold(codec, scale)
            if threshold is None:
                continue
            up = Upscaler(scale, backend="reference")
            assert up.has_jpeg_weights, f"x{scale}: the shipped JPEG-aware weights"
            below = float(np.nextafter(threshold, -np.inf))
            at, under = up.weights_for_video(codec, threshold), up.weights_for_video(codec, below)
            assert (at.weights, under.weights) == ("jpeg", "clean"), (codec, scale, at, under)
            checked.append((codec, scale))
    assert ("h264", 4) in checked and ("vp9", 2) in checked, checked
    up = Upscaler(2, backend="reference")
    assert str(up.weights_for_video("h264", mean)) == (
        "JPEG-aware weights (H.264 mean QP 29.5 >= 29.5)"
    )
