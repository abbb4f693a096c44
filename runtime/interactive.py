"""Interactive sessions: prompts on any frame, for any object, at any time, and propagation
forward or backward, as SAM 2's video predictor does (DESIGN.md "Interactive sessions").

This module owns a session's state (typed, explicit about devices) and the per-frame
steps of plain SAM 2 on the four stages of any backend; the memory each frame attends to
is the memory bank's plain SAM 2 policy (runtime/memory_bank.py `sam2_memory`). The
public face, with sam2's method names, is `sam2long.predictor`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sam2long.engine.graph_backend import ProfileError
from sam2long.engine.stages import DecoderOutput, ImageFeatures, StageBackend
from sam2long.engine.torch_stages import NO_OBJ_SCORE
from sam2long.runtime.frames import normalize_frame
from sam2long.runtime.memory_bank import Sam2Rules, StoredFrame, memory_key, sam2_memory, stack_sam2_memory
from sam2long.runtime.postprocess import fill_small_holes
from sam2long.runtime.tracker import PROMPT_LOGIT

PREV_LOGIT_CLAMP = 32.0  # SAM 2 clamps a previous mask's logits before feeding them back
FEATURE_CACHE = 4  # image features kept for repeated clicks on a few frames


@dataclass(frozen=True)
class PostProcessing:
    """What sam2's `build_sam2_video_predictor(apply_postprocessing=True)` adds."""

    dynamic_multimask: bool = False  # an unstable single mask falls back to the best of three
    stability_delta: float = 0.05
    stability_thresh: float = 0.98
    fill_hole_area: int = 0  # background holes up to this area (low-res pixels) filled


@dataclass
class ObjectTrack:
    """One object: its prompts per frame and its outputs (sam2's per-object dicts)."""

    obj_id: int
    points: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # [N, 2] image px, [N]
    masks: dict[int, torch.Tensor] = field(default_factory=dict)  # [1, 1, S, S] float mask prompts
    cond: dict[int, StoredFrame] = field(default_factory=dict)
    non_cond: dict[int, StoredFrame] = field(default_factory=dict)
    # Outputs of prompts since the last propagation, not yet memory-encoded.
    temp_cond: dict[int, StoredFrame] = field(default_factory=dict)
    temp_non_cond: dict[int, StoredFrame] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output(self, frame_idx: int, temp_cond: bool) -> StoredFrame | None:
        """The newest output on a frame, looked up as sam2 consolidates a frame."""
        temp = self.temp_cond if temp_cond else self.temp_non_cond
        for table in (temp, self.cond, self.non_cond):
            if frame_idx in table:
                return table[frame_idx]
        return None


@dataclass
class InferenceSession:
    """A video and everything prompted and tracked on it. `frames` are the resized RGB
    frames (uint8 [N, S, S, 3], on the host); features and memory live on `device`."""

    video_path: str
    frames: np.ndarray
    video_height: int
    video_width: int
    device: torch.device
    objects: OrderedDict[int, ObjectTrack] = field(default_factory=OrderedDict)
    features: OrderedDict[int, ImageFeatures] = field(default_factory=OrderedDict)
    frames_computed: int = 0  # tracking steps run (frames x objects), for tests and benchmarks
    # Mode sam2long: the tree run per direction (reverse?), resumed where prompts change
    # (runtime/sam2long_session.TreeRun).
    tree_runs: dict = field(default_factory=dict, repr=False)
    last_serial: int = 0

    def stamp(self, out: StoredFrame, inputs: tuple | None = None) -> StoredFrame:
        """A new output gets the session's next serial (and what it was computed from)."""
        self.last_serial += 1
        out.serial, out.inputs = self.last_serial, inputs
        return out

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    # Notebooks written for sam2 read a few entries of its state dict; those read the same.
    DICT_KEYS = ("num_frames", "video_height", "video_width", "obj_ids", "device")

    def __getitem__(self, key: str):
        if key not in self.DICT_KEYS:
            raise KeyError(f"{key!r}: this session is typed (sam2long.runtime.interactive."
                           f"InferenceSession); as a dict it reads only {list(self.DICT_KEYS)}")
        return getattr(self, key)


class Sam2Stepper:
    """Plain SAM 2's steps on one backend: a prompt on a frame, a batch of tracked frames,
    memory encoding; each the same computation as sam2 1.1.0's `SAM2VideoPredictor`."""

    def __init__(self, backend: StageBackend, rules: Sam2Rules, post: PostProcessing):
        self.backend = backend
        self.geo = backend.geometry
        self.rules = rules
        self.post = post

    # -- frames ----------------------------------------------------------------------
    def features(self, s: InferenceSession, frame_idx: int) -> ImageFeatures:
        cached = s.features.get(frame_idx)
        if cached is not None:
            s.features.move_to_end(frame_idx)
            return cached
        feats = self.backend.encode_image(normalize_frame(s.frames[frame_idx]).to(self.backend.device))
        s.features[frame_idx] = feats
        while len(s.features) > FEATURE_CACHE:
            s.features.popitem(last=False)
        return feats

    # -- one prompt ------------------------------------------------------------------
    def prompt_points(self, s: InferenceSession, obj: ObjectTrack, frame_idx: int, is_init: bool,
                      reverse: bool, prev_logits: torch.Tensor | None) -> StoredFrame:
        """Clicks (and a box as its two corner points) on a frame: without memory on a first
        prompt frame, with the object's memory on a frame it was tracked on; a previous mask
        on the frame goes in as the mask prompt."""
        feats = self.features(s, frame_idx)
        coords, labels = obj.points[frame_idx]
        if is_init:
            pix = feats.feat + self.backend.no_mem_embed.view(1, -1, 1, 1)
        else:
            pix = self._attend(s, [obj], frame_idx, reverse, feats)
        dev = self.backend.device
        dec = self.backend.decode_masks(pix, feats, coords[None].to(dev), labels[None].to(dev),
                                        mask_logits=prev_logits)
        lo, hi = self.geo.multimask_points
        masks, ptr = self._pick(dec, multimask=lo <= len(labels) <= hi)
        return s.stamp(StoredFrame(self._fill_holes(masks), ptr[0], dec.obj_score[:1]))

    def prompt_mask(self, s: InferenceSession, frame_idx: int, mask: torch.Tensor) -> StoredFrame:
        """A mask prompt is the output as it is (logits +-10); the pointer comes from the
        SAM heads on the frame's own features with the mask as dense prompt."""
        feats = self.features(s, frame_idx)
        high = mask * 2 * PROMPT_LOGIT - PROMPT_LOGIT
        low = F.interpolate(high, size=(self.geo.low_res,) * 2, mode="bilinear",
                            align_corners=False, antialias=True)
        present = bool(mask.any())
        if not present:
            raise ValueError("an empty mask prompt is not supported: clear the frame's prompts instead")
        dec = self.backend.decode_masks(feats.feat, feats, mask_input=mask)
        score = torch.full((1,), PROMPT_LOGIT, device=self.backend.device)
        return s.stamp(StoredFrame(self._fill_holes(low), dec.single_ptr[0], score))

    def encode_prompted(self, s: InferenceSession, frame_idx: int, out: StoredFrame):
        """A prompted frame's memory, from the mask the user saw (run before propagating)."""
        feats = self.features(s, frame_idx)
        mem = self.backend.encode_memory(feats.feat, out.masks, out.score, from_prompt=True)
        out.feat = mem[0].flatten(1).transpose(0, 1).to(torch.bfloat16)

    # -- tracking --------------------------------------------------------------------
    def track(self, s: InferenceSession, objs: list[ObjectTrack], frame_idx: int,
              reverse: bool) -> list[StoredFrame]:
        """One frame for several objects, batched: memory attention, the decoder's best
        of three candidates, memory encoding of the chosen masks. An object whose stored
        output on the frame was tracked from the same memory keeps it: computing it again
        would give the same numbers (after a correction on frame t, frames before it)."""
        rows = self._rows(s, objs, frame_idx, reverse)
        keys = [memory_key(row, reverse) for row in rows]
        outs = [o.non_cond.get(frame_idx) for o in objs]
        todo = [i for i, (out, key) in enumerate(zip(outs, keys)) if out is None or out.inputs != key]
        if not todo:
            return outs
        feats = self.features(s, frame_idx)
        pix = self._attend_rows([rows[i] for i in todo], [objs[i] for i in todo], frame_idx, feats)
        dec = self.backend.decode_masks(pix, feats)
        masks, ptrs = self._pick(dec, multimask=True)
        mem = self.backend.encode_memory(feats.feat, masks, dec.obj_score)
        mem = mem.flatten(2).transpose(1, 2).to(torch.bfloat16)
        s.frames_computed += len(todo)
        for j, i in enumerate(todo):
            outs[i] = s.stamp(StoredFrame(self._fill_holes(masks[j:j + 1]), ptrs[j], dec.obj_score[j:j + 1],
                                          mem[j]), keys[i])
        return outs

    def _rows(self, s, objs, frame_idx, reverse):
        return [sam2_memory(o.cond, o.non_cond, frame_idx, reverse, s.num_frames, self.geo, self.rules)
                for o in objs]

    def _attend(self, s, objs, frame_idx, reverse, feats) -> torch.Tensor:
        return self._attend_rows(self._rows(s, objs, frame_idx, reverse), objs, frame_idx, feats)

    def _attend_rows(self, rows, objs, frame_idx, feats) -> torch.Tensor:
        # Several prompt frames per object give more than M frames (and K pointers): the
        # graph backends take them up to their profiles' limits, beyond which attend_memory
        # is an error naming them (raised before any engine runs).
        memory = stack_sam2_memory(rows, self.geo, self.backend.device)
        try:
            return self.backend.attend_memory(feats.feat, memory)
        except ProfileError as e:
            counts = {o.obj_id: len(o.cond) for o in objs}
            raise ProfileError(f"frame {frame_idx}, prompt frames per object {counts}: {e}") from None

    def _pick(self, dec: DecoderOutput, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """-> masks [B, 1, h, w], pointers [B, C]: the best-IoU candidate and its own
        pointer, or the single-mask token (with post-processing, its mask falls back to the
        best candidate when unstable; the pointer stays the single token's, as in sam2)."""
        rows = torch.arange(dec.ious.shape[0], device=dec.ious.device)
        best = torch.argmax(dec.ious, dim=1)
        if multimask:
            return dec.masks[rows, best][:, None], dec.obj_ptrs[rows, best]
        masks = dec.single_mask
        if self.post.dynamic_multimask:
            flat = masks.flatten(-2)
            inner = (flat > self.post.stability_delta).sum(-1).float()
            outer = (flat > -self.post.stability_delta).sum(-1).float()
            stable = torch.where(outer > 0, inner / outer, 1.0) >= self.post.stability_thresh
            masks = torch.where(stable[..., None, None], masks, dec.masks[rows, best][:, None])
        return masks, dec.single_ptr

    def _fill_holes(self, masks: torch.Tensor) -> torch.Tensor:
        if self.post.fill_hole_area <= 0:
            return masks
        return fill_small_holes(masks, self.post.fill_hole_area)


def video_res(masks: torch.Tensor, s: InferenceSession) -> torch.Tensor:
    """Low-res logits [B, 1, h, w] -> [B, 1, H, W] at the video's size, as sam2 resizes."""
    if masks.shape[-2:] == (s.video_height, s.video_width):
        return masks
    return F.interpolate(masks, size=(s.video_height, s.video_width), mode="bilinear", align_corners=False)


def empty_masks(num: int, height: int, width: int, device) -> torch.Tensor:
    return torch.full((num, 1, height, width), NO_OBJ_SCORE, dtype=torch.float32, device=device)
