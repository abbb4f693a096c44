"""tools/video_inference.py with several prompts per object on different frames, and --mode.

- the prompts file and the flags give an object prompts on several frames; a second prompt
  on one frame, a frame beyond the video, an entry whose default id joins another object
  are one-line errors before the model loads;
- --mode sam2 (several frames, several objects) writes the masks of the predictor driven
  directly with the same prompts, objects showing from their first prompt frame;
- --mode sam2long keeps the batch tracker for one prompt frame per object; with several
  frames the predictor's refusal is one line and nothing is written.
"""

import json

import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.prompts import (PromptError, first_prompt_frames, load_prompt_file, one_frame_per_object,
                                      validate_prompts)
from sam2long.tools import video_inference
from tests.cli_reference import davis_labels
from tests.conftest import MICRO_CFG, ROOT, model_args, write_frames

SAMPLE = str(ROOT / "samples" / "shapes.mp4")  # 24 frames, 320x240 (errors only: no model runs)
HW = (240, 320)
CLIP_FRAMES, CLIP_HW = 12, (120, 160)  # tests/conftest.py synthetic_frame: an ellipse from x=40
# Object 1 clicked on frame 0 and again (a correction) on frame 6; object 2 boxed on frame 3.
FLAGS = ["--object", "1", "--points", "45", "60",
         "--object", "2", "--box", "100", "10", "150", "50", "--frame", "3",
         "--object", "1", "--points", "50", "60", "120", "100", "--labels", "1", "0", "--frame", "6"]
PREDICTOR_CALLS = [(0, 1, {"points": [[45, 60]], "labels": [1]}),
                   (3, 2, {"box": [100, 10, 150, 50]}),
                   (6, 1, {"points": [[50, 60], [120, 100]], "labels": [1, 0]})]


@pytest.fixture
def clip(tmp_path) -> str:
    return str(write_frames(tmp_path / "clip", CLIP_FRAMES))


def _no_model(monkeypatch):
    """Any model load fails the test: errors must come first."""
    def refuse(*_, **__):
        raise AssertionError("the model was loaded before the prompts were checked")

    monkeypatch.setattr(video_inference, "load_backend", refuse)
    monkeypatch.setattr(video_inference, "make_predictor", refuse)


def test_prompts_file_several_frames_per_object(tmp_path):
    Image.fromarray(np.pad(np.ones((10, 10), np.uint8), ((5, 225), (5, 305)))).save(tmp_path / "m.png")
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"id": 3, "frame": 5, "points": [[10, 10]]},
                                {"id": 1, "frame": 2, "box": [1, 2, 30, 40]},
                                {"id": 3, "frame": 1, "mask": "m.png"},
                                {"id": 3, "frame": 9, "points": [[5, 6], [7, 8]], "labels": [1, 0]}]))
    prompts = load_prompt_file(str(path))
    assert [(p.obj_id, p.frame_idx) for p in prompts] == [(3, 5), (1, 2), (3, 1), (3, 9)]
    assert prompts[2].mask.shape == HW and prompts[3].labels.tolist() == [1, 0]
    validate_prompts(prompts, HW, 10, several_frames=True)
    assert first_prompt_frames(prompts) == {3: 1, 1: 2}  # objects in the order they first appear
    assert not one_frame_per_object(prompts) and one_frame_per_object(prompts[:2])
    # The batch tracker's callers keep one prompt per object.
    with pytest.raises(PromptError, match=r"object id\(s\) \[3\] given more than once"):
        validate_prompts(prompts, HW, 10)


@pytest.mark.parametrize("items,message", [
    ([{"id": 1, "frame": 3, "points": [[1, 1]]}, {"id": 1, "frame": 3, "box": [0, 0, 9, 9]}],
     "object 1 has two prompts on frame 3: give one prompt per object and frame"),
    ([{"id": 1, "points": [[1, 1]]}, {"id": 1, "frame": 30, "points": [[2, 2]]}],
     "object 1: prompt frame 30 is outside the video's frames 0..23"),
    ([{"points": [[1, 1]]}, {"id": 1, "frame": 5, "points": [[2, 2]]}],
     'object #1: it has no "id" and its default id 1 is another entry\'s too'),
])
def test_prompts_file_errors_before_the_model(tmp_path, monkeypatch, capsys, items, message):
    _no_model(monkeypatch)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(items))
    for mode in ("sam2long", "sam2"):
        rc = video_inference.main(["--video_path", SAMPLE, "--prompts", str(path), "--mode", mode,
                                   "--output_video", str(tmp_path / "o.mp4"), *model_args("none.pt")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("argv,message", [
    (["--object", "1", "--points", "1", "1", "--object", "1", "--points", "2", "2"],
     "object 1 has two prompts on frame 0"),
    (["--object", "1", "--points", "1", "1", "--object", "1", "--points", "2", "2", "--frame", "24"],
     "object 1: prompt frame 24 is outside the video's frames 0..23"),
    (["--object", "1", "--points", "1", "1", "--object", "1", "--points", "999", "2", "--frame", "3"],
     "object 1: point [999.0, 2.0] is outside the 320x240 frame"),
])
def test_flags_errors_before_the_model(tmp_path, monkeypatch, capsys, argv, message):
    _no_model(monkeypatch)
    rc = video_inference.main(["--video_path", SAMPLE, *argv, "--mode", "sam2",
                               "--output_video", str(tmp_path / "o.mp4"), *model_args("none.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def _predictor_labels(checkpoint, video, prompts_in_order, mode="sam2") -> tuple[list[np.ndarray], int]:
    """The predictor driven directly: the prompts in order, one propagation from the
    earliest; each frame's labels with objects from their first prompt frame on, and the
    mask pixels the predictor gave objects before their first prompt frame."""
    from sam2long import build_sam2long_video_predictor

    predictor = build_sam2long_video_predictor(MICRO_CFG, str(checkpoint), mode=mode,
                                               apply_postprocessing=False)
    state = predictor.init_state(video)
    for frame, obj, kwargs in prompts_in_order:
        predictor.add_new_points_or_box(state, frame_idx=frame, obj_id=obj, **kwargs)
    starts = {}
    for frame, obj, _ in prompts_in_order:
        starts[obj] = min(starts.get(obj, frame), frame)
    labels, early = [np.zeros(CLIP_HW, np.uint8)] * min(starts.values()), 0
    for t, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=min(starts.values())):
        labels.append(davis_labels({i: masks[k, 0].numpy() for k, i in enumerate(obj_ids) if starts[i] <= t}, CLIP_HW))
        early += sum(int((masks[k, 0] > 0).sum()) for k, i in enumerate(obj_ids) if starts[i] > t)
    return labels, early


def _pngs(folder) -> list[np.ndarray]:
    return [np.array(Image.open(folder / f"{t:05d}.png")) for t in range(CLIP_FRAMES)]


def test_mode_sam2_several_frames_is_the_predictor(tmp_path, clip, micro_checkpoints):
    masks = tmp_path / "masks"
    rc = video_inference.main(["--video_path", clip, *FLAGS, "--mode", "sam2", "--output_video",
                               str(tmp_path / "o.mp4"), "--output_mask_dir", str(masks),
                               *model_args(micro_checkpoints["lively"])])
    assert rc == 0
    got = _pngs(masks)
    want, early = _predictor_labels(micro_checkpoints["lively"], clip, PREDICTOR_CALLS)
    for t in range(CLIP_FRAMES):
        differ = int((got[t] != want[t]).sum())
        assert differ <= 2, f"frame {t}: {differ} pixels differ from the predictor driven directly"
    # Object 2 shows from its first prompt frame on: the predictor's masks of it before then
    # (tracked from the earliest prompt, as sam2 does) are not written.
    assert early > 50 and not any((got[t] == 2).any() for t in range(3))
    assert sum((got[t] == 2).any() for t in range(3, 12)) >= 6 and sum((got[t] == 1).any() for t in range(12)) >= 8
    # The later prompt of object 1 is used: without it, its masks differ (SAM 2 attends to
    # every conditioning frame, so frames before it move too).
    alone, _ = _predictor_labels(micro_checkpoints["lively"], clip, PREDICTOR_CALLS[:2])
    assert sum(int(((alone[t] == 1) != (got[t] == 1)).sum()) for t in range(6, 12)) > 50


def test_mode_sam2long_several_frames_follows_the_predictor(tmp_path, clip, micro_checkpoints, capsys):
    """Where the predictor's mode sam2long refuses prompts on several frames of one object,
    the tool's refusal is one line and nothing is written; once it takes them, the tool
    writes the predictor's masks, as in mode sam2."""
    from sam2long.predictor import SessionError

    out, masks = tmp_path / "o.mp4", tmp_path / "masks"
    rc = video_inference.main(["--video_path", clip, *FLAGS, "--output_video", str(out),
                               "--output_mask_dir", str(masks), *model_args(micro_checkpoints["lively"])])
    err = capsys.readouterr().err
    try:
        want, _ = _predictor_labels(micro_checkpoints["lively"], clip, PREDICTOR_CALLS, mode="sam2long")
    except SessionError as refusal:
        assert rc == 2
        line = [x for x in err.splitlines() if x.startswith("error:")]
        assert line == [f"error: {refusal}"], err
        assert "takes one prompt frame per object" in line[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no video, masks, records or partials
        return
    assert rc == 0, err
    for t, got in enumerate(_pngs(masks)):
        assert int((got != want[t]).sum()) <= 2, t


def test_mode_sam2long_one_frame_per_object_keeps_the_batch_tracker(tmp_path, clip, micro_checkpoints, monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("one prompt frame per object in mode sam2long goes through the batch tracker")

    monkeypatch.setattr(video_inference, "make_predictor", refuse)
    rc = video_inference.main(["--video_path", clip, *FLAGS[:12], "--output_video", str(tmp_path / "o.mp4"),
                               *model_args(micro_checkpoints["lively"])])
    assert rc == 0


def test_help_shows_mode_and_several_frames(capsys):
    with pytest.raises(SystemExit):
        video_inference.main(["--help"])
    out = capsys.readouterr().out
    assert "--mode {sam2long,sam2}" in out and "a second frame:" in out
    assert "prompts on several frames" in out


@pytest.mark.parametrize("flags", [FLAGS, FLAGS[:12]])
def test_auto_backend_serves_several_prompt_frames(tmp_path, clip, micro_checkpoints, monkeypatch, capsys, flags):
    """The graphs take any number of conditioning frames (graph format 2): --backend auto
    stays auto for an object with prompts on several frames."""
    from sam2long.engine.errors import ConfigError

    def record(choice, *_, **__):
        raise ConfigError(f"chose {choice}")

    monkeypatch.setattr(video_inference, "build_chosen_backend", record)
    rc = video_inference.main(["--video_path", clip, *flags, "--mode", "sam2", "--output_video",
                               str(tmp_path / "o.mp4"), "--sam2_cfg", MICRO_CFG, "--sam2_checkpoint",
                               str(micro_checkpoints["lively"]), "--device", "cpu"])
    assert rc == 2 and "chose auto" in capsys.readouterr().err
