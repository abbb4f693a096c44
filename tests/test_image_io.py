"""runtime/image_io.py: the DAVIS palette, frame folders, palette PNGs."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.image_io import (
    DAVIS_PALETTE,
    DatasetError,
    frame_path,
    list_frames,
    load_palette_png,
    read_frame_rgb,
    save_palette_png,
)
from tests.conftest import H, W, box, write_gray_png, write_jpeg, write_png


def test_davis_palette_is_standard():
    assert len(DAVIS_PALETTE) == 768
    assert DAVIS_PALETTE[:15] == bytes([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128])
    # checksum of the palette shipped with the SAM 2 / DAVIS evaluation scripts
    assert (
        hashlib.sha256(DAVIS_PALETTE).hexdigest()
        == "ec76f86cfddd0f4c0768796cda862d8f5099af416b298a406db7e84b55136fc9"
    )


def test_list_frames_numeric_order(tmp_path):
    video = tmp_path / "bear"
    for name in ["00010.jpg", "00009.jpg", "00100.JPG", "00001.jpeg", ".00002.jpg"]:
        write_jpeg(video / name)
    (video / "notes.txt").write_text("not a frame")
    write_png(video / "00000.png", box(0, 1, 0, 1))  # ignored: JPEGs present
    assert list_frames(str(video)) == ["00001", "00009", "00010", "00100"]
    assert frame_path(str(video), "00100") == str(video / "00100.JPG")
    assert frame_path(str(video), "00001") == str(video / "00001.jpeg")


def test_list_frames_prefix_and_png_only(tmp_path):
    video = tmp_path / "clip"
    for i in [12, 3, 100]:
        write_gray_png(video / f"frame_{i:05d}.png", box(0, 1, 0, 1))
    write_gray_png(video / "cover.png", box(0, 1, 0, 1))  # no digits: last
    assert list_frames(str(video)) == ["frame_00003", "frame_00012", "frame_00100", "cover"]
    assert frame_path(str(video), "frame_00012").endswith("frame_00012.png")


def test_list_frames_errors(tmp_path):
    empty = tmp_path / "empty_vid"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty_vid") as exc:
        list_frames(str(empty))
    assert str(empty) in str(exc.value)
    with pytest.raises(DatasetError, match="not found"):
        list_frames(str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="00007"):
        frame_path(str(empty), "00007")


def test_read_frame_rgb(tmp_path):
    img = read_frame_rgb(str(write_jpeg(tmp_path / "v" / "00000.jpg")))
    assert img.mode == "RGB" and img.size == (W, H)
    bad = tmp_path / "v" / "00001.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DatasetError) as exc:
        read_frame_rgb(str(bad))
    assert str(bad) in str(exc.value) and "'v'" in str(exc.value)
    assert exc.value.__cause__ is not None


def test_palette_png_roundtrip_and_unreadable(tmp_path):
    arr = box(1, 3, 2, 5, value=3)
    path = tmp_path / "m.png"
    save_palette_png(str(path), arr, DAVIS_PALETTE)
    loaded, palette = load_palette_png(str(path))
    assert loaded.dtype == np.uint8 and loaded.shape == (H, W)
    np.testing.assert_array_equal(loaded, arr)
    assert bytes(palette[:12]) == DAVIS_PALETTE[:12]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError) as exc:
        load_palette_png(str(broken), video="bear")
    assert str(broken) in str(exc.value) and "bear" in str(exc.value)
    assert exc.value.__cause__ is not None

    with pytest.raises(ValueError):
        save_palette_png(str(path), arr.astype(np.int32), DAVIS_PALETTE)


def test_rgb_mask_rejected(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (W, H)).save(path)
    with pytest.raises(DatasetError, match="RGB"):
        load_palette_png(str(path))


def test_dataset_error_is_picklable():
    err = DatasetError("bad", video="bear", path="/x/y.png")
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) and clone.video == "bear" and clone.path == "/x/y.png"


