"""Plain SAM 2 mode through the TensorRT backend's code on the CPU (the offline fake of
tests/test_trt_offline.py, whose contexts run the graphs with ONNX Runtime and check every
shape against the engine's profile): memory frames from the model's M to the profile's
most, bindings per shape; the same session as on torch and ONNX Runtime gives sam2's
masks, with several conditioning frames per object."""

from __future__ import annotations

import pytest

from sam2long.runtime.interactive import PostProcessing
from tests.conftest import MICRO_CFG
from tests.test_predictor_sam2_parity import (compare_sessions, compare_with_several_conditioning_frames,  # noqa: F401
                                              sam2_reference, video_dir)
from tests.test_trt_offline import _backend, _build, cpu_stream, fake_trt, graphs, onnx_graphs  # noqa: F401

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")


def _predictor(backend, corrections_as_cond: bool):
    from dataclasses import replace

    from sam2long.predictor import SAM2LongVideoPredictor
    from sam2long.runtime.memory_bank import Sam2Rules

    rules = replace(Sam2Rules.from_config_file(MICRO_CFG), add_all_frames_to_correct_as_cond=corrections_as_cond)
    return SAM2LongVideoPredictor(backend, rules, mode="sam2", post=PostProcessing())


def test_plain_mode_through_the_tensorrt_backend_equals_sam2(graphs, fake_trt, cpu_stream,  # noqa: F811
                                                            micro_checkpoints, video_dir, monkeypatch):  # noqa: F811
    backend = _backend(fake_trt, graphs, _build(graphs))
    checked = compare_with_several_conditioning_frames(micro_checkpoints["lively"], _predictor(backend, True),
                                                       video_dir, monkeypatch)
    assert checked > 15
    shapes = [shape for name, shape, ok in fake_trt.shapes_set if name == "mem_feats"]
    assert max(s[1] for s in shapes) > backend.geometry.num_maskmem  # the engine's profile took them


def test_beyond_the_profile_prompt_frames_are_a_clear_error(graphs, fake_trt, cpu_stream,  # noqa: F811
                                                          micro_checkpoints, video_dir, monkeypatch):  # noqa: F811
    """Engines built for no extra conditioning frame: an object's second one is refused
    before any engine runs, naming the frame, the objects' prompt frames and the limits."""
    from sam2long.engine.graph_backend import ProfileError

    monkeypatch.setattr("sam2long.engine.profiles.EXTRA_SLOTS", 0)
    backend = _backend(fake_trt, graphs, _build(graphs))
    predictor = _predictor(backend, False)
    state = predictor.init_state(video_path=video_dir)
    predictor.add_new_points_or_box(state, 0, 1, points=[[60.0, 60.0]], labels=[1])
    predictor.add_new_points_or_box(state, 5, 1, points=[[60.0, 60.0]], labels=[1])  # not tracked yet: cond
    geo, frames = backend.geometry, []
    with pytest.raises(ProfileError, match=(
            rf"frame 4, prompt frames per object \{{1: 2\}}: a memory of {geo.num_maskmem + 1} frames .* the trt "
            rf"engines' memory attention takes at most {geo.num_maskmem} frames and {geo.max_obj_ptrs} pointers "
            rf".*prompt frames per object: at most 1\).*backend torch")):
        for frame, _, _ in predictor.propagate_in_video(state):  # frame 4: 2 conditioning + 3 recent frames
            frames.append(frame)
    assert frames == [0, 1, 2, 3]
