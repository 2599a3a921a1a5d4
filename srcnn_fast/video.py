"""Video files: decode, upscale, encode, overlapped (PyAV, the ``video`` extra).

``upscale_video(src, dst)`` upscales every video stream of ``src`` into ``dst`` and copies
every other stream (audio, subtitles, data) packet for packet. Frames stay in YUV as decoded:
SRCNN on the Y plane, chroma bicubic at its own size (:meth:`Upscaler.upscale_planes`). The
decoder, the upscale and the encoder run as a pipeline (:mod:`srcnn_fast.pipeline`) with a few
frames in flight. Kept: timestamps (variable frame rate too), frame rate, the display matrix
(rotation, flips), colour metadata (primaries, transfer, matrix, range), sample aspect ratio,
bit depth, stream and container metadata, chapters. The output is written under a temporary
name and renamed when complete.

PyAV is imported on first use, so the package works without it; a video input then gets one
line saying how to install it.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .console import counted, frame_bar
from .errors import ImageError, OutputError, SrcnnError
from .imagefile import IMAGE_EXTENSIONS, atomic_output
from .pipeline import StageTimes, pipelined
from .segments import (
    DEFAULT_SEGMENT_SECONDS,
    Segment,
    WorkFolder,
    input_identity,
    joined_packets,
    keyframe_times,
    plan_segments,
)
from .stage_cpu import STAGES, StageClock
from .video_quantiser import first_frames_mean_qp, side_data

if TYPE_CHECKING:
    from .batch import Summary
    from .infer import Upscaler
    from .weights_choice import WeightsChoice

__all__ = [
    "SegmentedRun",
    "VideoSummary",
    "encode_segment",
    "is_media",
    "is_video",
    "plan_segmented",
    "upscale_frame",
    "upscale_video",
    "video_encoder",
    "videos_line",
]

INSTALL_HINT = "pip install 'srcnn-fast[video]'"

#: The encoder for each decoded codec that the bundled FFmpeg can write again.
ENCODERS = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "mpeg4": "mpeg4",
    "mpeg2video": "mpeg2video",
    "mjpeg": "mjpeg",
    "prores": "prores_ks",
}
FALLBACK_ENCODER = "libx264"
#: Outputs that hold raw frames only (no codec of the input's fits): the encoder FFmpeg's own
#: tools pick for them, and the muxer options they need. YUV4MPEG2 takes more than 8 bits per
#: sample only below FFmpeg's "normal" compliance (its own `-strict -1`); such an output is
#: made in one pass (its frames are not packets to remux).
RAW_OUTPUTS = {".y4m": ("wrapped_avframe", {"strict": "unofficial"})}
RAW_MUXERS = ("yuv4mpegpipe",)

#: Default quality per encoder: visually transparent for a person watching (x264's CRF 18
#: is the usual "visually lossless" point; the others are set to look alike), at each
#: encoder's default speed. --crf and --preset override them.
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libvpx": 10, "libsvtav1": 28}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}
#: Encoders that take a preset, and the option that names it.
PRESET_OPTION = {"libx264": "preset", "libx265": "preset", "libsvtav1": "preset"}

#: Frame formats whose planes are upscaled as they are: planar YUV (any subsampling) and
#: gray, 8 to 16 bits little-endian. Other formats (NV12, packed YUV, RGB) are converted by
#: FFmpeg to the planar YUV format of their depth first.
#: FFmpeg's AVDISCARD_ALL: a stream its demuxer marks as not for playback.
_DISCARD_ALL = 48
_PLANAR = re.compile(r"^(yuvj?(444|422|420|440|411|410)p|gray)(9|10|12|14|16)?(le)?$")


@dataclass
class VideoSummary:
    """What :func:`upscale_video` did: frames, time, the bottleneck shares, problems."""

    source: Path
    target: Path
    frames: int = 0
    #: Of ``frames``, those in segments an interrupted run had finished (not upscaled again).
    resumed_frames: int = 0
    seconds: float = 0.0
    lost_frames: int = 0
    #: Frames the decoder output with its error concealment over damaged data (FFmpeg's
    #: decode_error_flags or corrupt flag): all there, but not as encoded.
    damaged_frames: int = 0
    #: Video streams that ended before their declared end: (stream index, seconds reached,
    #: seconds declared).
    short: list[tuple[int, float, float]] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    notes: list[str] = field(default_factory=list)
    #: The weights each video stream got, and why ("video stream #0: clean weights (...)").
    weights: list[str] = field(default_factory=list)
    #: CPU seconds per stage, the codecs' and libraries' threads included
    #: (:mod:`srcnn_fast.stage_cpu`); None where they cannot be read (not Linux).
    cpu: dict[str, float] | None = None

    def add_cpu(self, cpu: dict[str, float] | None) -> None:
        """A segment's CPU seconds per stage added in: each stage's adds up over the
        segments (wherever they were made)."""
        if cpu is not None:
            self.cpu = {stage: (self.cpu or {}).get(stage, 0.0) + cpu[stage] for stage in STAGES}

    def shares(self) -> tuple[float, float, float]:
        """(decode, upscale, encode): each stage's share of the CPU time (of the pipeline's
        waits where that cannot be read, :meth:`StageTimes.shares`)."""
        total = sum(self.cpu.values()) if self.cpu else 0.0
        if not total:
            return self.times.shares()
        return tuple(self.cpu[stage] / total for stage in STAGES)  # type: ignore[return-value]

    @property
    def fps(self) -> float:
        done = self.frames - self.resumed_frames
        return done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        decode, upscale, encode = (round(100 * share) for share in self.shares())
        kept = f" ({self.resumed_frames} kept from the interrupted run)" * bool(self.resumed_frames)
        return (
            f"{self.source} -> {self.target}: {counted(self.frames, 'frame')}{kept} in "
            f"{self.seconds:.1f} s, "
            f"{self.fps:.1f} fps; bottleneck: decode {decode}%, upscale {upscale}%, "
            f"encode {encode}%"
        )

    def problem(self) -> str | None:
        """The one line for a video that came out short or damaged: frames that could not be
        decoded, frames the decoder concealed, a stream that ended before its declared end
        (None: none of these)."""
        if not self.lost_frames and not self.short and not self.damaged_frames:
            return None
        what = []
        if self.lost_frames:
            what.append(f"{counted(self.lost_frames, 'frame')} could not be decoded")
        if self.damaged_frames:
            what.append(
                f"{counted(self.damaged_frames, 'frame')} decoded with errors (concealed by the "
                "decoder)"
            )
        for index, reached, declared in self.short:
            what.append(
                f"video stream #{index} ended at {reached:.2f} s of the {declared:.2f} s declared"
            )
        return (
            f"{self.source}: {'; '.join(what)} (truncated or corrupt input); the "
            f"{counted(self.frames, 'frame')} that decoded are in {self.target}"
        )


def videos_line(videos: int, outcome: Summary, frames: int) -> str:
    """The closing line of a run over several videos, as the images' run has one: ``3 videos:
    2 upscaled, 1 failed in 9.1 s; 480 frames, 52.7 fps`` (``outcome``: the counts and the
    run's wall time)."""
    fps = frames / outcome.seconds if outcome.seconds > 0 else 0.0
    frames_line = f"{counted(frames, 'frame')}, {fps:.1f} fps"
    return f"{counted(videos, 'video')}: {outcome.line()}; {frames_line}"


#: Encoders `srcnn-fast info` looks for (the ones `--codec` is documented with).
INFO_ENCODERS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "ffv1", "mpeg4")


def video_support() -> str:
    """One line for `srcnn-fast info`: whether video works here, PyAV's and FFmpeg's
    versions and which of :data:`INFO_ENCODERS` this FFmpeg has."""
    try:
        import av
    except ImportError:
        return "unavailable: PyAV is not installed (pip install 'srcnn-fast[video]')"
    have = [name for name in INFO_ENCODERS if name in av.codecs_available]
    ffmpeg = ".".join(str(part) for part in av.library_versions.get("libavcodec", ()))
    return (
        f"available (PyAV {av.__version__}, libavcodec {ffmpeg or '?'}); encoders: "
        f"{', '.join(have) or 'none of ' + ', '.join(INFO_ENCODERS)}"
    )


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ImageError(f"video needs PyAV, which is not installed ({INSTALL_HINT})") from None
    return av


def is_video(path: str | os.PathLike[str]) -> bool:
    """True when FFmpeg finds a video stream in the file, whatever its extension. Image
    files (by extension, or FFmpeg's single-image demuxers) are not videos; without PyAV,
    a file with a known video extension counts as one (and then asks for PyAV)."""
    return _probe(Path(path)) == "video"


def is_media(path: str | os.PathLike[str]) -> bool:
    """True for a file FFmpeg reads as audio or video (not as a single image): such a file
    belongs to the video path, which says what is wrong with it (no video stream, ...)."""
    return _probe(Path(path)) is not None


def _probe(path: Path) -> str | None:
    """ "video", "media" (streams, none of them video) or None (not a media file)."""
    if path.suffix.lower() in IMAGE_EXTENSIONS or not path.is_file():
        return None
    try:
        av = _av()
    except ImageError:
        return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else None
    try:
        with av.open(str(path)) as container:
            name = container.format.name
            if name == "image2" or name.endswith("_pipe") or not container.streams:
                return None
            return "video" if container.streams.video else "media"
    except Exception:
        # Not a media file at all: the image path reports it, unless its name says video
        # (then the video path says it cannot be read as one).
        return "media" if path.suffix.lower() in VIDEO_EXTENSIONS else None


#: Extensions taken for video without probing (where PyAV is missing: to say so).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".ts")


def video_encoder(decoder: str, codec: str | None = None) -> str:
    """The encoder for a stream decoded by ``decoder``: ``codec`` if given, else the same
    codec where the bundled FFmpeg can encode it, else H.264."""
    av = _av()
    name = codec or ENCODERS.get(decoder, decoder)
    try:
        found = av.Codec(name, "w")
    except Exception:
        if codec is not None:
            raise ImageError(f"--codec {codec}: no such encoder in this FFmpeg") from None
        return FALLBACK_ENCODER
    if found.type != "video":
        raise ImageError(f"--codec {codec}: {found.name} is not a video encoder")
    return found.name


# --- frames <-> planes -------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How one input video stream's frames are read: format, depth, range."""

    format: str  # planar format the planes are in (after any conversion)
    bits: int
    full_range: bool


def _planar_format(name: str, bits: int) -> str:
    """The format to convert a non-planar frame format to (NV12 -> yuv420p, ...)."""
    if _PLANAR.match(name):
        return name
    if bits <= 8:
        return "yuv420p"
    return "yuv420p10le" if bits <= 10 else "yuv420p12le"


def _layout(frame: Any) -> _Layout:
    fmt = frame.format
    bits = fmt.components[0].bits
    name = _planar_format(fmt.name, bits)
    # Full range: the frame says so (color_range 2 = JPEG/pc), or a yuvj format implies it.
    full = int(frame.color_range) == 2 or name.startswith("yuvj")
    return _Layout(name, bits if name == fmt.name else (8 if bits <= 8 else int(name[8:10])), full)


def _plane_views(frame: Any, dtype: np.dtype | type) -> list[np.ndarray]:
    """A frame's planes as NumPy views of its memory, line padding skipped by the stride
    (no copy: a view holds its plane, and the plane its frame, so the memory stays valid
    while the view lives)."""
    return [
        np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width]
        for plane in frame.planes
    ]


def _sample_dtype(layout: _Layout) -> np.dtype:
    return np.dtype(np.uint8) if layout.bits <= 8 else np.dtype("<u2")


def _read_planes(frame: Any, layout: _Layout) -> list[np.ndarray]:
    if frame.format.name != layout.format:
        frame = frame.reformat(format=layout.format)
    return _plane_views(frame, _sample_dtype(layout))


def _output_frame(layout: _Layout, width: int, height: int) -> tuple[Any, list[np.ndarray]]:
    """A new frame of the input's planar format, and views of its planes to upscale into."""
    frame = _av().VideoFrame(width, height, layout.format)
    return frame, _plane_views(frame, _sample_dtype(layout))


# --- the transcode ----------------------------------------------------------------------


@dataclass
class _VideoOut:
    """One upscaled stream: the input stream, its encoder stream, what was decoded."""

    source: Any
    stream: Any
    frames_expected: int
    decoded: int = 0
    errors: int = 0
    damaged: int = 0  # decoded frames FFmpeg flags as concealed or corrupt
    started: bool = False
    layout: _Layout | None = None  # set by the decode stage from the first frame
    out_format: str = ""  # set by the encode stage from the first frame
    last_pts: int | None = None
    choice: WeightsChoice | None = None  # the weights, chosen before the pipeline starts
    end: float | None = None  # seconds: where the last decoded frame ends
    packet_end: float | None = None  # seconds: where the last demuxed packet ends
    #: A segment's: errors and concealed frames count only inside it (its preroll and the
    #: frame past its end, decoded to find the end, are its neighbours' to count).
    window: Segment | None = None
    packets: int = 0  # packets demuxed (a segment's: inside it), decoded or not

    def counts(self, pts: int | None) -> bool:
        window = self.window
        if window is None or pts is None:
            return True
        return (window.start is None or pts >= window.start) and (
            window.end is None or pts < window.end
        )


#: How far (in frame periods) a video stream may end before its declared end: the rounding of
#: the declared duration (Matroska's tag: nanoseconds; a stream duration: its time base). A
#: container that leaves the last frame's duration out declares less, never more. Half a
#: frame: one frame missing is short (1.5 let a file cut before its last frame pass).
SHORT_FRAMES = 0.5


def _declared_end(stream: Any) -> float | None:
    """Where the container says a video stream ends (seconds), or None where it says nothing:
    the stream's duration (MP4), or its Matroska DURATION tag ("HH:MM:SS.nnnnnnnnn")."""
    base = float(stream.time_base or 0)
    start = (stream.start_time or 0) * base
    if stream.duration and base:
        return start + stream.duration * base
    tag = (stream.metadata or {}).get("DURATION", "")
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag.strip())
    if match:
        hours, minutes, seconds = match.groups()
        return start + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _check_end(index: int, video: _VideoOut, summary: VideoSummary) -> None:
    """Record in ``summary`` a stream that ended early: before its declared end, or, where
    the container declares none, before the end of its last packet."""
    declared = _declared_end(video.source)
    if declared is None:
        declared = video.packet_end
    rate = float(video.source.average_rate or 25)
    if (
        declared is not None
        and video.end is not None
        and declared - video.end > SHORT_FRAMES / rate
    ):
        summary.short.append((index, video.end, declared))


def _decode_error_types(av: Any) -> tuple[type[BaseException], ...]:
    return (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError)


def _open_input(av: Any, src: Path) -> Any:
    try:
        return av.open(str(src), metadata_errors="replace")
    except FileNotFoundError:
        raise ImageError(f"{src}: no such file") from None
    except av.error.InvalidDataError as exc:
        raise ImageError(_not_media(src, exc)) from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ImageError(f"{src}: cannot read as video ({_reason(exc)})") from None


#: Bytes of a file FFmpeg cannot read that the message looks at (and shows, if text).
_HEAD_BYTES = 256


def _not_media(src: Path, exc: BaseException) -> str:
    """The line for a file FFmpeg finds no media in. A text file under a video's name (a Git
    LFS pointer never fetched, an HTML error page saved as the download) says so and shows how
    it starts: "Invalid data found when processing input" told the user nothing."""
    try:
        with open(src, "rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        head = b"\0"
    if not head:
        return f"{src}: not a media file: it is empty"
    try:
        # A full read may end inside a character: only there is a broken one let through.
        text = head.decode("utf-8", "ignore" if len(head) == _HEAD_BYTES else "strict")
    except UnicodeDecodeError:
        text = "\0"  # not UTF-8: binary, whatever it is
    if head.strip() and "\0" not in text and all(c.isprintable() or c in "\t\r\n" for c in text):
        first = text.strip().splitlines()[0][:80]
        lfs = text.startswith("version https://git-lfs.github.com/spec/")
        hint = " (a Git LFS pointer: fetch the file itself with `git lfs pull`)" if lfs else ""
        return f"{src}: not a media file: it is text, starting {first!r}{hint}"
    return f"{src}: cannot read as video ({_reason(exc)})"


def _encrypted(packet: Any) -> bool:
    """Whether a packet is encrypted (CENC: an MP4 'encv'/'enca' sample entry with its 'sinf'
    and 'tenc' boxes, as DRM'd streaming services ship): FFmpeg's demuxer attaches each such
    packet's encryption info (key id, IV, clear and encrypted ranges) as side data, and the
    decoder, given no key, would see noise ("no video frame could be decoded")."""
    has = getattr(packet, "has_sidedata", None)  # PyAV 14+
    return bool(has is not None and has("encryption_info"))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _encoder_options(encoder: str, crf: int | None, preset: str | None) -> dict[str, str]:
    options: dict[str, str] = {}
    quality = crf if crf is not None else DEFAULT_CRF.get(encoder)
    if quality is not None and encoder in DEFAULT_CRF:
        options["crf"] = str(quality)
        if encoder in ("libvpx-vp9", "libvpx"):
            options["b"] = "0"  # constant quality: VP9's CRF needs the bitrate cap off
    elif crf is not None:
        raise ImageError(f"--crf: the {encoder} encoder has no CRF (it is lossless or fixed)")
    chosen = preset if preset is not None else DEFAULT_PRESET.get(encoder)
    if chosen is not None and encoder in PRESET_OPTION:
        options[PRESET_OPTION[encoder]] = chosen
    elif preset is not None:
        raise ImageError(f"--preset: the {encoder} encoder has no presets")
    return options


def _output_format(encoder: Any, layout: _Layout) -> str:
    """The input's planar format where the encoder takes it, else the nearest one it does."""
    formats = [f.name for f in (encoder.video_formats or ())]
    if not formats or layout.format in formats:
        return layout.format
    wanted = [layout.format.replace("yuvj", "yuv")]
    if layout.bits > 8:
        wanted += [f"yuv420p{layout.bits}le", "yuv420p10le"]
    wanted += ["yuv420p"]
    for name in wanted:
        if name in formats:
            return name
    return formats[0]


def _add_video_stream(
    av: Any, out: Any, source: Any, scale: int, encoder: str, options: dict[str, str]
) -> Any:
    ctx = source.codec_context
    rate = source.average_rate or source.guessed_rate or Fraction(25)
    stream = out.add_stream(encoder, rate=rate, options=options)
    stream.width, stream.height = ctx.width * scale, ctx.height * scale
    # The input's time base: every frame keeps its own timestamp (variable frame rate too).
    # A raw-frame output (YUV4MPEG2) has a frame rate, not timestamps: its header's rate is
    # the stream's time base, so that is one frame.
    raw = out.format.name in RAW_MUXERS
    stream.time_base = 1 / Fraction(rate) if raw else source.time_base
    stream.codec_context.time_base = source.time_base
    for name in ("color_primaries", "color_trc", "colorspace", "color_range"):
        setattr(stream.codec_context, name, getattr(ctx, name))
    # FFmpeg's guess: the container's aspect (an MP4 'pasp', Matroska's display size) where it
    # gives one, else the bitstream's; the encoder writes it into both of the output's.
    aspect = source.sample_aspect_ratio or ctx.sample_aspect_ratio
    if aspect:
        stream.codec_context.sample_aspect_ratio = aspect
    stream.metadata.update(source.metadata)
    return stream


def _configure_on_first_frame(video: _VideoOut, first: Any, layout: _Layout, frame: Any) -> str:
    """Pixel format, size and display matrix: known for sure only from the first decoded
    frame (``first``; ``frame`` is its upscaled version)."""
    stream = video.stream
    fmt = _output_format(stream.codec_context.codec, layout)
    stream.pix_fmt = fmt
    stream.width, stream.height = frame.width, frame.height
    if layout.full_range and int(stream.codec_context.color_range) == 0:
        stream.codec_context.color_range = 2
    for side in side_data(first, "DISPLAYMATRIX"):
        stream.set_display_matrix(np.frombuffer(bytes(side), "<i4").tolist())
    return fmt


def upscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscaler: Upscaler | None = None,
    *,
    scale: int | None = None,
    weights: Any = None,
    backend: str = "auto",
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    overwrite: bool = False,
    overlap: bool = True,
    depth: int = 3,
    progress: bool | None = None,
    on_weights: Callable[[str], None] | None = None,
    segment_seconds: float | None = DEFAULT_SEGMENT_SECONDS,
    on_note: Callable[[str], None] | None = None,
) -> VideoSummary:
    """Upscale every video stream of ``src`` into ``dst``, copying the other streams.

    ``upscaler`` (or ``scale``/``weights``/``backend`` to build one); ``codec``: the encoder
    (default: the input's where this FFmpeg can encode it, else libx264); ``crf``/``preset``
    override the encoder's defaults. ``overlap=False`` runs decode, upscale and encode one
    after another (for comparison); ``depth`` is the number of frames each queue holds.
    ``progress``: a bar on stderr (None: when stderr is a terminal). ``on_weights`` is called
    with each video stream's weights line as soon as the choice is made, before the first
    frame is upscaled (``upscale -v`` prints it then, so a wrong choice can be stopped early;
    the lines are in the summary's ``weights`` too).

    ``segment_seconds``: a file with one video stream is made in closed segments of about
    this many seconds (:mod:`srcnn_fast.segments`), in a hidden work folder beside ``dst``,
    then joined by remuxing; rerun after an interruption, the same job keeps the finished
    segments (``on_note`` gets the line that says so), and ``overwrite`` discards them.
    None or 0, several video streams, or a video too short to cut: one pass. Returns a
    :class:`VideoSummary`; frames that could not be decoded are counted in it, not raised.
    Problems with the file raise :class:`~srcnn_fast.errors.SrcnnError` with one line, and
    leave no output and no temporary file.
    """
    av = _av()
    src, dst = Path(src), Path(dst)
    if upscaler is None:
        from .infer import Upscaler

        upscaler = Upscaler(scale, weights, backend)
    settings = _Settings(codec, crf, preset, overwrite, overlap, depth)
    run = _plan_segmented(src, dst, upscaler, settings, segment_seconds, on_weights, on_note)
    if run is not None:
        _make_segments(run, upscaler, progress)
        return run.join()
    summary = VideoSummary(src, dst)
    started = time.perf_counter()
    with _open_input(av, src) as container:
        job, _ = _check_and_plan(av, container, src, dst, settings, 0)
        with atomic_output(dst, overwrite, keep_suffix=True) as tmp:
            _transcode(av, container, tmp, dst, upscaler, summary, job, progress, on_weights)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class _Settings:
    """What :func:`upscale_video` is asked for, besides the files and the model."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    overwrite: bool = False
    overlap: bool = True
    depth: int = 3


def _check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """The output refused where it is the input, or exists without ``overwrite``."""
    if dst.exists():
        if src.exists() and dst.resolve() == src.resolve():
            raise OutputError(f"{dst}: is the input itself; not overwritten")
        if not overwrite:
            raise OutputError(f"{dst}: already exists (use --overwrite to replace it)")


def _check_and_plan(
    av: Any,
    container: Any,
    src: Path,
    dst: Path,
    settings: _Settings,
    segment_seconds: float | None,
) -> tuple[_Job, list[Segment]]:
    """The input's video streams checked; the job's settings and the segments it is made
    in (one: a single pass)."""
    videos = list(container.streams.video)
    if not videos:
        raise ImageError(f"{src}: no video stream")
    for stream in videos:
        if stream.codec_context is None:
            raise ImageError(
                f"{src}: video stream #{stream.index}: no decoder for its codec in this FFmpeg"
            )
    s, codec = settings, settings.codec
    raw = RAW_OUTPUTS.get(dst.suffix.lower())
    if raw is not None:
        codec, segment_seconds = codec or raw[0], None
    job = _Job(codec, s.crf, s.preset, _muxer(dst, container), s.overlap, s.depth)
    return job, _plan(av, container, videos, segment_seconds)


@dataclass(frozen=True)
class _Job:
    """The settings every segment of a video is made with."""

    codec: str | None
    crf: int | None
    preset: str | None
    muxer: str | None  # None: the one the output's extension picks
    overlap: bool = True
    depth: int = 3


def _muxer(dst: Path, container: Any) -> str | None:
    """The output's extension picks the muxer; a name without one (a video found by probing,
    whatever its name) keeps the input's container format."""
    return None if dst.suffix else container.format.name.split(",")[0]


def _transcode(
    av: Any,
    container: Any,
    tmp: Path,
    dst: Path,
    upscaler: Upscaler,
    summary: VideoSummary,
    job: _Job,
    progress: Any,
    on_weights: Callable[[str], None] | None,
    segment: Segment | None = None,
    choices: dict[int, WeightsChoice] | None = None,
) -> dict[int, _VideoOut]:
    """Decode, upscale and encode ``container`` into ``tmp``. With ``segment``: that segment's
    frames of the (one) video stream alone, with the weights already chosen (``choices``),
    into a segment file; the whole-file checks (frames lost, a short stream) are the
    caller's. ``progress``: as for :func:`upscale_video`, or a bar to update (not closed)."""
    src = summary.source
    codec, crf, preset = job.codec, job.crf, job.preset
    out = _open_output(av, tmp, dst, job.muxer)
    try:
        videos: dict[int, _VideoOut] = {}
        copied: dict[int, Any] = {}
        for stream in container.streams:
            if stream.type == "video":
                encoder = video_encoder(stream.codec_context.name, codec)
                options = _encoder_options(encoder, crf, preset)
                try:
                    target = _add_video_stream(av, out, stream, upscaler.scale, encoder, options)
                except (av.error.FFmpegError, ValueError) as exc:
                    raise ImageError(
                        f"{src}: cannot write video stream #{stream.index} with {encoder} "
                        f"into {dst.suffix or 'this container'} ({_reason(exc)})"
                    ) from None
                expected = 0 if segment is not None else stream.frames or 0
                videos[stream.index] = _VideoOut(stream, target, expected, window=segment)
            elif segment is None:
                _copy_stream(av, out, stream, copied, summary)
        _copy_container_data(out, container)
        for stream in container.streams.video:
            stream.thread_type = "AUTO"  # frame threads: decode keeps up on every core
        if choices is None:
            _choose_weights(src, videos, upscaler, summary, on_weights)
        else:
            for index, video in videos.items():
                video.choice = choices[index]
                upscaler.backend_for(video.choice)

        own_bar = progress is None or isinstance(progress, bool)
        total = sum(v.frames_expected for v in videos.values()) or None
        bar = frame_bar(progress, total, src) if own_bar else progress
        decoded = _demux(av, container, videos, copied)
        if segment is not None:
            decoded = _window(container, decoded, segment)
        clock = StageClock()
        items = pipelined(
            clock.source(decoded),
            clock.work(lambda item: _upscale_item(upscaler, item, videos)),
            depth=job.depth,
            times=summary.times,
            overlap=job.overlap,
        )
        try:
            # The muxer opens every encoder at its first packet, and an encoder's format
            # and display matrix are known for sure only from its first decoded frame: what
            # comes before every video stream has its first frame (a little audio) waits.
            waiting: list[Any] | None = []

            def emit(packets: list[Any]) -> None:
                if waiting is None:
                    _mux(av, out, packets, dst)
                else:
                    waiting.extend(packets)

            for item in items:
                with clock.own("encode"):  # the caller's thread: the encoders and the muxer
                    if item[0] == "packet":
                        _, packet, index = item
                        packet.stream = copied[index]
                        emit([packet])
                        continue
                    _, index, frame, layout, pts, time_base, first = item
                    video = videos[index]
                    frame.pts, frame.time_base = pts, time_base
                    if not video.started:
                        video.started = True
                        video.out_format = _configure_on_first_frame(video, first, layout, frame)
                    if frame.format.name != video.out_format:
                        frame = frame.reformat(format=video.out_format)
                    emit(_encode(av, video, frame, src))
                    if waiting is not None and all(v.started for v in videos.values()):
                        _mux(av, out, waiting, dst)
                        waiting = None
                summary.frames += 1
                if bar is not None:
                    bar.update(1)
            with clock.own("encode"):
                for video in videos.values():
                    if video.started:
                        emit(_encode(av, video, None, src))
                if waiting:
                    _mux(av, out, waiting, dst)
            summary.cpu = clock.stop()  # before the encoders close: their threads still count
        finally:
            items.close()
            if bar is not None and own_bar:
                bar.close()
        for video in videos.values():
            # A packet that fails to decode is a frame lost; where the header gives the
            # frame count, frames that never arrived (a truncated file) are lost too; where
            # each packet is a frame, so is a packet that gave none (a decoder may drop a
            # damaged one without a word: ffv1 does).
            counted = video.packets if _frames_are_packets(container, video.source) else 0
            if video.window is not None:
                video.frames_expected, video.decoded = counted, summary.frames
            else:
                video.frames_expected = max(video.frames_expected, counted)
            summary.lost_frames += max(video.errors, video.frames_expected - video.decoded)
            summary.damaged_frames += video.damaged
        if segment is None:
            for index, video in videos.items():
                _check_end(index, video, summary)
        if summary.frames == 0 and segment is None:
            raise ImageError(f"{src}: no video frame could be decoded")
    except BaseException:
        out.close()  # the temporary file is removed by atomic_output
        raise
    out.close()
    return videos


def _mux(av: Any, out: Any, packets: list[Any], dst: Path) -> None:
    """The muxer writes its header at the first packets: a container that refuses the encoded
    stream only then (an .ogg given H.264, say) is one line, not a traceback."""
    try:
        out.mux(packets)
    except av.error.FFmpegError as exc:
        raise OutputError(
            f"{dst}: cannot write this video into {dst.suffix or 'this container'} ({_reason(exc)})"
        ) from None


def _open_output(av: Any, tmp: Path, dst: Path, muxer: str | None) -> Any:
    raw = RAW_OUTPUTS.get(dst.suffix.lower())
    try:
        return av.open(str(tmp), "w", format=muxer, options=raw[1] if raw else None)
    except (av.error.FFmpegError, ValueError) as exc:
        raise OutputError(
            f"{dst}: cannot write a video with this extension ({_reason(exc)})"
        ) from None


def _copy_stream(
    av: Any, out: Any, stream: Any, copied: dict[int, Any], summary: VideoSummary
) -> None:
    """``stream`` (not video) copied packet for packet into ``out``, entered in ``copied``;
    one that the output's container cannot hold is left out with a note."""
    if stream.discard == _DISCARD_ALL:
        return  # an MP4 chapter-title track: the chapters are copied as chapters
    try:
        copied[stream.index] = out.add_stream_from_template(stream)
    except (av.error.FFmpegError, ValueError) as exc:
        summary.notes.append(
            f"{summary.source}: {stream.type} stream #{stream.index} not copied ({_reason(exc)})"
        )


def _copy_container_data(out: Any, container: Any) -> None:
    """The container's metadata and chapters, as the source has them."""
    out.metadata.update(container.metadata)
    chapters = container.chapters()
    if chapters:
        out.set_chapters(chapters)


def _window(container: Any, items: Iterator[tuple], segment: Segment) -> Iterator[tuple]:
    """The decode stage for one segment: the container sought to the keyframe at the
    segment's start, and of the frames decoded from there only the segment's (those before
    its start, a preroll, dropped; decoding stops at the first frame at or after its end:
    frames come out in presentation order)."""
    video = container.streams.video[0]
    if segment.start is not None:
        container.seek(segment.start, stream=video, backward=True, any_frame=False)
    first = None  # the first decoded frame (its side data), carried past the preroll
    try:
        for item in items:
            if item[0] != "frame":
                continue
            pts = item[4]
            if segment.start is not None and pts < segment.start:
                first = first if first is not None else item[6]
                continue
            if segment.end is not None and pts >= segment.end:
                return
            if first is not None:
                item, first = (*item[:6], item[6] if item[6] is not None else first), None
            yield item
    finally:
        items.close()  # type: ignore[attr-defined]


#: Codecs whose every packet is one frame shown, in the containers below (an MP4 sample, a
#: Matroska block: a whole frame, both fields of an interlaced one). Not VP8 (its alt-ref
#: frames are packets never shown) nor MPEG-4 part 2 (packed B-frames: two in one packet).
ONE_FRAME_PER_PACKET = (
    "h264", "hevc", "av1", "vp9", "ffv1", "prores", "mjpeg", "mpeg2video", "dnxhd", "rawvideo",
)  # fmt: skip


def _frames_are_packets(container: Any, stream: Any) -> bool:
    formats = set(container.format.name.split(","))
    return stream.codec_context.name in ONE_FRAME_PER_PACKET and bool(
        formats & set(SEEKABLE_FORMATS)
    )


#: Input formats (FFmpeg's demuxer names) whose index seeks exactly to a keyframe, so that a
#: segment can start there: MP4/MOV and Matroska/WebM. Others (MPEG-TS, AVI, ...) seek by
#: guessing at byte offsets, and go in one pass.
SEEKABLE_FORMATS = ("mov", "matroska")


def _plan(av: Any, container: Any, videos: list[Any], seconds: float | None) -> list[Segment]:
    """The segments the input is made in: one for several video streams (each would need cuts
    of its own), for ``seconds`` None or 0, for a format that cannot seek to a keyframe, and
    where no keyframe can be cut at."""
    formats = container.format.name.split(",")
    if not seconds or len(videos) != 1 or not set(formats) & set(SEEKABLE_FORMATS):
        return [Segment(0, None, None)]
    stream = videos[0]
    keys = keyframe_times(av, Path(container.name), stream.index)
    if not keys or not stream.time_base:
        return [Segment(0, None, None)]
    return plan_segments(keys, stream.time_base, seconds)


@dataclass
class SegmentedRun:
    """A video planned for segments (:func:`plan_segmented`): checked, cut, its weights chosen
    and its work folder taken up. Any process makes the segments left (:meth:`todo`, each with
    :func:`encode_segment` and this run's ``job`` and ``choices``); this one records each as
    it is finished (:meth:`finish`) and joins them when all are (:meth:`join`). The local run
    makes them one after another, ``--ray`` on a cluster's workers."""

    summary: VideoSummary
    job: _Job
    plan: list[Segment]
    choices: dict[int, WeightsChoice]
    work: WorkFolder
    overwrite: bool = False
    declared_frames: int | None = None  # the header's frame count (a progress bar's total)
    started: float = field(default_factory=time.perf_counter)

    def todo(self) -> list[Segment]:
        """The segments no run of this job has finished yet, in order."""
        return [s for s in self.plan if s.index not in self.work.done]

    def segment_path(self, segment: Segment) -> Path:
        return self.work.segment_path(segment)

    def finish(self, segment: Segment, stats: dict[str, Any]) -> None:
        """Record a segment whose file :func:`encode_segment` completed (and returned
        ``stats`` for)."""
        self.work.finish(segment, stats)

    def join(self) -> VideoSummary:
        """The segments remuxed into the output (atomic), the whole-file checks made, the
        work folder removed. A join or an output that fails (a full disk) keeps the folder:
        the segments are the hours of work, and a rerun joins them. Returns the summary, its
        time counted from the planning."""
        av = _av()
        summary = self.summary
        stats = [self.work.done[s.index] for s in self.plan]
        summary.frames = sum(s["frames"] for s in stats)
        # A segment in which nothing decoded (a damaged stretch) has no file to join.
        made = zip(self.plan, stats, strict=True)
        files = [self.work.segment_path(s) for s, n in made if n["frames"]]
        if not files:
            self.work.remove()
            raise ImageError(f"{summary.source}: no video frame could be decoded")
        with _open_input(av, summary.source) as container:
            with atomic_output(summary.target, self.overwrite, keep_suffix=True) as tmp:
                _join(av, container, files, tmp, self.job, summary, self.work.path)
            _whole_file_checks(container.streams.video[0], stats, summary)
        self.work.remove()
        summary.seconds = time.perf_counter() - self.started
        return summary

    def discard(self, error: BaseException) -> bool:
        """After ``error``: the work folder removed where the input is at fault (a rerun
        would meet it again), kept where the output is (a full disk, a folder not writable:
        a rerun, the problem fixed, resumes). Returns whether it was removed."""
        if not isinstance(error, ImageError):
            return False
        self.work.remove()
        return True


def plan_segmented(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscaler: Upscaler,
    *,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    overwrite: bool = False,
    segment_seconds: float | None = DEFAULT_SEGMENT_SECONDS,
    on_weights: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> SegmentedRun | None:
    """The planning half of :func:`upscale_video` (its checks, errors and lines; the options
    are its own): for a video made in segments, its :class:`SegmentedRun`; None for one
    that goes in one pass (several video streams, a format that cannot seek to a keyframe,
    ``segment_seconds`` 0, too short to cut)."""
    settings = _Settings(codec, crf, preset, overwrite)
    return _plan_segmented(
        Path(src), Path(dst), upscaler, settings, segment_seconds, on_weights, on_note
    )


def _plan_segmented(
    src: Path,
    dst: Path,
    upscaler: Upscaler,
    settings: _Settings,
    segment_seconds: float | None,
    on_weights: Callable[[str], None] | None,
    on_note: Callable[[str], None] | None,
) -> SegmentedRun | None:
    av = _av()
    started = time.perf_counter()
    _check_output(src, dst, settings.overwrite)
    with _open_input(av, src) as container:
        job, plan = _check_and_plan(av, container, src, dst, settings, segment_seconds)
        if len(plan) == 1:
            return None
        videos = {s.index: _VideoOut(s, None, 0) for s in container.streams.video}
        declared = container.streams.video[0].frames or None
    work = WorkFolder(dst)
    if settings.overwrite:
        work.remove()
    summary = VideoSummary(src, dst)
    _choose_weights(src, videos, upscaler, summary, on_weights)
    choices = {index: video.choice for index, video in videos.items()}
    note = work.open(_job_identity(src, upscaler, job, choices), plan)
    if note is not None and on_note is not None:
        on_note(f"{dst}: {note}")
    summary.resumed_frames = sum(stats["frames"] for stats in work.done.values())
    return SegmentedRun(summary, job, plan, choices, work, settings.overwrite, declared, started)


def _make_segments(run: SegmentedRun, upscaler: Upscaler, progress: bool | None) -> None:
    """The local run: the segments left made one after another in this process."""
    summary = run.summary
    bar = frame_bar(progress, run.declared_frames, summary.source)
    if bar is not None:
        bar.update(summary.resumed_frames)
    try:
        for segment in run.todo():
            path = run.segment_path(segment)
            stats = encode_segment(
                summary.source, segment, path, upscaler, run.job, run.choices, summary, bar
            )
            run.finish(segment, stats)
    except SrcnnError as exc:
        run.discard(exc)
        raise
    finally:
        if bar is not None:
            bar.close()


def encode_segment(
    src: Path,
    segment: Segment,
    path: Path,
    upscaler: Upscaler,
    job: _Job,
    choices: dict[int, WeightsChoice],
    summary: VideoSummary | None = None,
    bar: Any = None,
) -> dict[str, Any]:
    """One segment of ``src``'s video stream decoded, upscaled and encoded into the file
    ``path`` (written under a temporary name, renamed when complete): a function of the
    source, the plan entry and the job's settings alone. Returns what the resume record keeps
    of it: frames, frames lost, frames concealed, where its last frame and packet end
    (seconds)."""
    av = _av()
    own = VideoSummary(src, path)
    if summary is not None:
        own.times = summary.times  # the stages' times add up over the segments
    with _open_input(av, src) as container, atomic_output(path, True, keep_suffix=True) as tmp:
        (video,) = _transcode(
            av, container, tmp, path, upscaler, own, job, bar or False, None, segment, choices
        ).values()
        if not own.frames:
            tmp.write_bytes(b"")  # a damaged stretch: nothing to join, its frames counted lost
    if summary is not None:
        summary.notes.extend(own.notes)
        summary.add_cpu(own.cpu)
    return {
        "frames": own.frames,
        "lost": own.lost_frames,
        "damaged": own.damaged_frames,
        "end": video.end,
        "packet_end": video.packet_end,
    }


def _join(
    av: Any,
    container: Any,
    files: list[Path],
    tmp: Path,
    job: _Job,
    summary: VideoSummary,
    work: Path,
) -> None:
    """The segment files remuxed (not re-encoded) into ``tmp``, with the source's other
    streams, metadata and chapters copied as a single pass copies them."""
    out = _open_output(av, tmp, summary.target, job.muxer)
    try:
        copied: dict[int, Any] = {}
        target = None
        for stream in container.streams:
            if stream.type == "video":
                with av.open(str(files[0])) as first:
                    template = first.streams.video[0]
                    target = out.add_stream_from_template(template)
                    target.time_base = template.time_base
                target.metadata.update(stream.metadata)
            else:
                _copy_stream(av, out, stream, copied, summary)
        _copy_container_data(out, container)
        # demux([]) would read every stream: a video alone has no others to read.
        demuxed = container.demux([container.streams[i] for i in copied]) if copied else ()
        others = (_retarget(packet, copied) for packet in demuxed if packet.size)
        try:
            for packet in joined_packets(av, files, target, others):
                out.mux(packet)
        except av.error.FFmpegError as exc:
            # E.g. decode times that do not follow on from one segment to the next (a
            # variable frame rate with B-frames): one pass does not join anything.
            raise OutputError(
                f"{summary.source}: the segments cannot be joined ({_reason(exc)}); they are "
                f"kept in {work}: try --segment 0 (one pass), or --overwrite to discard them"
            ) from None
    except BaseException:
        out.close()
        raise
    out.close()


def _retarget(packet: Any, copied: dict[int, Any]) -> Any:
    packet.stream = copied[packet.stream.index]
    return packet


def _whole_file_checks(stream: Any, stats: list[dict[str, Any]], summary: VideoSummary) -> None:
    """What a single pass checks at its end, from the segments' records: frames lost, and a
    stream that ended before its declared end."""
    video = _VideoOut(stream, None, stream.frames or 0)
    video.errors = sum(s["lost"] for s in stats)
    summary.damaged_frames += sum(s.get("damaged", 0) for s in stats)
    video.decoded = summary.frames
    ends = [s["end"] for s in stats if s["end"] is not None]
    packet_ends = [s["packet_end"] for s in stats if s["packet_end"] is not None]
    video.end = max(ends) if ends else None
    video.packet_end = max(packet_ends) if packet_ends else None
    summary.lost_frames += max(video.errors, video.frames_expected - video.decoded)
    _check_end(stream.index, video, summary)


def _job_identity(
    src: Path, upscaler: Upscaler, job: _Job, choices: dict[int, WeightsChoice]
) -> dict[str, Any]:
    """What a segment depends on, for the resume record: the input, the weights each stream
    runs (the SHA-256 of their file, or of their arrays where made in memory), scale, backend
    and precision, the encoder and its options."""
    weights = {}
    for index, choice in choices.items():
        digest = upscaler.weights_sha256(choice)
        weights[str(index)] = f"{choice.weights}:{digest}"
    return {
        "input": {"path": str(src.resolve()), **input_identity(src)},
        "scale": upscaler.scale,
        "weights": weights,
        "backend": upscaler.backend_name,
        "precision": upscaler.precision,
        "codec": [job.codec, job.crf, job.preset, job.muxer],
    }


def _encode(av: Any, video: _VideoOut, frame: Any, src: Path) -> list[Any]:
    try:
        return video.stream.encode(frame)
    except av.error.FFmpegError as exc:
        ctx = video.stream.codec_context
        raise ImageError(
            f"{src}: the {ctx.name} encoder refuses {ctx.width}x{ctx.height} "
            f"{ctx.pix_fmt} frames ({_reason(exc)}; try another --codec, e.g. ffv1)"
        ) from None


def _demux(
    av: Any, container: Any, videos: dict[int, _VideoOut], copied: dict[int, Any]
) -> Iterator[tuple]:
    """The decode stage: ("frame", index, planes, ...) and ("packet", packet, index) items in
    the input's order. Undecodable packets are counted, not raised: what decodes goes on, and
    a container that breaks off (truncated) ends the stream there."""
    errors = _decode_error_types(av)
    packets = container.demux()
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except errors:
            for video in videos.values():
                video.errors += 1
            break
        if not packet.size:  # the demuxer's end-of-stream marker: flushed below
            continue
        index = packet.stream.index
        if (index in copied or index in videos) and _encrypted(packet):
            raise ImageError(
                f"{container.name}: {packet.stream.type} stream #{index} is encrypted (CENC "
                f"DRM); it cannot be decoded without its key, which this tool does not take"
            )
        if index in copied:
            yield ("packet", packet, index)
        elif index in videos:
            video = videos[index]
            if video.counts(packet.pts) and not packet.is_discard:
                video.packets += 1
            if packet.pts is not None and packet.time_base:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                video.packet_end = max(video.packet_end or end, end)
            yield from _decode(video, packet, errors)
    for video in videos.values():
        yield from _decode(video, None, errors)


def _choose_weights(
    src: Path,
    videos: dict[int, _VideoOut],
    upscaler: Upscaler,
    summary: VideoSummary,
    on_weights: Callable[[str], None] | None,
) -> None:
    """Each video stream's weights (:meth:`Upscaler.weights_for_video`), from the mean QP of
    its first frames where the choice depends on it (read by a decoder of its own, before
    the pipeline starts), and a line for each in ``summary.weights``, handed to
    ``on_weights`` at once."""
    codecs = {index: video.source.codec_context.name for index, video in videos.items()}
    measured = [index for index, codec in codecs.items() if _qp_matters(upscaler, codec)]
    qps = first_frames_mean_qp(src, measured)
    for index, video in videos.items():
        video.choice = upscaler.weights_for_video(codecs[index], qps.get(index))
        summary.weights.append(f"video stream #{index}: {video.choice}")
        if on_weights is not None:
            on_weights(summary.weights[-1])
        upscaler.backend_for(video.choice)  # built now, not in the first frame's upscale


def _qp_matters(upscaler: Upscaler, codec: str) -> bool:
    """Whether the rule can give a stream of ``codec`` either weights, depending on its QP."""
    finest, coarsest = (upscaler.weights_for_video(codec, qp) for qp in (0.0, math.inf))
    return finest.weights != coarsest.weights


def _decode(video: _VideoOut, packet: Any, errors: tuple) -> Iterator[tuple]:
    try:
        frames = video.source.decode(packet)
    except errors:
        video.errors += video.counts(packet.pts)
        return
    for frame in frames:
        first = None
        if video.layout is None:
            video.layout = _layout(frame)
            first = frame
        video.decoded += 1
        # A damaged packet either fails (an error, counted above) or is concealed: the frame
        # comes out patched from its neighbours, flagged. Which one depends on the damaged
        # bytes (issue 29's test clip, whose x264 bytes vary by run, came out either way: 4
        # of 10 runs passed silently); a fixed file decodes the same with frame or slice
        # threads (60 and 30 runs). Counting both makes every run report it.
        if frame.is_corrupt and video.counts(frame.pts):
            video.damaged += 1
        # Frames drained from the decoder at the end carry no time base; a frame without a
        # timestamp (some AVI files) follows the one before at the stream's frame rate.
        time_base = frame.time_base or video.source.time_base
        pts = frame.pts
        if pts is None:
            step = 1 / (time_base * (video.source.average_rate or 25))
            pts = 0 if video.last_pts is None else video.last_pts + max(1, round(step))
        video.last_pts = pts
        duration = float((frame.duration or 0) * time_base) or 1 / float(
            video.source.average_rate or 25
        )
        video.end = max(video.end or 0.0, float(pts * time_base) + duration)
        yield (
            "frame",
            video.source.index,
            _read_planes(frame, video.layout),
            video.layout,
            pts,
            time_base,
            first,
        )


def _upscale_item(upscaler: Upscaler, item: tuple, videos: dict[int, _VideoOut]) -> tuple:
    """The upscale stage: frames through the network, written straight into the planes of
    the frame the encoder takes; packets passed on untouched. Every stage keeps its library's
    thread count (all cores): on a quiet 2-core machine that ran the pipeline at 1.13x the
    serial loop, where giving the network and x264 one core each ran it at 0.84x
    (docs/video.md, "Speed")."""
    if item[0] == "packet":
        return item
    _, index, planes, layout, pts, time_base, first = item
    height, width = planes[0].shape
    frame, out = _output_frame(layout, width * upscaler.scale, height * upscaler.scale)
    choice = videos[index].choice  # set by _choose_weights before the pipeline started
    upscale_frame(upscaler, planes, layout.bits, layout.full_range, choice, out)
    return ("frame", index, frame, layout, pts, time_base, first)


def upscale_frame(
    upscaler: Upscaler,
    planes: list[np.ndarray],
    bits: int,
    full_range: bool,
    choice: WeightsChoice | None,
    out: list[np.ndarray],
) -> None:
    """One frame's planes upscaled into ``out`` with its stream's weights ``choice``: the step
    every video route shares (files here, YUV4MPEG2 pipes in :mod:`srcnn_fast.y4m`), so a
    frame comes out the same whichever way it came in."""
    hint = None if choice is None or choice.weights == "given" else choice.weights
    upscaler.upscale_planes(planes, bits, full_range, out=out, degradation=hint)
