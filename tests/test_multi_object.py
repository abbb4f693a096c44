"""Several objects in one pass through the video tool: the same masks as the dataset tool on
the same prompts, and as one run per object (objects never influence each other in
SAM2Long); per-object colours and tags in the overlay; clear errors for bad prompt groups."""

from __future__ import annotations

import contextlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.image_io import DAVIS_PALETTE
from tests.conftest import MICRO_CFG, ROOT
from sam2long.tools import video_inference, vos_inference

SHAPES = ROOT / "samples" / "shapes"
FRAMES = 8
THIRD_START = 3  # object 5 starts later


def _object_masks():
    labels = np.array(Image.open(SHAPES / "Annotations" / "shapes" / "00000.png"))
    third = np.zeros_like(labels, dtype=bool)
    third[20:70, 140:230] = True  # a patch of background, prompted on a later frame
    return {1: (0, labels == 1), 2: (0, labels == 2), 5: (THIRD_START, third)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The first frames of the sample clip, as a frame folder, a DAVIS-layout dataset and a
    prompts file with the same masks."""
    root = tmp_path_factory.mktemp("multi")
    frames = root / "JPEGImages" / "clip"
    frames.mkdir(parents=True)
    for t in range(FRAMES):
        shutil.copy(SHAPES / "JPEGImages" / "shapes" / f"{t:05d}.jpg", frames / f"{t:05d}.jpg")
    annotations = root / "Annotations" / "clip"
    annotations.mkdir(parents=True)
    objects = _object_masks()
    by_frame: dict[int, np.ndarray] = {}
    entries = []
    for obj, (start, mask) in objects.items():
        by_frame.setdefault(start, np.zeros(mask.shape, np.uint8))[mask] = obj
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / f"mask_{obj}.png")
        entries.append({"id": obj, "frame": start, "mask": f"mask_{obj}.png"})
    for start, labels in by_frame.items():
        png = Image.fromarray(labels, mode="P")
        png.putpalette(DAVIS_PALETTE)
        png.save(annotations / f"{start:05d}.png")
    (root / "prompts.json").write_text(json.dumps({"objects": entries}))
    return root


def _model(checkpoint):
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(checkpoint), "--device", "cpu"]


def _pngs(folder):
    return {p.relative_to(folder).as_posix(): np.array(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def _video_tool(dataset, checkpoint, out, *extra):
    rc = video_inference.main(["--video_path", str(dataset / "JPEGImages" / "clip"), *_model(checkpoint),
                               "--output_video", str(out / "overlay.mp4"), "--output_mask_dir",
                               str(out / "masks"), *extra])
    assert rc == 0
    return _pngs(out / "masks")


@pytest.mark.parametrize("layout", [[], ["--per_obj_png_file"]], ids=["davis", "sav"])
def test_video_tool_gives_the_dataset_tools_masks(dataset, micro_checkpoints, tmp_path, layout):
    checkpoint = micro_checkpoints["lively"]
    ours = _video_tool(dataset, checkpoint, tmp_path / "video", "--prompts", str(dataset / "prompts.json"),
                       *layout)
    masks = dataset / "Annotations"
    if layout:  # the SA-V input layout: one folder per object
        masks = tmp_path / "sav_annotations"
        for obj, (start, mask) in _object_masks().items():
            folder = masks / "clip" / f"{obj:03d}"
            folder.mkdir(parents=True)
            for t in range(FRAMES):
                Image.fromarray((mask & (t == start)).astype(np.uint8)).save(folder / f"{t:05d}.png")
    assert vos_inference.main([*_model(checkpoint), "--base_video_dir", str(dataset / "JPEGImages"),
                               "--input_mask_dir", str(masks), "--output_mask_dir", str(tmp_path / "vos"),
                               "--track_object_appearing_later_in_video", *layout]) == 0
    theirs = _pngs(tmp_path / "vos" / "clip")
    assert sorted(ours) == sorted(theirs) and len(ours) == FRAMES * (3 if layout else 1)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    if not layout:  # every object is really there, the late one only from its start frame
        assert {1, 2, 5} <= set(np.unique(ours[f"{FRAMES - 1:05d}.png"]).tolist())
        assert 5 not in ours[f"{THIRD_START - 1:05d}.png"]


def test_objects_do_not_interact(dataset, micro_checkpoints, tmp_path):
    """Three objects in one pass == three single-object runs, object by object."""
    checkpoint = micro_checkpoints["lively"]
    together = _video_tool(dataset, checkpoint, tmp_path / "all", "--prompts", str(dataset / "prompts.json"),
                           "--per_obj_png_file")
    prompts = json.loads((dataset / "prompts.json").read_text())["objects"]
    for entry in prompts:
        single = tmp_path / f"single_{entry['id']}.json"
        entry = dict(entry, mask=str(dataset / entry["mask"]))
        single.write_text(json.dumps([entry]))
        alone = _video_tool(dataset, checkpoint, tmp_path / f"one_{entry['id']}", "--prompts", str(single),
                            "--per_obj_png_file")
        assert len(alone) == FRAMES
        for name, mask in alone.items():
            np.testing.assert_array_equal(mask, together[name], err_msg=name)


def test_object_groups_on_the_command_line(dataset, micro_checkpoints, tmp_path):
    """--object ID starts each object's clicks/box/frame; each gets its own overlay colour."""
    out = tmp_path / "groups"
    masks = _video_tool(dataset, micro_checkpoints["plain"], out,
                        "--object", "3", "--points", "70", "120", "--labels", "1",
                        "--object", "7", "--box", "225", "165", "275", "215", "--frame", "2")
    ids = set(np.unique(np.stack(list(masks.values()))).tolist())
    assert ids == {0, 3, 7}  # both objects really tracked, not empty masks
    # The masks are the tracker's own on these prompts, run in-process (tests/cli_reference.py).
    from sam2long.runtime.prompts import ObjectPrompt
    from tests.cli_reference import assert_same_labels, davis_labels, read_frames, reference_logits

    frames = read_frames(sorted((dataset / "JPEGImages" / "clip").glob("*.jpg")))
    want = reference_logits(micro_checkpoints["plain"], frames, [
        ObjectPrompt(3, 0, points=np.array([[70.0, 120.0]]), labels=np.array([1])),
        ObjectPrompt(7, 2, box=np.array([225.0, 165.0, 275.0, 215.0]))])
    assert sorted(masks) == [f"{t:05d}.png" for t in range(FRAMES)]
    for t, logits in enumerate(want):
        assert sorted(logits) == ([3] if t < 2 else [3, 7])
        assert_same_labels(out / "masks" / f"{t:05d}.png", davis_labels(logits, frames[0].shape[:2]))
    import av

    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES


def test_overlay_colours_outlines_and_tags():
    from sam2long.runtime.overlay import object_colour, overlay_masks

    rgb = np.full((60, 80, 3), 128, np.uint8)
    a = np.zeros((60, 80), bool)
    a[20:40, 10:30] = True
    b = np.zeros((60, 80), bool)
    b[20:40, 50:70] = True
    out = overlay_masks(rgb, {1: a, 2: b}, tags=False)
    assert tuple(out[20, 20]) == tuple(object_colour(1).astype(np.uint8))  # outline in its colour
    assert tuple(out[20, 60]) == tuple(object_colour(2).astype(np.uint8))
    assert not np.array_equal(object_colour(1), object_colour(2))
    tagged = overlay_masks(rgb, {1: a, 2: b})
    assert (tagged != out).any(axis=2).sum() > 20  # the id tags are drawn
    assert (tagged[:, :8] == out[:, :8]).all()  # ...near their masks, not elsewhere


@pytest.mark.parametrize("argv,message", [
    (["--object", "1", "--points", "70", "120", "--object", "2", "--frame", "3"],
     "object 2: give its points and/or box"),
    (["--object", "1", "--points", "70", "120", "--object", "2", "--points", "5", "5", "--frame", "99"],
     "object 2: prompt frame 99 is outside the video's frames 0..7"),
    (["--object", "4", "--points", "70", "120", "--object", "4", "--box", "1", "1", "9", "9"],
     "object 4 has two prompts on frame 0"),  # the same id on another frame is a second prompt
    (["--points", "70", "120", "--object", "2", "--points", "5", "5"],
     "start every object's prompt flags with --object ID"),
    (["--object", "1", "--points", "70", "120", "--points", "1", "1"], "given twice for --object 1"),
    (["--prompts", "nope.json"], "cannot read prompts file nope.json"),
])
def test_bad_prompt_groups(dataset, micro_checkpoints, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) if "given twice" in message else contextlib.nullcontext():
        rc = video_inference.main(["--video_path", str(dataset / "JPEGImages" / "clip"),
                                   *_model(micro_checkpoints["plain"]), "--output_video",
                                   str(tmp_path / "o.mp4"), *argv])
        assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_prompts_files(dataset, micro_checkpoints, tmp_path, capsys):
    cases = {
        "[]": "expected a non-empty list of objects",
        '[{"id": 1, "points": [[1, 2]], "colour": 3}]': "unknown keys ['colour']",
        '[{"id": 1, "points": [[1, 2]], "mask": "m.png"}]': "either a mask or points/box",
        '[{"id": 1, "frame": "x", "points": [[1, 2]]}]': "id and frame must be integers",
        "{oops": "is not valid JSON",
    }
    for text, message in cases.items():
        path = tmp_path / "p.json"
        path.write_text(text)
        assert video_inference.main(["--video_path", str(dataset / "JPEGImages" / "clip"),
                                     *_model(micro_checkpoints["plain"]), "--prompts", str(path)]) == 2
        assert message in capsys.readouterr().err, text

