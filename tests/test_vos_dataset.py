"""runtime/vos_dataset.py: video lists, prompts from DAVIS / SA-V masks, completion records."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sam2long.runtime.image_io import DAVIS_PALETTE, DatasetError
from sam2long.runtime.vos_dataset import (
    COMPLETE_MARKER,
    list_videos,
    load_prompts,
    video_status,
    write_completion,
)
from tests.conftest import H, W, box, write_png


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



# ---------------------------------------------------------------- prompts: DAVIS


FRAMES = ["00000", "00001", "00002"]


def test_davis_first_frame_prompts(tmp_path):
    ann = box(0, 2, 0, 2, value=1) + box(2, 4, 3, 5, value=2)
    ann[0, 5] = 255  # void label is ignored
    write_png(tmp_path / "ann" / "bear" / "00000.png", ann)
    write_png(tmp_path / "ann" / "bear" / "00001.png", box(0, 4, 0, 6, value=3))  # not read
    found = load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, False)
    prompts = found.objects
    assert sorted(prompts) == [1, 2]
    assert prompts[1][0] == 0
    assert prompts[1][1].dtype == np.bool_ and prompts[1][1].shape == (H, W)
    np.testing.assert_array_equal(prompts[2][1], ann == 2)
    assert bytes(found.palette[:12]) == DAVIS_PALETTE[:12]


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
    found = load_prompts(str(tmp_path / "ann"), "bear", FRAMES, False, True)
    prompts = found.objects
    assert {oid: start for oid, (start, _) in prompts.items()} == {1: 2, 2: 1}


# ---------------------------------------------------------------- prompts: SA-V


def test_sav_prompts_layout(tmp_path):
    vid = tmp_path / "ann" / "sav_001"
    write_png(vid / "000" / "00000.png", box(0, 2, 0, 2, value=1))
    write_png(vid / "003" / "00000.png", box(1, 3, 1, 3, value=255))  # any >0 value counts
    write_png(vid / "003" / "00001.png", box(0, 1, 0, 1, value=1))
    (vid / "not_an_object").mkdir()
    found = load_prompts(str(tmp_path / "ann"), "sav_001", FRAMES, True, False)
    prompts = found.objects
    assert sorted(prompts) == [0, 3]
    np.testing.assert_array_equal(prompts[3][1], box(1, 3, 1, 3) > 0)


def test_sav_track_later_and_missing_first_frame(tmp_path):
    vid = tmp_path / "ann" / "sav_002"
    write_png(vid / "001" / "00000.png", np.zeros((H, W)))  # empty: skipped
    write_png(vid / "001" / "00002.png", box(0, 2, 0, 2))
    write_png(vid / "002" / "00001.png", box(2, 4, 2, 4))
    write_png(vid / "002" / "00002.png", box(2, 4, 3, 5))
    found = load_prompts(str(tmp_path / "ann"), "sav_002", FRAMES, True, True)
    prompts = found.objects
    assert {oid: start for oid, (start, _) in prompts.items()} == {1: 2, 2: 1}

    with pytest.raises(DatasetError) as exc:
        load_prompts(str(tmp_path / "ann"), "sav_002", FRAMES, True, False)
    assert "--track_object_appearing_later_in_video" in str(exc.value)
    assert os.path.join("002", "00000.png") in str(exc.value)




def test_layout_mixups_name_the_right_flag(tmp_path):
    vid = tmp_path / "ann" / "sav_003"
    write_png(vid / "001" / "00000.png", box(0, 2, 0, 2))
    with pytest.raises(DatasetError, match="pass --per_obj_png_file") as exc:
        load_prompts(str(tmp_path / "ann"), "sav_003", FRAMES, False, False)
    assert "--track_object_appearing_later_in_video" not in str(exc.value)
    write_png(tmp_path / "ann" / "davis" / "00000.png", box(0, 2, 0, 2))
    with pytest.raises(DatasetError, match="without --per_obj_png_file"):
        load_prompts(str(tmp_path / "ann"), "davis", FRAMES, True, False)


@pytest.mark.parametrize("track_later", [False, True])
def test_sav_objects_without_a_prompt_are_reported(tmp_path, track_later):
    vid = tmp_path / "ann" / "sav_004"
    for frame in FRAMES:
        write_png(vid / "001" / f"{frame}.png", box(0, 2, 0, 2))
        write_png(vid / "002" / f"{frame}.png", np.zeros((H, W)))  # never present
    found = load_prompts(str(tmp_path / "ann"), "sav_004", FRAMES, True, track_later)
    assert sorted(found.objects) == [1] and found.empty_objects == [2]


# ---------------------------------------------------------------- completion records

SETTINGS = {"checkpoint_sha256": "abc", "num_pathway": 3, "backend": "torch"}


def _finished(tmp_path, frames=("a", "b")):
    video_dir = tmp_path / "out" / "v"
    for frame in frames:
        write_png(video_dir / f"{frame}.png", box(0, 1, 0, 1))
    write_completion(str(video_dir), SETTINGS, list(frames), [1], [f"{f}.png" for f in frames])
    return video_dir


def test_completion_record_says_who_made_it_and_what_it_wrote(tmp_path):
    out = str(tmp_path / "out")
    assert video_status(out, "v", ["a", "b"], SETTINGS).state == "todo"
    video_dir = _finished(tmp_path)
    record = json.loads((video_dir / COMPLETE_MARKER).read_text())
    assert record["produced_by"] == SETTINGS and record["obj_ids"] == [1]
    assert set(record["files"]) == {"a.png", "b.png"} and all(
        v["size"] > 0 and len(v["sha256"]) == 64 for v in record["files"].values())
    assert video_status(out, "v", ["a", "b"], SETTINGS).state == "complete"
    assert video_status(out, "v", ["a", "b", "c"], SETTINGS).state == "incomplete"  # frames changed


def test_a_deleted_or_changed_png_makes_the_video_incomplete(tmp_path):
    video_dir = _finished(tmp_path)
    (video_dir / "b.png").unlink()
    status = video_status(str(tmp_path / "out"), "v", ["a", "b"], SETTINGS)
    assert status.state == "incomplete" and "b.png" in status.reason
    _finished(tmp_path)
    (video_dir / "a.png").write_bytes(b"truncated")
    assert video_status(str(tmp_path / "out"), "v", ["a", "b"], SETTINGS).state == "incomplete"


def test_other_settings_and_old_records_are_not_complete(tmp_path):
    video_dir = _finished(tmp_path)
    status = video_status(str(tmp_path / "out"), "v", ["a", "b"], dict(SETTINGS, num_pathway=2))
    assert status.state == "other_settings" and "num_pathway: 3 -> 2" in status.reason
    status = video_status(str(tmp_path / "out"), "v", ["a", "b"], dict(SETTINGS, checkpoint_sha256="def"))
    assert status.state == "other_settings" and "checkpoint_sha256" in status.reason
    (video_dir / COMPLETE_MARKER).write_text(json.dumps({"frames": 2, "obj_ids": [1]}))  # version 1
    assert video_status(str(tmp_path / "out"), "v", ["a", "b"], SETTINGS).state == "other_settings"
    (video_dir / COMPLETE_MARKER).write_text("{not json")
    assert video_status(str(tmp_path / "out"), "v", ["a", "b"], SETTINGS).state == "incomplete"
