"""The tracker against references that do not share its code: sam2's own SAM2Base.track_step
for the prompt frame and the plain SAM 2 step after it (SAM2LONG_ALGORITHM.md, "Frames s and
s+1"), and the accumulated-score rule read back from the trace. No parity fixture needed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sam2long.engine.model_loading import load_sam2_model
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG, synthetic_frame, synthetic_mask

HW = (120, 160)
SIZE = 256


def _image(t):
    return preprocess_frame(Image.fromarray(synthetic_frame(t)), SIZE)


def _track(backend, prompts, n, trace=None, fixed_shapes=None, num_pathway=3):
    tracker = SAM2LongTracker(backend, TrackerConfig(num_pathway, 0.1, 2.0), fixed_shapes=fixed_shapes)
    return list(tracker.track((_image(t) for t in range(n)), prompts, n, HW, trace=trace))


def _models(checkpoint):
    """(our torch backend, sam2's own SAM2Base) on one checkpoint, separately loaded."""
    from sam2long.engine.torch_backend import TorchBackend

    return (TorchBackend(load_sam2_model(MICRO_CFG, checkpoint).model, "cpu"),
            load_sam2_model(MICRO_CFG, checkpoint).model.eval())


def _sam2_points(points=None, labels=None, box=None):
    """Clicks as SAM2VideoPredictor.add_new_points_or_box hands them to the model: the box as
    two points labelled 2 and 3 first, coordinates scaled from video to model pixels."""
    coords, labs = [], []
    if box is not None:
        coords += [[box[0], box[1]], [box[2], box[3]]]
        labs += [2, 3]
    if points is not None:
        coords += [list(p) for p in points]
        labs += [1] * len(points) if labels is None else list(labels)
    scale = torch.tensor([SIZE / HW[1], SIZE / HW[0]])
    return {"point_coords": torch.tensor([coords], dtype=torch.float32) * scale,
            "point_labels": torch.tensor([labs], dtype=torch.int32)}


@torch.inference_mode()
def _sam2_first_two_frames(model, start, num_frames, points=None, mask=None):
    """sam2's own modules on the prompt frame, then one tracking step with only that frame's
    memory: the low-res logits of both frames, and the second frame's best predicted IoU
    and object-score logit."""
    outputs = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    heads = []  # what each call of the SAM heads returned
    sam_heads = model._forward_sam_heads
    model._forward_sam_heads = lambda *a, **k: heads.append(sam_heads(*a, **k)) or heads[-1]
    low = []
    try:
        for t, is_prompt in ((start, True), (start + 1, False)):
            _, feats, pos, sizes = model._prepare_backbone_features(model.forward_image(_image(t)))
            out = model.track_step(t, is_prompt, feats, pos, sizes,
                                   points if is_prompt and mask is None else None,
                                   mask if is_prompt else None, outputs, num_frames)
            if is_prompt:  # the video predictor re-encodes the prompt frame's memory from its
                # low-res output upsampled to the model's size (for mask prompts that differs)
                high = F.interpolate(out["pred_masks"], size=(SIZE, SIZE), mode="bilinear",
                                     align_corners=False)
                out["maskmem_features"], out["maskmem_pos_enc"] = model._encode_new_memory(
                    feats, sizes, high, out["object_score_logits"], is_mask_from_pts=mask is None)
            # SAM2VideoPredictor stores memory features in bfloat16.
            out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
            outputs["cond_frame_outputs" if is_prompt else "non_cond_frame_outputs"][t] = out
            low.append(out["pred_masks"][0, 0].float().numpy())
    finally:
        del model._forward_sam_heads
    ious, score = heads[-1][2], heads[-1][6]
    return low, float(ious.max()), float(score)


def _sam2_mask(mask):
    """A mask prompt as SAM2VideoPredictor.add_new_mask hands it to the model: resized to the
    model's input with antialiasing, then binarised at 0.5."""
    m = torch.from_numpy(mask)[None, None].float()
    return (F.interpolate(m, size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                          antialias=True) >= 0.5).float()


PROMPTS = {
    "two clicks": (0, dict(points=[[40.0, 60.0], [120.0, 20.0]], labels=[1, 0])),
    "box": (1, dict(box=[15.0, 42.0, 65.0, 78.0])),
    "one click": (0, dict(points=[[40.0, 60.0]])),  # multimask: the best predicted IoU wins
    "box and click": (2, dict(box=[20.0, 40.0, 80.0, 90.0], points=[[50.0, 62.0]])),
    "mask": (1, dict(mask=True)),  # logits +-10 at the prompt frame, as SAM 2
}


@pytest.mark.parametrize("weights", ["plain", "lively"])
def test_click_and_box_prompts_match_sam2(micro_checkpoints, weights):
    """Several objects with click and box prompts on different frames: every object's prompt
    frame and first tracked frame equal sam2's own track_step on that object alone. With the
    plain weights every object is present (real logits to compare); the lively weights also
    give absent objects (-1024) and the answer must follow."""
    backend, model = _models(micro_checkpoints[weights])
    n = 4
    prompts = [ObjectPrompt(i + 1, start, points=None if "points" not in kw else np.array(kw["points"]),
                            labels=None if "labels" not in kw else np.array(kw["labels"]),
                            box=None if "box" not in kw else np.array(kw["box"]),
                            mask=synthetic_mask(start) if "mask" in kw else None)
               for i, (start, kw) in enumerate(PROMPTS.values())]
    trace = {}
    out = _track(backend, prompts, n, trace)
    assert [r.obj_ids for r in out] == [[1, 3], [1, 2, 3, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]
    scores = []
    for (name, (start, kw)), prompt in zip(PROMPTS.items(), prompts):
        if "mask" in kw:
            reference = _sam2_first_two_frames(model, start, n, mask=_sam2_mask(synthetic_mask(start)))
        else:
            reference = _sam2_first_two_frames(model, start, n, _sam2_points(**kw))
        want, iou, score = reference
        first = trace[prompt.obj_id][0]  # the first tracked frame: one slot
        assert first.frame_idx == start + 1
        assert abs(first.ious[0] - iou) < 1e-4 and abs(first.obj_scores[0] - score) < 1e-4, name
        scores.append(score)
        for t, expected in zip((start, start + 1), want):
            got = out[t].low_res_logits[out[t].obj_ids.index(prompt.obj_id)]
            if weights == "plain":
                assert (expected > 0).sum() > 100 and (expected < 0).sum() > 100, (name, t)
            np.testing.assert_allclose(got, expected, atol=2e-3, err_msg=f"{name}, frame {t}")
    if weights == "lively":
        assert min(scores) < 0 < max(scores)  # present and absent objects both checked


@pytest.mark.parametrize("fixed_shapes", [False, True], ids=["dedupe", "fixed"])
def test_accumulated_scores_start_at_zero_and_add_the_kept_log_iou(lively_backend, fixed_shapes):
    """The first tracked frame after each prompt is plain SAM 2: every slot's accumulated score
    is 0 (not the selection's score). From then on each slot's score is its parent's plus
    log(kept IoU + 1e-5), so the frame after it holds exactly log(IoU + 1e-5)."""
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)),
               ObjectPrompt(2, 3, mask=synthetic_mask(3) & (np.arange(160) < 60)[None, :])]
    trace = {}
    _track(lively_backend, prompts, 9, trace, fixed_shapes)
    for obj, start in ((1, 0), (2, 3)):
        rows = trace[obj]
        assert [r.frame_idx for r in rows] == list(range(start + 1, 9))
        first = rows[0]
        np.testing.assert_array_equal(first.acc, np.zeros(3))
        assert np.isfinite(first.ious[0]) and np.isnan(first.ious[1:]).all()
        second = rows[1]
        np.testing.assert_allclose(second.acc, np.log(second.ious + 1e-5), rtol=0, atol=1e-12)
        for before, row in zip(rows[1:], rows[2:]):
            gained = row.acc - np.log(row.ious + 1e-5)
            for g in gained:  # some parent's score at the frame before
                assert np.abs(before.acc - g).min() < 1e-9, (obj, row.frame_idx)
            assert np.all(np.diff(row.acc) <= 1e-12) or not _confident(row), row.frame_idx
    assert len({round(a, 6) for r in trace[1] for a in r.acc}) > 3  # the scores really vary


def _confident(row):
    return np.nanmax(np.abs(row.obj_scores)) > 2.0



def test_copies_are_computed_once_and_decided_at_once(lively_backend):
    """With uncertainty 0 every frame is confident and its P best candidates are copies of
    one (equal scores, stable order): each frame runs one row, not P, its answer is out before
    the next frame is read, and it is the one-pathway answer."""
    rows, consumed = [], []
    attend = lively_backend.attend_memory

    def counting(feat, memory, *args, **kwargs):
        rows.append(memory.mem_feats.shape[0])
        return attend(feat, memory, *args, **kwargs)

    def frames(n):
        for t in range(n):
            consumed.append(t)
            yield _image(t)

    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0))]
    lively_backend.attend_memory = counting
    try:
        tracker = SAM2LongTracker(lively_backend, TrackerConfig(3, 0.1, 0.0))
        out = []
        for result in tracker.track(frames(6), prompts, 6, HW):
            assert len(consumed) <= result.frame_idx + 1, result.frame_idx  # decided at once
            out.append(result)
    finally:
        del lively_backend.attend_memory
    assert rows == [1] * 5
    single = SAM2LongTracker(lively_backend, TrackerConfig(1, 0.1, 0.0))
    for a, b in zip(out, single.track((_image(t) for t in range(6)), prompts, 6, HW)):
        np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)


def test_the_best_predicted_iou_wins_also_when_it_is_not_the_first_mask(micro_checkpoints):
    """Random weights always rank mask 0 first; here the IoU head is biased towards mask 2,
    so a one-click prompt and the first tracked frame must pick mask 2, as sam2 does."""
    from sam2long.engine.torch_backend import TorchBackend

    def biased():
        model = load_sam2_model(MICRO_CFG, micro_checkpoints["plain"]).model.eval()
        with torch.no_grad():
            model.sam_mask_decoder.iou_prediction_head.layers[-1].bias[3] += 5.0  # token 3: mask 2
        return model

    backend, model = TorchBackend(biased(), "cpu"), biased()
    prompt = PROMPTS["one click"][1]
    out = _track(backend, [ObjectPrompt(1, 0, points=np.array(prompt["points"]))], 2)
    want, iou, _ = _sam2_first_two_frames(model, 0, 2, _sam2_points(**prompt))
    for t in (0, 1):
        np.testing.assert_allclose(out[t].low_res_logits[0], want[t], atol=2e-3, err_msg=f"frame {t}")
    assert iou > 0.9  # the biased mask really won
