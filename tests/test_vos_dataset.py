"""Tests for runtime.vos_dataset on tiny synthetic DAVIS / SA-V folders."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime import vos_dataset as vd
from runtime.vos_dataset import (
    DAVIS_PALETTE,
    DatasetError,
    OutputWriter,
    frame_path,
    is_video_complete,
    list_frames,
    list_videos,
    load_palette_png,
    load_prompts,
    read_frame_rgb,
    save_palette_png,
)

H, W = 4, 6


# ---------------------------------------------------------------- helpers


def write_png(path: Path, arr: np.ndarray, palette=DAVIS_PALETTE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(arr, dtype=np.uint8))
    if palette is not None:
        img.putpalette(palette)
    img.save(path)
    return path


def write_jpeg(path: Path, size=(W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="JPEG")
    return path


def box(y0, y1, x0, x1, value=1) -> np.ndarray:
    arr = np.zeros((H, W), dtype=np.uint8)
    arr[y0:y1, x0:x1] = value
    return arr


def read_png(path: Path):
    with Image.open(path) as img:
        return np.array(img), img.mode, img.getpalette()


# ---------------------------------------------------------------- palette


def test_davis_palette_is_standard():
    assert len(DAVIS_PALETTE) == 768
    assert DAVIS_PALETTE[:15] == bytes([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128])
    # checksum of the palette shipped with the SAM 2 / DAVIS evaluation scripts
    assert (
        hashlib.sha256(DAVIS_PALETTE).hexdigest()
        == "ec76f86cfddd0f4c0768796cda862d8f5099af416b298a406db7e84b55136fc9"
    )


# ---------------------------------------------------------------- videos and frames


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
        write_png(video / f"frame_{i:05d}.png", box(0, 1, 0, 1), palette=None)
    write_png(video / "cover.png", box(0, 1, 0, 1), palette=None)  # no digits: last
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


def test_list_videos(tmp_path):
    base = tmp_path / "JPEGImages"
    for name in ["b", "a", "c", ".hidden"]:
        (base / name).mkdir(parents=True)
    (base / "file.txt").write_text("x")
    assert list_videos(str(base)) == ["a", "b", "c"]

    lst = tmp_path / "val.txt"
    lst.write_text("# header\nc\n\n  a  \nc\n")
    assert list_videos(str(base), str(lst)) == ["c", "a"]

    lst.write_text("a\nmissing_video\n")
    with pytest.raises(DatasetError, match="missing_video") as exc:
        list_videos(str(base), str(lst))
    assert str(base / "missing_video") in str(exc.value)

    with pytest.raises(DatasetError, match="nope.txt"):
        list_videos(str(base), str(tmp_path / "nope.txt"))
    with pytest.raises(DatasetError, match="not found"):
        list_videos(str(tmp_path / "no_base"))


def test_read_frame_rgb(tmp_path):
    img = read_frame_rgb(str(write_jpeg(tmp_path / "v" / "00000.jpg")))
    assert img.mode == "RGB" and img.size == (W, H)
    bad = tmp_path / "v" / "00001.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DatasetError) as exc:
        read_frame_rgb(str(bad))
    assert str(bad) in str(exc.value) and "'v'" in str(exc.value)
    assert exc.value.__cause__ is not None


# ---------------------------------------------------------------- PNG I/O


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


# ---------------------------------------------------------------- prompts: DAVIS


FRAMES = ["00000", "00001", "00002"]


def test_davis_first_frame_prompts(tmp_path):
    ann = box(0, 2, 0, 2, value=1) + box(2, 4, 3, 5, value=2)
    ann[0, 5] = 255  # void label is ignored
    write_png(tmp_path / "ann" / "bear" / "00000.png", ann)
    write_png(tmp_path / "ann" / "bear" / "00001.png", box(0, 4, 0, 6, value=3))  # not read
    prompts, palette = load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, False)
    assert sorted(prompts) == [1, 2]
    assert prompts[1][0] == 0
    assert prompts[1][1].dtype == np.bool_ and prompts[1][1].shape == (H, W)
    np.testing.assert_array_equal(prompts[2][1], ann == 2)
    assert bytes(palette[:12]) == DAVIS_PALETTE[:12]


def test_missing_first_frame_mentions_flag(tmp_path):
    write_png(tmp_path / "ann" / "bear" / "00001.png", box(0, 1, 0, 1))
    with pytest.raises(DatasetError) as exc:
        load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, False)
    msg = str(exc.value)
    assert "--track_object_appearing_later_in_video" in msg
    assert "bear" in msg and "00000.png" in msg


def test_missing_mask_folder(tmp_path):
    (tmp_path / "ann").mkdir()
    with pytest.raises(DatasetError, match="bear"):
        load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, True)


def test_unreadable_prompt_png_names_file(tmp_path):
    bad = tmp_path / "ann" / "bear" / "00000.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as exc:
        load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, False)
    assert str(bad) in str(exc.value) and "bear" in str(exc.value)


def test_empty_masks_are_an_error(tmp_path):
    write_png(tmp_path / "ann" / "bear" / "00000.png", np.zeros((H, W)))
    with pytest.raises(DatasetError, match="no object to track") as exc:
        load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, False)
    assert "00000.png" in str(exc.value)

    # track_later: every frame empty (only void) is an error too
    write_png(tmp_path / "ann" / "bear" / "00001.png", np.full((H, W), 255))
    with pytest.raises(DatasetError, match="no object to track"):
        load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, True)


def test_davis_track_later_first_non_empty_frame(tmp_path):
    ann_dir = tmp_path / "ann" / "bear"
    # frame 0 has no file, frame 1 has object 2, frame 2 has objects 1 and 2
    write_png(ann_dir / "00001.png", box(0, 2, 0, 2, value=2))
    write_png(ann_dir / "00002.png", box(0, 2, 0, 2, value=2) + box(2, 4, 2, 4, value=1))
    prompts, _ = load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, True)
    assert {oid: start for oid, (start, _) in prompts.items()} == {1: 2, 2: 1}


# ---------------------------------------------------------------- prompts: SA-V


def test_sav_prompts_layout(tmp_path):
    vid = tmp_path / "ann" / "sav_001"
    write_png(vid / "000" / "00000.png", box(0, 2, 0, 2, value=1))
    write_png(vid / "003" / "00000.png", box(1, 3, 1, 3, value=255))  # any >0 value counts
    write_png(vid / "003" / "00001.png", box(0, 1, 0, 1, value=1))
    (vid / "not_an_object").mkdir()
    prompts, _ = load_prompts(str(tmp_path / "ann"), "sav_001", FRAMES, True, False)
    assert sorted(prompts) == [0, 3]
    np.testing.assert_array_equal(prompts[3][1], box(1, 3, 1, 3) > 0)


def test_sav_track_later_and_missing_first_frame(tmp_path):
    vid = tmp_path / "ann" / "sav_002"
    write_png(vid / "001" / "00000.png", np.zeros((H, W)))  # empty: skipped
    write_png(vid / "001" / "00002.png", box(0, 2, 0, 2))
    write_png(vid / "002" / "00001.png", box(2, 4, 2, 4))
    write_png(vid / "002" / "00002.png", box(2, 4, 3, 5))
    prompts, _ = load_prompts(str(tmp_path / "ann"), "sav_002", FRAMES, True, True)
    assert {oid: start for oid, (start, _) in prompts.items()} == {1: 2, 2: 1}

    with pytest.raises(DatasetError) as exc:
        load_prompts(str(tmp_path / "ann"), "sav_002", FRAMES, True, False)
    assert "--track_object_appearing_later_in_video" in str(exc.value)
    assert os.path.join("002", "00000.png") in str(exc.value)


# ---------------------------------------------------------------- outputs


def logits_from_masks(**kwargs):
    """Logits +5 inside a box, -5 outside."""
    return {int(k[1:]): np.where(v > 0, 5.0, -5.0).astype(np.float32) for k, v in kwargs.items()}


def test_davis_output_keeps_input_palette(tmp_path):
    custom = list(range(256)) * 3  # obviously not the DAVIS palette
    write_png(tmp_path / "ann" / "v" / "00000.png", box(0, 2, 0, 2, value=1), palette=custom)
    prompts, palette = load_prompts(str(tmp_path / "ann"), "v", FRAMES, False, False)
    writer = OutputWriter(str(tmp_path / "out"), "v", False, palette, H, W, sorted(prompts))
    writer.write("00000", {1: np.where(prompts[1][1], 3.0, -3.0)})
    writer.finish()  # PNGs are written by a worker thread
    arr, mode, out_palette = read_png(tmp_path / "out" / "v" / "00000.png")
    assert mode == "P"
    assert out_palette[: len(palette)] == palette
    np.testing.assert_array_equal(arr, box(0, 2, 0, 2, value=1))


def test_davis_default_palette(tmp_path):
    writer = OutputWriter(str(tmp_path), "v", False, None, H, W, [1])
    writer.write("00000", {1: np.ones((H, W))})
    writer.finish()  # PNGs are written by a worker thread
    _, _, out_palette = read_png(tmp_path / "v" / "00000.png")
    assert bytes(out_palette[:6]) == DAVIS_PALETTE[:6]


def test_non_overlap_packing(tmp_path):
    s1 = np.full((H, W), -5.0, np.float32)
    s2 = np.full((H, W), -5.0, np.float32)
    s1[0, 0], s2[0, 0] = 2.0, 5.0  # overlap: object 2 scores higher -> 2
    s1[0, 1], s2[0, 1] = 4.0, 4.0  # tie: first (smaller id) wins like torch.argmax
    s1[0, 2] = 1.0  # only object 1
    s2[0, 3] = 1.0  # only object 2
    s1[0, 4], s2[0, 4] = -1.0, -0.5  # winner below threshold -> background
    writer = OutputWriter(str(tmp_path), "v", False, None, H, W, [2, 1])
    writer.write("00000", {1: s1, 2: s2})
    writer.finish()  # PNGs are written by a worker thread
    arr, _, _ = read_png(tmp_path / "v" / "00000.png")
    assert arr[0, :6].tolist() == [2, 1, 1, 2, 0, 0]
    assert (arr[1:] == 0).all()

    # With a low threshold the clamped loser (-10) also passes: then the reference
    # packing order (descending ids, smallest id on top) decides.
    writer = OutputWriter(str(tmp_path), "w", False, None, H, W, [1, 2], score_thresh=-20.0)
    writer.write("00000", {1: s1, 2: s2})
    writer.finish()  # PNGs are written by a worker thread
    arr, _, _ = read_png(tmp_path / "w" / "00000.png")
    assert arr[0, 0] == 1


def test_non_overlap_matches_torch_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 8, size=(3, 5, 7)).astype(np.float32)
    scores[:, 0, 0] = 1.5  # exact tie
    t = torch.from_numpy(scores)[:, None]
    max_inds = torch.argmax(t, dim=0, keepdim=True)
    keep = max_inds == torch.arange(3)[:, None, None, None]
    expected = torch.where(keep, t, torch.clamp(t, max=-10.0))[:, 0].numpy()
    np.testing.assert_array_equal(vd._apply_non_overlap(scores), expected)


def test_absent_objects_and_validation(tmp_path):
    writer = OutputWriter(str(tmp_path), "v", False, None, H, W, [1, 2])
    writer.write("00000", {2: np.ones((1, H, W), np.float32)})  # object 1 absent
    writer.finish()  # PNGs are written by a worker thread
    arr, _, _ = read_png(tmp_path / "v" / "00000.png")
    assert (arr == 2).all()
    with pytest.raises(ValueError, match="unknown"):
        writer.write("00001", {7: np.ones((H, W))})
    with pytest.raises(ValueError, match="shape"):
        writer.write("00001", {1: np.ones((H + 1, W))})
    with pytest.raises(ValueError):
        OutputWriter(str(tmp_path), "x", False, None, H, W, [0])  # 0 is background in DAVIS


def test_sav_per_object_layout(tmp_path):
    writer = OutputWriter(str(tmp_path), "sav", True, None, H, W, [0, 12])
    # overlapping boxes: no non-overlap step for per-object files
    writer.write("00000", logits_from_masks(o0=box(0, 3, 0, 3), o12=box(1, 4, 1, 4)))
    writer.write("00001", logits_from_masks(o12=box(0, 1, 0, 1)))  # object 0 absent
    for oid, frame, expected in [
        (0, "00000", box(0, 3, 0, 3)),
        (12, "00000", box(1, 4, 1, 4)),
        (0, "00001", np.zeros((H, W))),
        (12, "00001", box(0, 1, 0, 1)),
    ]:
        writer.finish()  # PNGs are written by a worker thread
        arr, mode, palette = read_png(tmp_path / "sav" / f"{oid:03d}" / f"{frame}.png")
        assert mode == "P" and bytes(palette[:6]) == DAVIS_PALETTE[:6]
        np.testing.assert_array_equal(arr, expected)
    assert not (tmp_path / "sav" / "00000.png").exists()


def test_completion_marker_written_last_and_removed_on_restart(tmp_path, monkeypatch):
    replaced: list[str] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(vd.os, "replace", recording_replace)
    out = str(tmp_path / "out")
    writer = OutputWriter(out, "bear", False, None, H, W, [1, 3])
    assert not is_video_complete(out, "bear", 2)
    writer.write("00000", {1: np.ones((H, W))})
    writer.write("00001", {3: np.ones((H, W))})
    marker = writer.finish()
    assert replaced == ["00000.png", "00001.png", vd.COMPLETE_MARKER]
    assert json.loads(Path(marker).read_text()) == {
        "frames": 2,
        "obj_ids": [1, 3],
        "per_obj_png_file": False,
    }
    assert is_video_complete(out, "bear", 2)
    assert not is_video_complete(out, "bear", 3)  # frame count differs
    assert not is_video_complete(out, "other", 2)
    assert not [p for p in os.listdir(tmp_path / "out" / "bear") if p.endswith(".tmp")]

    # Restarting the video removes the stale marker before anything is written.
    OutputWriter(out, "bear", False, None, H, W, [1, 3])
    assert not os.path.exists(marker)
    assert not is_video_complete(out, "bear", 2)


def test_is_video_complete_tolerates_garbage_marker(tmp_path):
    (tmp_path / "bear").mkdir()
    (tmp_path / "bear" / vd.COMPLETE_MARKER).write_text("{not json")
    assert not is_video_complete(str(tmp_path), "bear", 1)


def test_png_errors_in_the_worker_surface_and_leave_no_marker(tmp_path):
    """PNGs are encoded on a worker thread: a failure there is raised by finish(), and the
    video is not marked complete."""
    import shutil

    writer = OutputWriter(str(tmp_path), "v", False, None, H, W, [1])
    shutil.rmtree(tmp_path / "v")  # the disk goes away under the writer
    writer.write("00000", {1: np.ones((H, W))})
    with pytest.raises(OSError):
        writer.finish()
    assert not is_video_complete(str(tmp_path), "v", 1)


@pytest.mark.parametrize("per_obj", [False, True])
def test_rerun_removes_temporaries_of_a_killed_writer(tmp_path, per_obj):
    # A worker killed mid-write (scancel, SIGKILL) leaves _atomic_write's hidden temporary;
    # the resumed video's folder must end up as an uninterrupted run's.
    folder = tmp_path / "v" / ("001" if per_obj else "")
    folder.mkdir(parents=True)
    stale = [folder / ".00003.png.18769.1ac31d17.tmp", folder / ".complete.77.00ff00ff.tmp"]
    for path in stale:
        path.write_bytes(b"")
    keep = folder / ".notes.tmp"  # not one of ours
    keep.write_bytes(b"x")
    writer = OutputWriter(str(tmp_path), "v", per_obj, None, H, W, [1])
    writer.write("00000", {1: np.ones((H, W))})
    writer.finish()
    assert not any(path.exists() for path in stale)
    assert keep.exists()
