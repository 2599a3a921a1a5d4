"""How coarsely a video stream was quantised, read from its own bitstream: the video side of
:mod:`srcnn_fast.jpeg`, measured for the choice between the clean and the JPEG-aware weights
(whose thresholds are in :mod:`srcnn_fast.weights_choice`).

FFmpeg's H.264 and VP9 decoders export each frame's quantiser when asked (``export_side_data``
= ``venc_params``): an AVVideoEncParams record, the picture's quantiser (H.264: QP, 0..51 at 8
bits; VP9: the q-index, 0..255) and each block's offset from it. Its mean over a stream's
first frames says how much the encoder threw away, whatever encoder, CRF or bitrate made it.
Other decoders export nothing (HEVC, AV1) or a scale not measured (MPEG-2); their streams
keep the clean weights.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Frames of a stream read to choose its weights: about half a second, so the mean spans I, P
#: and B frames, whose QPs differ by several steps.
LOOKAHEAD_FRAMES = 12
#: Packets read per frame wanted before a stream's read gives up (decoder delay, B frames,
#: packets that fail to decode).
PACKETS_PER_FRAME = 4
#: FFmpeg's AVVideoEncParams (libavutil/video_enc_params.h) on a 64-bit build: nb_blocks
#: (unsigned), blocks_offset and block_size (size_t), type (enum), qp (int32); each block is
#: AVVideoBlockParams, src_x, src_y, w, h, delta_qp (int32).
_HEADER = struct.Struct("<I4xQQii")
_DELTA_QP_FIELD = 4
_TYPE_VP9, _TYPE_H264 = 0, 1  # AV_VIDEO_ENC_PARAMS_VP9, AV_VIDEO_ENC_PARAMS_H264


def side_data(frame: Any, name: str) -> list[Any]:
    """A PyAV frame's side-data entries of one type (``"DISPLAYMATRIX"``, ``"VIDEO_ENC_PARAMS"``).
    Iterating ``frame.side_data`` gives the entries up to PyAV 18.1.0 (whose ``values()`` fails)
    and the types from 18.1.1 (a mapping from type to entry), so an item without a ``type`` is
    a key, looked up."""
    container = getattr(frame, "side_data", ())
    entries = (item if hasattr(item, "type") else container[item] for item in container)
    return [side for side in entries if getattr(side.type, "name", "") == name]


def frame_qp(frame: Any) -> float | None:
    """The mean quantiser of a decoded frame's blocks (a PyAV frame decoded with
    ``export_side_data=venc_params``): H.264's QP on the 8-bit scale, or VP9's q-index; None
    for a frame without H.264 or VP9 encoding parameters. For b-bit H.264 FFmpeg exports QP'_Y,
    which carries an offset of 6 (b - 8) (10-bit CRF 18 read 38 against 26.7 at 8 bits); the
    thresholds were measured on 8-bit video, so the offset is taken off. VP9's q-index means
    the same at every depth."""
    for side in side_data(frame, "VIDEO_ENC_PARAMS"):
        data = bytes(side)
        if len(data) < _HEADER.size:
            return None
        blocks, offset, size, kind, qp = _HEADER.unpack_from(data)
        if kind not in (_TYPE_H264, _TYPE_VP9):
            return None
        offset_8bit = 6 * (max(_sample_bits(frame), 8) - 8) if kind == _TYPE_H264 else 0
        if blocks == 0 or size < 4 * (_DELTA_QP_FIELD + 1) or offset + blocks * size > len(data):
            return float(qp - offset_8bit)
        table = np.frombuffer(data, np.uint8, blocks * size, offset).reshape(blocks, size)
        deltas = table[:, 4 * _DELTA_QP_FIELD : 4 * _DELTA_QP_FIELD + 4].copy().view("<i4")
        return float(qp + deltas.mean() - offset_8bit)
    return None


def _sample_bits(frame: Any) -> int:
    """Bits per luma sample of a PyAV frame (8 when it does not say)."""
    try:
        return int(frame.format.components[0].bits)
    except (AttributeError, IndexError, TypeError):
        return 8


class QuantiserTally:
    """The mean QP of the frames a stream has decoded so far (those that carried one)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.frames = 0

    def add(self, frame: Any) -> None:
        qp = frame_qp(frame)
        if qp is not None:
            self.total += qp
            self.frames += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.frames if self.frames else None


def first_frames_mean_qp(
    path: str | os.PathLike[str], indices: Sequence[int], frames: int = LOOKAHEAD_FRAMES
) -> dict[int, float | None]:
    """The mean macroblock QP of the first ``frames`` frames of each video stream in
    ``indices`` of the file at ``path`` (None: no QP read), by a decoder of its own with slice
    threads only. With frame threads FFmpeg can export a frame's QP table before the thread
    decoding it has filled it (measured: 5 of 40 runs of a 4-frame clip read a frame's mean QP
    as 0-6 instead of 35), so the pipeline's own frame-threaded decoder cannot be used.

    A packet that fails to decode is skipped, as the pipeline skips it. A stream is done at
    ``frames`` frames, at its end, or after ``PACKETS_PER_FRAME * frames`` packets, so a
    short stream beside a long one, or one that never decodes, does not make this read the
    whole file. A file that cannot be read gives None for every stream."""
    import av

    wanted = list(dict.fromkeys(indices))
    if not wanted:
        return {}
    tallies = {index: QuantiserTally() for index in wanted}
    decoded, packets = dict.fromkeys(wanted, 0), dict.fromkeys(wanted, 0)
    errors = (av.error.FFmpegError, ValueError)
    limit = PACKETS_PER_FRAME * frames
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            streams = [s for s in container.streams.video if s.index in tallies]
            pending = {s.index for s in streams}
            for stream in streams:
                stream.thread_type = "SLICE"
                stream.codec_context.options = {"export_side_data": "venc_params"}
            for packet in container.demux(streams):
                index = packet.stream.index
                if index not in pending:
                    continue
                packets[index] += 1
                try:
                    for frame in packet.decode():
                        if decoded[index] < frames:
                            tallies[index].add(frame)
                            decoded[index] += 1
                except errors:
                    pass  # a frame lost, as in the pipeline; the others still count
                ended = not packet.size  # the demuxer's end-of-stream (the decoder flushed)
                if ended or decoded[index] >= frames or packets[index] >= limit:
                    pending.discard(index)
                if not pending:
                    break
    except (*errors, OSError):
        pass  # what was read stands; an unreadable file is refused by the pipeline itself
    return {index: tally.mean for index, tally in tallies.items()}
