"""Plain SAM 2 mode against sam2 1.1.0's own `SAM2VideoPredictor`: the same session (clicks,
a box, masks, several objects starting on different frames, refinement clicks on a prompt
frame and on a tracked frame, forward and reverse propagation, max_frame_num_to_track,
clearing prompts, removing an object) gives the same masks on every returned frame.

sam2 stores memory features in bfloat16 and, on the CPU without autocast, fails when a
frame's memory holds only those (an object tracked before its own prompt frame has no
pointer yet to promote the concatenation to float32). The reference here keeps the same
bfloat16-rounded values as float32 (`_promote_stored_memory`), which changes no number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import MICRO_CFG, synthetic_mask, write_frames

NUM_FRAMES = 6
HW = (120, 160)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    return str(write_frames(tmp_path_factory.mktemp("video"), NUM_FRAMES, quality=95))


def _promote_stored_memory(predictor):
    """sam2's stored memory as float32 holding the same bfloat16-rounded values."""
    run_frame, run_encoder = predictor._run_single_frame_inference, predictor._run_memory_encoder

    def frame(*args, **kwargs):
        out, masks = run_frame(*args, **kwargs)
        if out["maskmem_features"] is not None:
            out["maskmem_features"] = out["maskmem_features"].float()
        return out, masks

    def encoder(*args, **kwargs):
        feats, pos = run_encoder(*args, **kwargs)
        return feats.float(), pos

    predictor._run_single_frame_inference = frame
    predictor._run_memory_encoder = encoder


def sam2_reference(checkpoint, postprocessing: bool, corrections_as_cond: bool | None = None):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(MICRO_CFG)
    cfg.model["_target_"] = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    if postprocessing:  # what sam2's build_sam2_video_predictor adds by default
        cfg.model["sam_mask_decoder_extra_args"] = {
            "dynamic_multimask_via_stability": True, "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98}
        cfg.model["binarize_mask_from_pts_for_mem_enc"] = True
        cfg.model["fill_hole_area"] = 8
    # Not a post-processing default: on with it (or when asked) so that corrections that
    # stay (they become conditioning frames) are covered without another session.
    if postprocessing if corrections_as_cond is None else corrections_as_cond:
        cfg.model["add_all_frames_to_correct_as_cond"] = True
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    model = model.eval()
    _promote_stored_memory(model)
    return model


def ours(checkpoint, postprocessing: bool, backend="torch", engine_dir=None, corrections_as_cond=None):
    from sam2long import build_sam2long_video_predictor

    return build_sam2long_video_predictor(
        MICRO_CFG, str(checkpoint), backend=backend, mode="sam2", engine_dir=engine_dir,
        apply_postprocessing=postprocessing,
        add_all_frames_to_correct_as_cond=postprocessing if corrections_as_cond is None else corrections_as_cond)


def session_script(video_dir, several_prompt_frames=True):
    """A user's session as (name, call(predictor, state) -> list of (frame, obj_ids, masks))."""
    mask2 = synthetic_mask(3) & (np.arange(160) < 55)[None, :]

    def one(out):
        return [out]

    def many(gen):
        return list(gen)

    steps = [
        ("click obj 1 on frame 1", lambda p, s: one(p.add_new_points_or_box(
            s, frame_idx=1, obj_id=1, points=[[60.0, 60.0]], labels=[1]))),
        ("refine obj 1 on its prompt frame", lambda p, s: one(p.add_new_points_or_box(
            s, 1, 1, points=np.array([[120.0, 20.0]]), labels=np.array([0]), clear_old_points=False))),
        ("mask obj 2 on frame 3", lambda p, s: one(p.add_new_mask(s, 3, 2, mask2))),
        ("box obj 3 on frame 0", lambda p, s: one(p.add_new_points_or_box(
            s, 0, 3, box=[15.0, 42.0, 65.0, 78.0]))),
        ("propagate forward", lambda p, s: many(p.propagate_in_video(s))),
        ("correct obj 1 on tracked frame 4", lambda p, s: one(p.add_new_points_or_box(
            s, 4, 1, points=[[30.0, 50.0]], labels=[1], clear_old_points=False))),
        ("second prompt frame for obj 3 on frame 5 (clicks, normalised)", lambda p, s: one(
            p.add_new_points_or_box(s, 5, 3, points=[[0.5, 0.5], [0.1, 0.1]], labels=[1, 0],
                                    normalize_coords=False))),
        ("propagate from 3, 2 more frames", lambda p, s: many(p.propagate_in_video(
            s, start_frame_idx=3, max_frame_num_to_track=2))),
        ("propagate in reverse from 5, 3 more frames", lambda p, s: many(p.propagate_in_video(
            s, start_frame_idx=5, max_frame_num_to_track=3, reverse=True))),
        ("correct obj 2 on frame 2 (tracked in reverse)", lambda p, s: one(p.add_new_points_or_box(
            s, 2, 2, points=[[50.0, 70.0]], labels=[1]))),
        ("clear obj 3's prompts on frame 5", lambda p, s: one(p.clear_all_prompts_in_frame(s, 5, 3))),
        ("remove obj 2", lambda p, s: [(f, None, m) for f, m in p.remove_object(s, 2)[1]]),
        ("propagate in reverse from 2", lambda p, s: many(p.propagate_in_video(s, start_frame_idx=2, reverse=True))),
    ]
    return [step for step in steps if several_prompt_frames or "second prompt frame" not in step[0]]


def compare_sessions(reference, candidate, video_dir, atol=1e-3, several_prompt_frames=True, script=None,
                     our_state=None):
    ref_state = reference.init_state(video_path=video_dir)
    our_state = our_state or candidate.init_state(video_path=video_dir)
    checked = 0
    for name, call in script or session_script(video_dir, several_prompt_frames):
        with torch.inference_mode():
            expected = call(reference, ref_state)
        got = call(candidate, our_state)
        assert [f for f, _, _ in got] == [f for f, _, _ in expected], name
        for (frame, ids, masks), (_, ref_ids, ref_masks) in zip(got, expected):
            if ref_ids is not None:
                assert list(ids) == list(ref_ids), (name, frame)
            assert masks.shape == ref_masks.shape, (name, frame)
            ours_np, ref_np = masks.float().cpu().numpy(), ref_masks.float().cpu().numpy()
            for k in range(len(ref_np)):
                a, b = ours_np[k] > 0, ref_np[k] > 0
                union = (a | b).sum()
                iou = (a & b).sum() / union if union else 1.0
                assert iou >= 0.999, f"{name}: frame {frame}, object #{k}: IoU {iou}"
            np.testing.assert_allclose(ours_np, ref_np, atol=atol, err_msg=f"{name}: frame {frame}")
            checked += 1
    return checked


def compare_with_several_conditioning_frames(checkpoint, candidate, video_dir, monkeypatch) -> int:
    """The session with corrections kept as conditioning frames (sam2's
    add_all_frames_to_correct_as_cond): objects 1 and 3 get a second one, so some frame's
    memory has more frame slots than the model's M (SAM 2 attends to every conditioning
    frame), which the graph backends must take as they are."""
    backend = candidate.backend
    attend, frames = backend.attend_memory, []

    def counting(feat, memory, mem_ids=None):
        frames.append(memory.mem_feats.shape[1])
        return attend(feat, memory, mem_ids)

    monkeypatch.setattr(backend, "attend_memory", counting)
    checked = compare_sessions(sam2_reference(checkpoint, False, corrections_as_cond=True), candidate, video_dir)
    assert max(frames) > backend.geometry.num_maskmem
    return checked


@pytest.mark.parametrize("weights", ["plain", "lively"])
def test_plain_mode_equals_sam2_video_predictor(micro_checkpoints, video_dir, weights):
    checkpoint = micro_checkpoints[weights]
    checked = compare_sessions(sam2_reference(checkpoint, False), ours(checkpoint, False), video_dir)
    assert checked > 15


def test_plain_mode_equals_sam2_with_its_default_postprocessing(micro_checkpoints, video_dir, monkeypatch):
    """sam2's defaults: dynamic multimask, binarised clicked masks in memory, and hole
    filling, which needs sam2's CUDA extension: the reference gets a plain CPU labelling in
    its place (sam2 without it skips the step with a warning). Corrections on tracked
    frames become conditioning frames here (add_all_frames_to_correct_as_cond)."""
    import sam2.utils.misc

    from tests.test_predictor_holes import components_bfs

    def connected_components(mask):
        pairs = [components_bfs(m[0].numpy().astype(bool)) for m in mask.cpu()]
        return tuple(torch.from_numpy(np.stack([p[i] for p in pairs]))[:, None] for i in (0, 1))

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", connected_components)
    checkpoint = micro_checkpoints["lively"]
    compare_sessions(sam2_reference(checkpoint, True), ours(checkpoint, True), video_dir)


@pytest.fixture(scope="module")
def onnx_engines(micro_checkpoints, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")
    from sam2long.export.build_engines import build

    return build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("engines")))


def test_plain_mode_on_onnx_runtime_equals_sam2(micro_checkpoints, video_dir, onnx_engines):
    checkpoint = micro_checkpoints["lively"]
    checked = compare_sessions(sam2_reference(checkpoint, False),
                               ours(checkpoint, False, backend="onnx", engine_dir=str(onnx_engines)), video_dir)
    assert checked > 15


def test_onnx_runtime_takes_several_conditioning_frames_per_object(micro_checkpoints, video_dir, onnx_engines,
                                                                   monkeypatch):
    """More memory frames than the model's M (graph format 2: dynamic frame slots)."""
    checkpoint = micro_checkpoints["lively"]
    candidate = ours(checkpoint, False, backend="onnx", engine_dir=str(onnx_engines), corrections_as_cond=True)
    assert compare_with_several_conditioning_frames(checkpoint, candidate, video_dir, monkeypatch) > 15


def test_re_propagation_after_a_correction_recomputes_only_the_frames_from_it(micro_checkpoints, video_dir):
    """After a correction on frame 3, propagating again from the first prompt frame (what
    sam2 does by default) yields sam2's masks for every frame but computes frames 3.. of the
    corrected object only: the other frames' memory is unchanged, so their stored masks are
    the answer."""
    checkpoint = micro_checkpoints["lively"]
    candidate = ours(checkpoint, False)
    state = candidate.init_state(video_path=video_dir)
    counts = []

    def count(call):
        def run(p, s):
            out = call(p, s)
            if p is candidate:
                counts.append(s.frames_computed)
            return out
        return run

    script = [(name, count(call)) for name, call in [
        ("click obj 1 on frame 0", lambda p, s: [p.add_new_points_or_box(s, 0, 1, points=[[60, 60]], labels=[1])]),
        ("mask obj 2 on frame 1", lambda p, s: [p.add_new_mask(s, 1, 2, synthetic_mask(1))]),
        ("propagate", lambda p, s: list(p.propagate_in_video(s))),
        ("correct obj 1 on frame 3", lambda p, s: [p.add_new_points_or_box(
            s, 3, 1, points=[[30, 50]], labels=[0], clear_old_points=False)]),
        ("propagate again", lambda p, s: list(p.propagate_in_video(s))),
    ]]
    compare_sessions(sam2_reference(checkpoint, False), candidate, video_dir, script=script, our_state=state)
    frames_after_prompts = (NUM_FRAMES - 1) + (NUM_FRAMES - 1)  # each object on every other frame
    assert counts == [0, 0, frames_after_prompts, frames_after_prompts,
                      frames_after_prompts + (NUM_FRAMES - 3)]  # frames 3.. of object 1; object 2 is untouched
