"""Propagation of an interactive session with SAM2Long's memory tree: the batch tracker
itself (runtime/tracker.py), started from the prompt-frame outputs the user saw.

Today this takes one prompt frame per object and tracks forward; the predictor refuses
prompts on several frames, corrections and reverse propagation in this mode with a clear
message (README "Python API").
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from sam2long.engine.errors import SAM2LongError
from sam2long.engine.stages import ImageFeatures, StageBackend
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import IMAGENET_MEAN, IMAGENET_STD
from sam2long.runtime.interactive import InferenceSession, empty_masks, video_res
from sam2long.runtime.memory_bank import StoredFrame
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker


class _PromptedTracker(SAM2LongTracker):
    """The tracker, with each object's start frame taken from the session (the mask the
    user saw after their clicks, refinements included) instead of decoded again."""

    def __init__(self, backend, config, starts: list[StoredFrame]):
        super().__init__(backend, config)
        self._starts = starts

    def _start_object(self, s, obj: int, feats: ImageFeatures, video_hw) -> np.ndarray:
        out = self._starts[obj]
        s.bank.set_condition(obj, out.feat.to(self.device), out.ptr, s.prompts[obj].frame_idx)
        s.copy_class[obj] = 0
        s.acc[obj] = 0
        return out.masks[0, 0].float().cpu().numpy()


def _frames(s: InferenceSession) -> Iterator[torch.Tensor]:
    for rgb in s.frames:
        resized = torch.from_numpy(rgb / 255.0).permute(2, 0, 1).float()
        yield ((resized - IMAGENET_MEAN) / IMAGENET_STD)[None]


def propagate_tree(backend: StageBackend, config: TrackerConfig, s: InferenceSession, order: range,
                   reverse: bool) -> Iterator[tuple[int, list[int], torch.Tensor]]:
    """Frames of `order` (forward) as (frame_idx, obj_ids, video_res_masks), from one
    tree run over the video; an object shows -1024 before its prompt frame."""
    if reverse:
        raise SAM2LongError("mode 'sam2long' propagates forward only for now: use mode='sam2' "
                            "for reverse propagation")
    objs = list(s.objects.values())
    if any(len(o.cond) != 1 for o in objs):
        raise SAM2LongError("mode 'sam2long' takes one prompt frame per object")
    starts = [next(iter(o.cond.items())) for o in objs]
    hw = (s.video_height, s.video_width)
    # The prompt's content is the session's (see _PromptedTracker); this only places it.
    prompts = [ObjectPrompt(o.obj_id, t, mask=np.ones(hw, bool)) for o, (t, _) in zip(objs, starts)]
    tracker = _PromptedTracker(backend, config, [out for _, out in starts])
    wanted = set(order)
    last = max(order, default=-1)
    results = tracker.track(_frames(s), prompts, s.num_frames, hw)
    try:
        for result in results:
            if result.frame_idx > last:
                break
            for o in objs:
                o.tracked[result.frame_idx] = False
            if result.frame_idx not in wanted:
                continue
            masks = empty_masks(len(objs), s.video_height, s.video_width, backend.device)
            low = torch.from_numpy(result.low_res_logits)[:, None].to(backend.device)
            rows = [s.obj_ids.index(i) for i in result.obj_ids]
            if rows:
                masks[rows] = video_res(low, s)
            yield result.frame_idx, s.obj_ids, masks
    finally:
        results.close()
