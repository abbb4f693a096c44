"""The tracker against references that do not share its code: sam2's own SAM2Base.track_step
for the prompt frame and the plain SAM 2 step after it (SAM2LONG_ALGORITHM.md, "Frames s and
s+1"), and the accumulated-score rule read back from the trace. No parity fixture needed."""

import numpy as np
import pytest
import torch
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
def _sam2_first_two_frames(model, start, num_frames, points):
    """sam2's own modules on the prompt frame, then one tracking step with only that frame's
    memory: the low-res logits of both frames."""
    outputs = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    low = []
    for t, is_prompt in ((start, True), (start + 1, False)):
        _, feats, pos, sizes = model._prepare_backbone_features(model.forward_image(_image(t)))
        out = model.track_step(t, is_prompt, feats, pos, sizes, points if is_prompt else None, None,
                               outputs, num_frames)
        # SAM2VideoPredictor stores memory features in bfloat16.
        out["maskmem_features"] = out["maskmem_features"].to(torch.bfloat16)
        outputs["cond_frame_outputs" if is_prompt else "non_cond_frame_outputs"][t] = out
        low.append(out["pred_masks"][0, 0].float().numpy())
    return low


PROMPTS = {
    "two clicks": (0, dict(points=[[40.0, 60.0], [120.0, 20.0]], labels=[1, 0])),
    "box": (1, dict(box=[15.0, 42.0, 65.0, 78.0])),
    "one click": (0, dict(points=[[40.0, 60.0]])),  # multimask: the best predicted IoU wins
    "box and click": (2, dict(box=[20.0, 40.0, 80.0, 90.0], points=[[50.0, 62.0]])),
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
                            box=None if "box" not in kw else np.array(kw["box"]))
               for i, (start, kw) in enumerate(PROMPTS.values())]
    out = _track(backend, prompts, n)
    assert [r.obj_ids for r in out] == [[1, 3], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]]
    for (name, (start, kw)), prompt in zip(PROMPTS.items(), prompts):
        want = _sam2_first_two_frames(model, start, n, _sam2_points(**kw))
        for t, expected in zip((start, start + 1), want):
            got = out[t].low_res_logits[out[t].obj_ids.index(prompt.obj_id)]
            if weights == "plain":
                assert (expected > 0).sum() > 100 and (expected < 0).sum() > 100, (name, t)
            np.testing.assert_allclose(got, expected, atol=2e-3, err_msg=f"{name}, frame {t}")


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

