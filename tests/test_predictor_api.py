"""The sam2-shaped Python API: the import stays light, mode "sam2long" with one prompt frame
per object gives the batch tracker's masks exactly, misuse is a one-line error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.postprocess import to_video_resolution
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG, ROOT, synthetic_mask, write_frames

NUM_FRAMES = 7
HW = (120, 160)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    return str(write_frames(tmp_path_factory.mktemp("video"), NUM_FRAMES, quality=95))


@pytest.fixture(scope="module")
def tree_predictor(micro_checkpoints):
    from sam2long import build_sam2long_video_predictor

    return build_sam2long_video_predictor(MICRO_CFG, str(micro_checkpoints["lively"]), mode="sam2long")


def test_import_is_light_and_the_builder_is_there():
    code = ("import sys, sam2long; assert 'torch' not in sys.modules, 'torch imported'; "
            "from sam2long import build_sam2long_video_predictor, SAM2LongVideoPredictor; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tree_mode_with_one_prompt_frame_per_object_is_the_batch_tracker(tree_predictor, video_dir,
                                                                         lively_backend):
    mask = synthetic_mask(0)
    state = tree_predictor.init_state(video_path=video_dir)
    tree_predictor.add_new_mask(state, frame_idx=0, obj_id=4, mask=mask)
    tree_predictor.add_new_points_or_box(state, frame_idx=2, obj_id=9, points=[[60.0, 62.0]], labels=[1])
    got = list(tree_predictor.propagate_in_video(state))

    frames = []
    for t in range(NUM_FRAMES):
        with Image.open(f"{video_dir}/{t:05d}.jpg") as img:
            frames.append(preprocess_frame(img, 256))
    prompts = [ObjectPrompt(4, 0, mask=mask),
               ObjectPrompt(9, 2, points=np.array([[60.0, 62.0]]), labels=np.array([1]))]
    tracker = SAM2LongTracker(lively_backend, TrackerConfig(3, 0.1, 2.0))
    want = list(tracker.track(iter(frames), prompts, NUM_FRAMES, HW))
    assert [f for f, _, _ in got] == list(range(NUM_FRAMES))
    for (frame, ids, masks), result in zip(got, want):
        assert ids == [4, 9]
        expected = to_video_resolution(result.low_res_logits, HW)
        assert masks.shape == (2, 1, *HW)
        np.testing.assert_array_equal(masks[:len(expected), 0].numpy(), expected)
        if frame < 2:  # object 9 starts on frame 2
            assert (masks[1] == -1024).all()


def test_misuse_is_a_clear_error(tree_predictor, video_dir):
    from sam2long.engine.errors import SAM2LongError

    p = tree_predictor
    state = p.init_state(video_path=video_dir)
    with pytest.raises(SAM2LongError, match=r"frame 7 is beyond the video: it has frames 0\.\.6"):
        p.add_new_points_or_box(state, 7, 1, points=[[5, 5]], labels=[1])
    with pytest.raises(SAM2LongError, match="no object has a prompt yet"):
        next(p.propagate_in_video(state))
    with pytest.raises(SAM2LongError, match="points and labels must be provided together"):
        p.add_new_points_or_box(state, 0, 1, points=[[5, 5]])
    with pytest.raises(SAM2LongError, match="2 points but 1 labels"):
        p.add_new_points_or_box(state, 0, 1, points=[[5, 5], [6, 6]], labels=[1])
    with pytest.raises(SAM2LongError, match="the mask on frame 1 is empty"):
        p.add_new_mask(state, 1, 1, np.zeros(HW, bool))
    p.add_new_points_or_box(state, 0, 1, points=[[50, 60]], labels=[1])
    with pytest.raises(SAM2LongError, match=r"unknown object id 5: the session's objects are \[1\]"):
        p.clear_all_prompts_in_frame(state, 0, 5)
    with pytest.raises(SAM2LongError, match=r"cannot remove object 5"):
        p.remove_object(state, 5, strict=True)
    assert p.remove_object(state, 5) == ([1], [])  # sam2's non-strict default: nothing to do
    # Several prompt frames, corrections and reverse propagation are mode sam2long's too
    # (tests/test_predictor_tree_prompts.py); its graph backends refuse several prompt frames.
    first = next(p.propagate_in_video(state, max_frame_num_to_track=1))
    assert first[0] == 0
    p.reset_state(state)
    assert state.obj_ids == []


def test_plain_mode_checks_its_inputs_before_any_work(micro_checkpoints, video_dir):
    from sam2long import build_sam2long_video_predictor
    from sam2long.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="mode 'sam3'"):
        build_sam2long_video_predictor(MICRO_CFG, str(micro_checkpoints["plain"]), mode="sam3")
    p = build_sam2long_video_predictor(MICRO_CFG, str(micro_checkpoints["plain"]), mode="sam2")
    state = p.init_state(video_path=video_dir)
    assert state.num_frames == NUM_FRAMES and (state.video_height, state.video_width) == HW
    assert (state["num_frames"], state["video_height"], state["video_width"]) == (NUM_FRAMES, *HW)
    with pytest.raises(KeyError, match="as a dict it reads only"):
        state["output_dict_per_obj"]
    with pytest.raises(Exception, match="frame -1 is beyond the video"):
        p.add_new_mask(state, -1, 1, synthetic_mask(0))
    _, ids, masks = p.add_new_points_or_box(state, 3, 2, box=[15.0, 42.0, 65.0, 78.0])
    assert ids == [2] and masks.shape == (1, 1, *HW) and masks.dtype == torch.float32
