"""Videos in and out as streams: decode frames one at a time (PyAV/FFmpeg, or a folder of
images) and encode H.264 on a worker thread, so that browsers play the result.

Frames are handed out as they are displayed: a phone video's display matrix (or its old
`rotate` tag) and a JPEG's EXIF orientation are applied on decode, so prompts are in the
coordinates the user sees and the output video plays upright with no rotation of its own.
Each frame's timestamp is kept: a variable-frame-rate input gives an output with the same
timing, not one flattened to its average rate."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sam2long.engine.errors import SAM2LongError
from sam2long.runtime.background import BackgroundWorker
from sam2long.runtime.image_io import frame_path, list_frames, read_frame_rgb
from sam2long.runtime.output_paths import partial_path

DEFAULT_FOLDER_FPS = 24.0
MAX_FPS = 1000.0


class VideoError(SAM2LongError, RuntimeError):
    """A video that cannot be read or written; the message names the file (and frame)."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    height: int  # as displayed (after the video's rotation)
    width: int
    fps: Fraction


@dataclass(frozen=True)
class Orientation:
    """How a decoded picture becomes the displayed one: a transpose, then flips."""

    transpose: bool = False
    flip_rows: bool = False  # upside down
    flip_cols: bool = False  # mirrored left-right

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self.transpose:
            rgb = rgb.transpose(1, 0, 2)
        if self.flip_rows:
            rgb = rgb[::-1]
        if self.flip_cols:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)

    def displayed_hw(self, height: int, width: int) -> tuple[int, int]:
        return (width, height) if self.transpose else (height, width)


UPRIGHT = Orientation()


def orientation_from_matrix(matrix) -> Orientation:
    """FFmpeg's display matrix (9 ints, 16.16 fixed point, row-major [a b u; c d v; x y w])
    maps a decoded pixel (p, q) to the displayed (a*p + c*q, b*p + d*q) plus an offset.
    Phones only write quarter turns and mirrors, so its 2x2 part is a signed permutation;
    anything else (a shear, an odd angle) is beyond what a video player shows, and is
    taken as upright."""
    a, b, _, c, d = (int(v) for v in matrix[:5])
    if a == d == 0 and b and c:  # a quarter turn: x' follows y, y' follows x
        return Orientation(True, b < 0, c < 0)
    if b == c == 0 and a and d:
        return Orientation(False, d < 0, a < 0)
    return UPRIGHT


def orientation_from_rotate_tag(tag: str | None) -> Orientation:
    """The `rotate` metadata tag of older muxers: degrees clockwise."""
    try:
        degrees = int(float(tag)) % 360 if tag is not None else 0
    except ValueError:
        return UPRIGHT
    return {90: Orientation(True, False, True), 180: Orientation(False, True, True),
            270: Orientation(True, True, False)}.get(degrees, UPRIGHT)


def _frame_orientation(frame, stream) -> Orientation:
    import av

    for data in frame.side_data:
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return orientation_from_matrix(np.frombuffer(bytes(data), dtype="<i4"))
    return orientation_from_rotate_tag(stream.metadata.get("rotate"))


@dataclass(frozen=True)
class Timestamps:
    """Each frame's presentation time as an integer count of `time_base` seconds, the first
    frame at 0."""

    time_base: Fraction
    pts: tuple[int, ...]


def _av_reason(e: BaseException) -> str:
    """FFmpeg's words for a failure, without its errno number or the file name (the caller's
    message names the file once)."""
    return getattr(e, "strerror", None) or str(e)


def check_fps(fps: float) -> Fraction:
    """A frame rate a video can be written with, or a VideoError saying why not."""
    if not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise VideoError(f"frame rate {fps} is not usable: give a number in (0, {MAX_FPS:g}]")
    return Fraction(fps).limit_denominator(1001)


class VideoSource:
    """Frames of a video file (any container FFmpeg opens) or of a folder of images."""

    def __init__(self, path: str, folder_fps: float = DEFAULT_FOLDER_FPS):
        self.path = path
        if not os.path.exists(path):
            raise VideoError(f"video not found: {path}")
        self._orientation = UPRIGHT
        if os.path.isdir(path):
            self._names = list_frames(path)
            first = read_frame_rgb(frame_path(path, self._names[0]))
            self.info = VideoInfo(len(self._names), first.height, first.width, check_fps(folder_fps))
        else:
            self._names = None
            self.info = self._probe_file()

    @property
    def frame_names(self) -> list[str]:
        """One name per frame: the files' stems for a folder, else 00000, 00001, ..."""
        if self._names is not None:
            return list(self._names)
        return [f"{i:05d}" for i in range(self.info.num_frames)]

    def _probe_file(self) -> VideoInfo:
        import av

        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise VideoError(f"{self.path} has no video stream")
                stream = container.streams.video[0]
                fps = stream.average_rate or stream.guessed_rate or Fraction(30)
                count = stream.frames
                if not count:  # some containers do not store it: count packets instead
                    count = sum(1 for p in container.demux(stream) if p.size)
                ctx = stream.codec_context
                if not count or not ctx.width or not ctx.height:
                    raise VideoError(f"{self.path} has no decodable frames")
            # The display matrix comes with the decoded frames (FFmpeg attaches the stream's
            # to each one): decode the first from the start of a fresh demuxer.
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                first = next(container.decode(stream), None)
                if first is not None:
                    self._orientation = _frame_orientation(first, stream)
            height, width = self._orientation.displayed_hw(ctx.height, ctx.width)
            return VideoInfo(int(count), height, width, Fraction(fps))
        except VideoError:
            raise
        except Exception as e:  # av.error.* and friends
            raise VideoError(f"cannot read video {self.path}: {_av_reason(e)}") from e

    def timestamps(self) -> Timestamps | None:
        """Each frame's presentation time (from the packets, without decoding), or None when
        the constant rate says it all: a folder of frames, evenly spaced frames, or a file
        whose packets lack times or do not match its frames one to one."""
        if self._names is not None:
            return None
        import av

        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                pts = [p.pts for p in container.demux(stream) if p.size]
                time_base = stream.time_base
        except Exception as e:
            raise VideoError(f"cannot read video {self.path}: {_av_reason(e)}") from e
        if not time_base or any(t is None for t in pts):
            return None
        pts.sort()  # packets come in decoding order; frames leave the decoder in time order
        if len(pts) != self.info.num_frames or len(set(pts)) != len(pts):
            return None
        time_base = Fraction(time_base)
        pts = tuple(t - pts[0] for t in pts)
        # Evenly spaced frames are written at their rate exactly: a container's coarse clock
        # (WebM counts milliseconds) would otherwise turn 12 fps into 12.02.
        if all(abs(t * time_base - i / self.info.fps) <= time_base for i, t in enumerate(pts)):
            return None
        return Timestamps(time_base, pts)

    def _check_size(self, index: int, height: int, width: int, where: str):
        if (height, width) != (self.info.height, self.info.width):
            raise VideoError(
                f"{where}: frame {index} is {width}x{height}, the first frame is "
                f"{self.info.width}x{self.info.height}; every frame of a video must have one size")

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 [H, W, 3] frames, decoded one at a time; a frame that cannot be
        decoded or has another size is a VideoError naming the file and the frame."""
        if self._names is not None:
            for index, name in enumerate(self._names):
                path = frame_path(self.path, name)
                image = read_frame_rgb(path)
                self._check_size(index, image.height, image.width, path)
                yield np.asarray(image)
            return
        import av

        index = 0
        try:
            with av.open(self.path) as container:
                for frame in container.decode(video=0):
                    if index == self.info.num_frames:
                        raise VideoError(f"{self.path} holds more frames than the "
                                         f"{self.info.num_frames} its header declares; re-encode it")
                    rgb = self._orientation.apply(frame.to_ndarray(format="rgb24"))
                    self._check_size(index, rgb.shape[0], rgb.shape[1], self.path)
                    yield rgb
                    index += 1
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode video {self.path} at frame {index}: {_av_reason(e)}") from e
        if index != self.info.num_frames:
            raise VideoError(
                f"{self.path}: decoded {index} frames, but the file says it has "
                f"{self.info.num_frames} (is it truncated or damaged?)")


class H264Writer:
    """Encode RGB frames to an H.264 MP4 (yuv420p) on a worker thread.

    yuv420p needs even sides: an odd width or height is padded by one edge pixel.
    The file is written under a temporary name and renamed on `close()`, so a failed
    run leaves no half-written video behind. With `timestamps`, frame i is shown at
    timestamps.pts[i] (the input's timing, variable rates included); without, at i / fps.
    """

    def __init__(self, path: str, height: int, width: int, fps: Fraction, crf: int = 20,
                 timestamps: Timestamps | None = None):
        import av

        self.path = path
        self._tmp = partial_path(path, ".mp4")
        self._pad = (height % 2, width % 2)
        try:
            self._container = av.open(self._tmp, mode="w")
            self._stream = self._container.add_stream("libx264", rate=fps)
        except Exception as e:
            raise VideoError(f"cannot create video {path}: {e}") from e
        self._stream.width = width + self._pad[1]
        self._stream.height = height + self._pad[0]
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf)}
        self._timestamps = timestamps
        if timestamps is not None:
            self._stream.codec_context.time_base = timestamps.time_base
        self._written = 0
        self._worker = BackgroundWorker("h264-writer")

    def _encode(self, rgb: np.ndarray):
        import av

        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self._timestamps is not None:
            frame.pts = self._timestamps.pts[self._written]
            frame.time_base = self._timestamps.time_base
        self._written += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def write(self, rgb: np.ndarray):
        try:
            self._worker.submit(self._encode, np.ascontiguousarray(rgb))
        except Exception as e:
            raise VideoError(f"encoding {self.path} failed: {e}") from e

    def close(self, keep: bool = True):
        """Finish the file (keep=True) or throw it away. Throwing away never raises: the
        failure that made the caller discard the file is the one to report."""
        error = None
        try:
            self._worker.close()
        except Exception as e:
            error = e
        try:
            if error is None and keep:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        except Exception as e:
            error = e
        finally:
            try:
                self._container.close()
            except Exception as e:  # a container that never got a frame may not close cleanly
                error = error or e
        if error is not None or not keep:
            # The muxer creates the file at its first packet: it may not exist at all.
            if os.path.exists(self._tmp):
                os.remove(self._tmp)
            if error is not None and keep:
                raise VideoError(f"encoding {self.path} failed: {error}") from error
            return
        os.replace(self._tmp, self.path)
