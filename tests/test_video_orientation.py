"""Inputs as the user sees them (issue 21, items 9 and 10): a phone video's display matrix and
a JPEG's EXIF orientation are applied on decode (prompts in displayed coordinates, the output
upright), and a variable-frame-rate video keeps each frame's timestamp in the output.

The rotated videos are written with PyAV's `VideoStream.set_display_rotation` (it stores
FFmpeg's display matrix, as phones do); no ffmpeg binary is needed."""

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.image_io import read_frame_rgb
from sam2long.runtime.video_io import (
    Orientation,
    VideoSource,
    orientation_from_matrix,
    orientation_from_rotate_tag,
)
from sam2long.tools import video_inference


def _coded_frame(t: int, height: int = 240, width: int = 320) -> np.ndarray:
    """A picture whose orientation is unambiguous: a red block at the top-left, a green one
    at the top-right, a blue bar along the bottom, and a grey square that moves with t."""
    rgb = np.full((height, width, 3), 90, np.uint8)
    rgb[:48, :64] = (230, 30, 30)
    rgb[:48, -64:] = (30, 230, 30)
    rgb[-32:, :] = (30, 30, 230)
    rgb[100:140, 100 + 4 * t:140 + 4 * t] = 200
    return rgb


def _displayed(rgb: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """What a player shows: PyAV's `degrees` turn the picture counter-clockwise, then mirrors."""
    out = np.rot90(rgb, k=degrees // 90)
    if hflip:
        out = out[:, ::-1]
    if vflip:
        out = out[::-1]
    return out


def _write_video(path, frames, rate=12, rotation=None, times_ms=None):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        if rotation is not None:
            stream.set_display_rotation(*rotation)
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _decode(path):
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return ([f.to_ndarray(format="rgb24") for f in frames], [f.time for f in frames],
                [f.rotation for f in frames])


@pytest.mark.parametrize("degrees,hflip,vflip", [
    (-90, False, False), (90, False, False), (180, False, False), (0, True, False),
    (0, False, True), (90, True, False), (-90, True, False)])
def test_display_matrix_applied_on_decode(tmp_path, degrees, hflip, vflip):
    coded = [_coded_frame(t) for t in range(3)]
    path = _write_video(tmp_path / "phone.mp4", coded, rotation=(degrees, hflip, vflip))
    source = VideoSource(str(path))
    want = [_displayed(f, degrees, hflip, vflip) for f in coded]
    assert (source.info.height, source.info.width) == want[0].shape[:2]
    got = list(source.frames())
    assert len(got) == 3
    for frame, expected in zip(got, want):
        assert frame.shape == expected.shape and frame.flags.c_contiguous
        assert np.abs(frame.astype(int) - expected).mean() < 3  # H.264 noise only


def test_orientation_rules():
    one = 1 << 16
    # FFmpeg's matrix for a -90 degree (clockwise) turn, as phones write it.
    assert orientation_from_matrix([0, one, 0, -one, 0, 0, 0, 0, 1 << 30]) == Orientation(True, False, True)
    assert orientation_from_matrix([one, 0, 0, 0, one, 0, 0, 0, 1 << 30]) == Orientation()
    assert orientation_from_matrix([-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30]) == Orientation(False, True, True)
    assert orientation_from_matrix([one, one // 3, 0, 0, one, 0, 0, 0, 1 << 30]) == Orientation()  # shear
    # The old `rotate` tag counts clockwise degrees.
    rgb = _coded_frame(0)
    assert np.array_equal(orientation_from_rotate_tag("90").apply(rgb), np.rot90(rgb, -1))
    assert np.array_equal(orientation_from_rotate_tag("270").apply(rgb), np.rot90(rgb, 1))
    assert np.array_equal(orientation_from_rotate_tag("180").apply(rgb), np.rot90(rgb, 2))
    assert orientation_from_rotate_tag(None) == orientation_from_rotate_tag("junk") == Orientation()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --random_weights keeps its checkpoint under ./outputs
    return tmp_path


def test_phone_video_tracked_upright(in_tmp):
    """Coded 320x240 with display rotation -90: shown 240x320. A click at (200, 300) lies in
    the displayed frame (and outside the coded one); the output is 240x320 and plays upright
    without any rotation of its own."""
    coded = [_coded_frame(t) for t in range(4)]
    path = _write_video(in_tmp / "phone.mp4", coded, rotation=(-90, False, False))
    out = in_tmp / "out.mp4"
    rc = video_inference.main(["--video_path", str(path), "--points", "200", "300", "--frame", "2",
                               "--random_weights", "--num_pathway", "1", "--output_video", str(out)])
    assert rc == 0
    frames, _, rotations = _decode(out)
    assert len(frames) == 4 and frames[0].shape == (320, 240, 3)
    assert rotations == [0] * 4
    upright = _displayed(coded[0], -90, False, False)
    # Frame 0 precedes the prompt: no overlay, so it is the upright input (plus encoding noise).
    assert np.abs(frames[0].astype(int) - upright).mean() < 4


def _exif_jpeg(path, rgb, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, format="JPEG", quality=95, exif=exif)
    return path


def test_exif_orientation_of_frame_files(tmp_path):
    coded = _coded_frame(0, 120, 160)
    # EXIF 6: the camera held upright, the picture stored turned; shown turned 90 clockwise.
    image = read_frame_rgb(str(_exif_jpeg(tmp_path / "one.jpg", coded, 6)))
    assert image.size == (120, 160)
    assert np.abs(np.asarray(image).astype(int) - np.rot90(coded, -1)).mean() < 3
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(3):
        _exif_jpeg(folder / f"{t:05d}.jpg", _coded_frame(t, 120, 160), 8)  # 90 counter-clockwise
    source = VideoSource(str(folder))
    assert (source.info.height, source.info.width) == (160, 120)
    for t, frame in enumerate(source.frames()):
        assert np.abs(frame.astype(int) - np.rot90(_coded_frame(t, 120, 160), 1)).mean() < 3


def test_variable_frame_rate_keeps_each_timestamp(in_tmp):
    times_ms = [0, 40, 80, 200, 240, 600, 640, 700]
    frames = [_coded_frame(t) for t in range(len(times_ms))]
    path = _write_video(in_tmp / "vfr.mp4", frames, rate=25, times_ms=times_ms)
    _, input_times, _ = _decode(path)
    assert input_times == pytest.approx([t / 1000 for t in times_ms], abs=1e-6)  # the input is VFR
    out = in_tmp / "out.mp4"
    assert video_inference.main(["--video_path", str(path), "--points", "120", "120",
                                 "--random_weights", "--num_pathway", "1",
                                 "--output_video", str(out)]) == 0
    decoded, output_times, _ = _decode(out)
    assert len(decoded) == len(times_ms)
    assert output_times == pytest.approx([t / 1000 for t in times_ms], abs=1e-3)
