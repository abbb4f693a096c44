"""Videos in and out as streams: decode frames one at a time (PyAV/FFmpeg, or a folder of
images) and encode H.264 on a worker thread, so that browsers play the result."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from runtime.background import BackgroundWorker

DEFAULT_FOLDER_FPS = 24.0


class VideoError(RuntimeError):
    """A video that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    height: int
    width: int
    fps: Fraction


class VideoSource:
    """Frames of a video file (any container FFmpeg opens) or of a folder of images."""

    def __init__(self, path: str, folder_fps: float = DEFAULT_FOLDER_FPS):
        self.path = path
        if not os.path.exists(path):
            raise VideoError(f"video not found: {path}")
        if os.path.isdir(path):
            from runtime.vos_dataset import DatasetError, frame_path, list_frames, read_frame_rgb

            try:
                self._names = list_frames(path)
                first = read_frame_rgb(frame_path(path, self._names[0]))
            except DatasetError as e:
                raise VideoError(str(e)) from e
            self.info = VideoInfo(len(self._names), first.height, first.width,
                                  Fraction(folder_fps).limit_denominator(1001))
        else:
            self._names = None
            self.info = self._probe_file()

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
                return VideoInfo(int(count), ctx.height, ctx.width, Fraction(fps))
        except VideoError:
            raise
        except Exception as e:  # av.error.* and friends
            raise VideoError(f"cannot read video {self.path}: {e}") from e

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 [H, W, 3] frames, decoded one at a time."""
        if self._names is not None:
            from runtime.vos_dataset import frame_path, read_frame_rgb

            for name in self._names:
                image = read_frame_rgb(frame_path(self.path, name))
                if (image.height, image.width) != (self.info.height, self.info.width):
                    raise VideoError(
                        f"{frame_path(self.path, name)} is {image.width}x{image.height}, the "
                        f"first frame is {self.info.width}x{self.info.height}")
                yield np.asarray(image)
            return
        import av

        try:
            with av.open(self.path) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode video {self.path}: {e}") from e


class H264Writer:
    """Encode RGB frames to an H.264 MP4 (yuv420p) on a worker thread.

    yuv420p needs even sides: an odd width or height is padded by one edge pixel.
    The file is written under a temporary name and renamed on `close()`, so a failed
    run leaves no half-written video behind.
    """

    def __init__(self, path: str, height: int, width: int, fps: Fraction, crf: int = 20):
        import av

        self.path = path
        self._tmp = f"{path}.partial.mp4"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
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
        self._worker = BackgroundWorker("h264-writer")

    def _encode(self, rgb: np.ndarray):
        import av

        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def write(self, rgb: np.ndarray):
        try:
            self._worker.submit(self._encode, np.ascontiguousarray(rgb))
        except Exception as e:
            raise VideoError(f"encoding {self.path} failed: {e}") from e

    def close(self, keep: bool = True):
        """Finish the file (keep=True) or throw it away."""
        error = None
        try:
            self._worker.close()
        except Exception as e:
            error = e
        try:
            if error is None and keep:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        if error is not None or not keep:
            os.remove(self._tmp)
            if error is not None:
                raise VideoError(f"encoding {self.path} failed: {error}") from error
            return
        os.replace(self._tmp, self.path)
