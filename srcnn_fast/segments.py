"""Long videos in closed segments: the plan, the work folder with its resume record, the join.

A video is cut at input keyframes into segments of about ``seconds`` of output each
(:func:`plan_segments`). Each is decoded from its keyframe (frames before the segment's start
dropped), upscaled and encoded on its own, as a pure function of (source, plan entry, job
settings) -> segment file (:func:`srcnn_fast.video.encode_segment`), so that any process may
make any segment. The segment files live in a hidden work folder beside the output
(:class:`WorkFolder`: ``.clip_x2.mp4.srcnn-work/``), each written under a temporary name and
renamed when complete, then listed in the folder's record (``record.json``) with the job it
belongs to. A rerun of the same job keeps the segments listed and makes only the others; a
different job (input, weights, scale, precision, codec options) starts over. When all are
done, :func:`joined_packets` hands their packets, remuxed without re-encoding, to the writer of
the output, interleaved with the source's other streams.

Video code: above :mod:`srcnn_fast.infer`, below :mod:`srcnn_fast.video`; PyAV is passed in.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .jobs import WORK_FOLDER_SUFFIX

__all__ = [
    "DEFAULT_SEGMENT_SECONDS",
    "Segment",
    "WorkFolder",
    "input_identity",
    "joined_packets",
    "keyframe_times",
    "plan_segments",
]

#: Seconds of output per segment: short enough that an interruption loses little and that a
#: cluster has work to spread, long enough that each segment's start-up (opening the decoder
#: and the encoder, the encoder's first keyframe) is a small share of its time.
DEFAULT_SEGMENT_SECONDS = 10.0
#: Bytes of the input hashed to recognise it on a rerun (with its size and mtime): enough to
#: tell two encodes apart, cheap on any file.
IDENTITY_BYTES = 1 << 20
#: Bumped when the record or the segment files change meaning: an older work folder is then
#: started over rather than joined.
RECORD_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """One closed segment: frames with ``start <= pts < end`` (the video stream's time base;
    None: from the first frame, to the last)."""

    index: int
    start: int | None
    end: int | None


def plan_segments(keyframes: Iterable[int], time_base: Fraction, seconds: float) -> list[Segment]:
    """Segments cut at keyframes (their pts, in ``time_base``), each at least ``seconds`` long
    but the last; a stream without keyframes to cut at is one segment."""
    cuts: list[int] = []
    keys = sorted(set(keyframes))
    last = keys[0] if keys else None
    for key in keys[1:]:
        # Within a nanosecond: 0.2 (a float just above 1/5) still cuts 5 frames at 25 fps.
        if float((key - last) * time_base) >= seconds - 1e-9:
            cuts.append(key)
            last = key
    bounds: list[int | None] = [None, *cuts, None]
    return [Segment(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def keyframe_times(av: Any, path: Path, index: int) -> list[int] | None:
    """The pts of every keyframe packet of video stream ``index`` (demuxed, not decoded: a
    fraction of a second per hour of video); None where a keyframe has no pts (nothing to cut
    at safely). A file that breaks off (truncated) gives the keyframes before the break: the
    last segment then decodes what it can, as a single pass would."""
    keys: list[int] = []
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            for packet in container.demux(container.streams[index]):
                if packet.size and packet.is_keyframe:
                    if packet.pts is None:
                        return None
                    keys.append(packet.pts)
    except (av.error.FFmpegError, OSError):
        pass
    return keys


def input_identity(path: Path) -> dict[str, Any]:
    """What makes an input the same file on a rerun: size, mtime and the SHA-256 of its first
    MiB."""
    stat = path.stat()
    with path.open("rb") as handle:
        head = hashlib.sha256(handle.read(IDENTITY_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_first_mib": head}


class WorkFolder:
    """The hidden folder beside ``target`` that holds its finished segments and the record of
    the job that made them."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.with_name(f".{target.name}{WORK_FOLDER_SUFFIX}")
        self.record_path = self.path / "record.json"
        self.done: dict[int, dict[str, Any]] = {}
        self._job: dict[str, Any] = {}

    def open(self, job: dict[str, Any], plan: list[Segment]) -> str | None:
        """Take up the folder for ``job`` cut as ``plan``: the finished segments of the same
        job are kept, anything else is cleared. Returns the line to say about it ("resuming:
        3 of 7 segments done", or why an earlier run's segments were discarded), or None for
        a fresh start."""
        self._job = {"version": RECORD_VERSION, **job, "plan": [asdict(s) for s in plan]}
        message = None
        record = self._read_record()
        if record is not None:
            reason = _difference(record.get("job", {}), self._job)
            if reason is None:
                self.done = {
                    int(i): stats
                    for i, stats in record.get("done", {}).items()
                    if self._complete(int(i), stats)
                }
                message = f"resuming: {len(self.done)} of {len(plan)} segments done"
            else:
                message = f"starting over: {reason} since the unfinished run"
        elif self.path.exists():
            message = "starting over: the unfinished run left no readable record"
        self._clear_others()
        self.path.mkdir(exist_ok=True)
        self._write_record()
        return message

    def segment_path(self, segment: Segment) -> Path:
        return self.path / f"segment-{segment.index:05d}{self.target.suffix}"

    def finish(self, segment: Segment, stats: dict[str, Any]) -> None:
        """Record a segment whose file is complete (already renamed into place)."""
        size = self.segment_path(segment).stat().st_size
        self.done[segment.index] = {**stats, "bytes": size}
        self._write_record()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _read_record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _complete(self, index: int, stats: Any) -> bool:
        """A listed segment still whole: its file there, at the size recorded."""
        path = self.path / f"segment-{index:05d}{self.target.suffix}"
        try:
            return isinstance(stats, dict) and path.stat().st_size == stats.get("bytes")
        except OSError:
            return False

    def _clear_others(self) -> None:
        """Everything in the folder but the record and the segments kept: partial files of an
        interrupted run, segments of another job."""
        if not self.path.is_dir():
            return
        keep = {self.record_path.name}
        keep |= {f"segment-{i:05d}{self.target.suffix}" for i in self.done}
        for entry in self.path.iterdir():
            if entry.name not in keep:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _write_record(self) -> None:
        """Written under a temporary name and renamed: a kill leaves the old record or the new,
        never half of one."""
        record = {"job": self._job, "done": {str(i): s for i, s in sorted(self.done.items())}}
        tmp = self.record_path.with_name(f".record.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.record_path)


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why a recorded job is not this one, in words ("the input changed (size)"), or None."""
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "input" and isinstance(old.get(key), dict):
            changed = [k for k in new[key] if old[key].get(k) != new[key][k]]
            return f"the input changed ({', '.join(changed)})"
        return f"{key} changed"
    return None


def joined_packets(
    av: Any, segment_files: list[Path], target: Any, others: Iterator[Any]
) -> Iterator[Any]:
    """The packets of the output: every segment's video packets in turn, set to ``target`` (the
    output's video stream), merged by decode time with ``others`` (the source's other streams'
    packets, already set to their output streams), so the muxer interleaves as it goes."""

    def video() -> Iterator[Any]:
        times = iter(_decode_times(av, segment_files))
        for path in segment_files:
            with av.open(str(path)) as container:
                for packet in container.demux(container.streams.video[0]):
                    if packet.size:
                        packet.dts = next(times, packet.dts)
                        packet.stream = target
                        yield packet

    return (
        packet for _, _, packet in heapq.merge(_keyed(video(), 0), _keyed(others, 1), key=_order)
    )


def _decode_times(av: Any, segment_files: list[Path]) -> list[int | None]:
    """The decode time of every video packet of the joined segments, in decode order.

    Each segment's encoder set decode times of its own, and Matroska stores none: its
    demuxer derives them, except for a segment's first packets with B-frames, which come
    without (all of a segment's, where it has 3 frames or fewer). So they are set afresh over
    the whole stream, as an encoder sets them: the k-th decode time is the (k - d)-th smallest
    presentation time, d the reordering depth (the most any packet comes before frames that
    are shown ahead of it; 2 for x264's B-pyramid). That rises strictly, never passes a
    packet's own presentation time, and needs no frame rate (variable too); the first d
    count back from the first presentation time. A packet without a presentation time keeps
    what the demuxer gave (None here)."""
    shown: list[int | None] = []
    for path in segment_files:  # a first read of the packets' times: no data is decoded
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    shown.append(packet.pts)
    if not shown or any(pts is None for pts in shown):
        return []
    ordered = sorted(shown)  # type: ignore[type-var]
    rank = {pts: i for i, pts in enumerate(ordered)}
    depth = max(0, *(i - rank[pts] for i, pts in enumerate(shown)))
    step = ordered[1] - ordered[0] if len(ordered) > 1 else 1
    return [
        ordered[i - depth] if i >= depth else ordered[0] - (depth - i) * step
        for i in range(len(shown))
    ]


def _keyed(packets: Iterator[Any], rank: int) -> Iterator[tuple[float, int, Any]]:
    """(decode time in seconds, rank, packet); a packet without timestamps keeps the one
    before's time."""
    last = float("-inf")
    for packet in packets:
        stamp = packet.dts if packet.dts is not None else packet.pts
        if stamp is not None and packet.time_base:
            last = float(stamp * packet.time_base)
        yield (last, rank, packet)


def _order(item: tuple[float, int, Any]) -> tuple[float, int]:
    return item[0], item[1]
