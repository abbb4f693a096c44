"""A video predictor shaped like sam2's `SAM2VideoPredictor`: the same methods, argument
names and return values, so a notebook written for sam2 runs by changing its import and
builder line:

    from sam2long import build_sam2long_video_predictor
    predictor = build_sam2long_video_predictor(cfg, ckpt, mode="sam2")
    state = predictor.init_state(video_path="frames/")
    _, obj_ids, masks = predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                                        points=[[210, 350]], labels=[1])
    for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
        ...

`mode="sam2"` is plain SAM 2 (its memory of the last frames, several conditioning frames,
corrections, reverse propagation), with sam2's own masks; `mode="sam2long"` tracks with
SAM2Long's memory tree (README "Python API" says what it takes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from sam2long.engine.errors import ConfigError, SAM2LongError
from sam2long.engine.stages import StageBackend
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.interactive import (
    PREV_LOGIT_CLAMP,
    InferenceSession,
    ObjectTrack,
    PostProcessing,
    Sam2Stepper,
    empty_masks,
    video_res,
)
from sam2long.runtime.memory_bank import Sam2Rules

MODES = ("sam2long", "sam2")


class SessionError(SAM2LongError, ValueError):
    """A call that does not fit the session (a frame beyond the video, an unknown object,
    nothing to track); the message says which and what exists."""


class SAM2LongVideoPredictor:
    """Interactive tracking on any backend. Every method takes the session returned by
    `init_state` (an `InferenceSession`) first, as sam2's methods take `inference_state`."""

    def __init__(self, backend: StageBackend, rules: Sam2Rules, mode: str = "sam2long",
                 tracker_config: TrackerConfig | None = None, post: PostProcessing | None = None):
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r}: choose from {MODES}")
        self.backend = backend
        self.mode = mode
        self.device = backend.device
        self.image_size = backend.geometry.image_size
        self.tracker_config = tracker_config or TrackerConfig()
        self.post = post or PostProcessing()
        self._sam2 = Sam2Stepper(backend, rules, self.post)

    # -- sessions --------------------------------------------------------------------
    def init_state(self, video_path, offload_video_to_cpu: bool = False, offload_state_to_cpu: bool = False,
                   async_loading_frames: bool = False) -> InferenceSession:
        """Read the video (a file or a folder of frames) once, resized to the model's input.
        The offload / async flags are accepted for sam2 compatibility: frames always stay
        on the host, resized (a twelfth of sam2's float copy), and are read at once."""
        from PIL import Image

        from sam2long.runtime.video_io import VideoSource

        source = VideoSource(str(video_path))
        size = self.image_size
        frames = np.stack([np.asarray(Image.fromarray(rgb).resize((size, size))) for rgb in source.frames()])
        session = InferenceSession(str(video_path), frames, source.info.height, source.info.width, self.device)
        self._sam2.features(session, 0)  # as sam2: frame 0's features are ready for the first click
        return session

    def reset_state(self, inference_state: InferenceSession) -> None:
        """Forget every object, prompt and result (the video stays loaded)."""
        inference_state.objects.clear()
        for run in inference_state.tree_runs.values():
            run.store.discard()
        inference_state.tree_runs.clear()

    # -- prompts ---------------------------------------------------------------------
    @torch.inference_mode()
    def add_new_points_or_box(self, inference_state: InferenceSession, frame_idx: int, obj_id: int,
                              points=None, labels=None, clear_old_points: bool = True,
                              normalize_coords: bool = True, box=None):
        """Clicks (label 1 positive, 0 negative) and/or a box x0 y0 x1 y1 on a frame, in video
        pixels (or in [0, 1] with normalize_coords=False) -> (frame_idx, obj_ids,
        video_res_masks [objects, 1, H, W] logits)."""
        s = inference_state
        self._check_frame(s, frame_idx)
        if (points is not None) != (labels is not None):
            raise SessionError("points and labels must be provided together")
        if points is None and box is None:
            raise SessionError("at least one of points or box must be provided as input")
        if box is not None and not clear_old_points:
            raise SessionError("a box must come before any click: use clear_old_points=True with a box")
        pts = torch.zeros(0, 2) if points is None else torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
        lab = torch.zeros(0, dtype=torch.int32) if labels is None else \
            torch.as_tensor(labels, dtype=torch.int32).reshape(-1)
        if len(pts) != len(lab):
            raise SessionError(f"{len(pts)} points but {len(lab)} labels: give one label per point")
        if box is not None:
            corners = torch.as_tensor(box, dtype=torch.float32).reshape(2, 2)
            pts = torch.cat((corners, pts))
            lab = torch.cat((torch.tensor([2, 3], dtype=torch.int32), lab))
        if normalize_coords:
            pts = pts / torch.tensor([s.video_width, s.video_height])
        pts = pts * self.image_size
        obj = self._object(s, obj_id, create=True)
        if not clear_old_points and frame_idx in obj.points:
            old_pts, old_lab = obj.points[frame_idx]
            pts, lab = torch.cat((old_pts, pts)), torch.cat((old_lab, lab))
        obj.points[frame_idx] = (pts, lab)
        obj.masks.pop(frame_idx, None)
        return self._prompted(s, obj, frame_idx, points=True)

    add_new_points = add_new_points_or_box  # sam2's deprecated name

    @torch.inference_mode()
    def add_new_mask(self, inference_state: InferenceSession, frame_idx: int, obj_id: int, mask):
        """A mask (bool [H, W], any size: resized to the model's input) for an object on a
        frame -> (frame_idx, obj_ids, video_res_masks)."""
        s = inference_state
        self._check_frame(s, frame_idx)
        mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask).to(torch.bool)
        if mask.dim() != 2:
            raise SessionError(f"a mask is 2-D [H, W], got shape {tuple(mask.shape)}")
        if not mask.any():
            raise SessionError(f"object {obj_id}: the mask on frame {frame_idx} is empty "
                               "(to take back a prompt, use clear_all_prompts_in_frame)")
        m = mask[None, None].float().to(self.device)
        size = self.image_size
        if m.shape[-2:] != (size, size):
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        obj = self._object(s, obj_id, create=True)
        obj.masks[frame_idx] = m
        obj.points.pop(frame_idx, None)
        return self._prompted(s, obj, frame_idx, points=False)

    def _prompted(self, s: InferenceSession, obj: ObjectTrack, frame_idx: int, points: bool):
        is_init = frame_idx not in obj.tracked
        reverse = obj.tracked.get(frame_idx, False)
        is_cond = is_init or self._sam2.rules.add_all_frames_to_correct_as_cond
        if self.mode == "sam2long":
            # The tree: every prompt frame conditions; a click is decoded on the frame's own
            # features, the mask it shows going back in (runtime/sam2long_session.py).
            is_init = is_cond = True
        temp = obj.temp_cond if is_cond else obj.temp_non_cond
        if points:
            # A mask the frame already shows goes back in with the new clicks.
            prev = temp.get(frame_idx) or obj.cond.get(frame_idx) or obj.non_cond.get(frame_idx)
            prev_logits = None if prev is None else prev.masks.clamp(-PREV_LOGIT_CLAMP, PREV_LOGIT_CLAMP)
            out = self._sam2.prompt_points(s, obj, frame_idx, is_init, reverse, prev_logits)
        else:
            out = self._sam2.prompt_mask(s, frame_idx, obj.masks[frame_idx])
        temp[frame_idx] = out
        return frame_idx, s.obj_ids, self._frame_masks(s, frame_idx, temp_cond=is_cond)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(self, inference_state: InferenceSession, frame_idx: int, obj_id: int,
                                   need_output: bool = True):
        """Take back an object's prompts on a frame; a prompted frame becomes an ordinary
        tracked frame (its mask stays until the next propagation recomputes it)."""
        s = inference_state
        self._check_frame(s, frame_idx)
        obj = self._object(s, obj_id)
        self._clear_frame(obj, frame_idx)
        if not need_output:
            return None
        temp_cond = any(frame_idx in o.temp_cond for o in s.objects.values())
        return frame_idx, s.obj_ids, self._frame_masks(s, frame_idx, temp_cond)

    @staticmethod
    def _clear_frame(obj: ObjectTrack, frame_idx: int):
        obj.points.pop(frame_idx, None)
        obj.masks.pop(frame_idx, None)
        obj.temp_cond.pop(frame_idx, None)
        obj.temp_non_cond.pop(frame_idx, None)
        out = obj.cond.pop(frame_idx, None)
        if out is not None:
            obj.non_cond[frame_idx] = out
            obj.tracked.pop(frame_idx, None)

    @torch.inference_mode()
    def remove_object(self, inference_state: InferenceSession, obj_id: int, strict: bool = False,
                      need_output: bool = True):
        """Drop an object -> (remaining obj_ids, [(frame_idx, video_res_masks)] for the frames
        it had prompts on). An unknown id is an error with strict=True, else nothing."""
        s = inference_state
        if obj_id not in s.objects:
            if strict:
                raise SessionError(f"cannot remove object {obj_id}: the session's objects are {s.obj_ids}")
            return s.obj_ids, []
        if len(s.objects) == 1:
            self.reset_state(s)
            return s.obj_ids, []
        obj = s.objects[obj_id]
        frames = set(obj.points) | set(obj.masks)
        for frame_idx in frames:
            self._clear_frame(obj, frame_idx)
        del s.objects[obj_id]
        updated = []
        if need_output:
            for frame_idx in frames:
                temp_cond = any(frame_idx in o.temp_cond for o in s.objects.values())
                updated.append((frame_idx, self._frame_masks(s, frame_idx, temp_cond)))
        return s.obj_ids, updated

    # -- propagation -----------------------------------------------------------------
    @torch.inference_mode()
    def propagate_in_video(self, inference_state: InferenceSession, start_frame_idx: int | None = None,
                           max_frame_num_to_track: int | None = None,
                           reverse: bool = False) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Track every object from `start_frame_idx` (default: the first prompted frame)
        forward or backward over at most `max_frame_num_to_track` more frames, yielding
        (frame_idx, obj_ids, video_res_masks [objects, 1, H, W] logits) per frame."""
        s = inference_state
        self._preflight(s)
        if start_frame_idx is None:
            start_frame_idx = min(t for o in s.objects.values() for t in o.cond)
        self._check_frame(s, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = s.num_frames
        if max_frame_num_to_track < 0:
            raise SessionError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, s.num_frames - 1)
            order = range(start_frame_idx, end + 1)
        if self.mode == "sam2long":
            yield from self._propagate_tree(s, order, reverse)
            return
        objs = list(s.objects.values())
        for frame_idx in order:
            to_track = [o for o in objs if frame_idx not in o.cond]
            outputs = dict(zip((o.obj_id for o in to_track),
                               self._sam2.track(s, to_track, frame_idx, reverse) if to_track else []))
            masks = []
            for o in objs:
                if o.obj_id in outputs:
                    o.non_cond[frame_idx] = outputs[o.obj_id]
                    masks.append(outputs[o.obj_id].masks)
                else:
                    masks.append(o.cond[frame_idx].masks)
                o.tracked[frame_idx] = reverse
            yield frame_idx, s.obj_ids, video_res(torch.cat(masks), s)

    def _preflight(self, s: InferenceSession):
        """Prompted frames get their memory (from the masks the user saw) and join the
        object's memory: first prompt frames as conditioning frames, corrections as
        ordinary ones."""
        if not s.objects:
            raise SessionError("no object has a prompt yet: add points, a box or a mask first")
        for obj in s.objects.values():
            for temp, table in ((obj.temp_non_cond, obj.non_cond), (obj.temp_cond, obj.cond)):
                for frame_idx, out in temp.items():
                    if out.feat is None:
                        self._sam2.encode_prompted(s, frame_idx, out)
                    table[frame_idx] = out
                temp.clear()
            if not obj.cond:
                raise SessionError(f"object {obj.obj_id} has no prompt: add points, a box or a mask "
                                   "for it, or remove it")
            for frame_idx in obj.cond:
                obj.non_cond.pop(frame_idx, None)

    def _propagate_tree(self, s: InferenceSession, order: range, reverse: bool):
        from sam2long.runtime.sam2long_session import propagate_tree

        yield from propagate_tree(self.backend, self.tracker_config, s, order, reverse,
                                  self._sam2.rules.max_cond_frames_in_attn)

    # -- helpers ---------------------------------------------------------------------
    def _frame_masks(self, s: InferenceSession, frame_idx: int, temp_cond: bool) -> torch.Tensor:
        """Every object's newest mask on a frame at video resolution (absent: -1024)."""
        out = empty_masks(len(s.objects), s.video_height, s.video_width, self.device)
        for i, obj in enumerate(s.objects.values()):
            found = obj.output(frame_idx, temp_cond)
            if found is not None:
                out[i:i + 1] = video_res(found.masks, s)
        return out

    @staticmethod
    def _check_frame(s: InferenceSession, frame_idx):
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise SessionError(f"frame_idx must be an integer, got {frame_idx!r}")
        if not 0 <= frame_idx < s.num_frames:
            raise SessionError(f"frame {frame_idx} is beyond the video: it has frames 0..{s.num_frames - 1}")

    @staticmethod
    def _object(s: InferenceSession, obj_id, create: bool = False) -> ObjectTrack:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise SessionError(f"obj_id must be an integer, got {obj_id!r}")
        obj_id = int(obj_id)
        if obj_id not in s.objects:
            if not create:
                raise SessionError(f"unknown object id {obj_id}: the session's objects are {s.obj_ids}")
            s.objects[obj_id] = ObjectTrack(obj_id)
        return s.objects[obj_id]


def build_sam2long_video_predictor(config_file: str, ckpt_path: str, device: str = "cpu",
                                   backend: str = "torch", mode: str = "sam2long", num_pathway: int = 3,
                                   iou_thre: float = 0.1, uncertainty: float = 2.0, precision: str = "fp32",
                                   engine_dir: str | None = None,
                                   apply_postprocessing: bool | None = None,
                                   add_all_frames_to_correct_as_cond: bool | None = None) -> SAM2LongVideoPredictor:
    """A predictor over `backend` ("torch", "onnx" with `engine_dir`, "trt", or "auto" as the
    tools' --backend auto: on a CPU each stage in the faster library), in `mode`
    "sam2long" (the memory tree: num_pathway, iou_thre, uncertainty) or "sam2" (plain
    SAM 2). `apply_postprocessing` as sam2's builder: an unstable single mask falls back
    to the best of three, clicked masks enter memory binarised, small holes are filled.
    Its default (None) is sam2's builder's in mode "sam2" (on) and the original SAM2Long's
    in mode "sam2long" (off: the batch tools' masks). `add_all_frames_to_correct_as_cond`
    (default: the config's, else off as in sam2) makes a click on a tracked frame a
    conditioning frame, so that re-tracking through it keeps the correction (mode "sam2long"
    always does: runtime/sam2long_session.py)."""
    from sam2long.engine.factory import build_auto_backend, build_backend

    if mode not in MODES:
        raise ConfigError(f"mode {mode!r}: choose from {MODES}")
    tracker_config = TrackerConfig(num_pathway, iou_thre, uncertainty)
    post = PostProcessing()
    if apply_postprocessing is None:
        apply_postprocessing = mode == "sam2"
    if backend == "auto":
        # sam2's post-processing binarises clicked masks in torch's memory encoder.
        stage_backend = build_auto_backend(config_file, ckpt_path, device, engine_dir, precision,
                                           torch_stages=("memory",) if apply_postprocessing else ())
    else:
        stage_backend = build_backend(backend, config_file, ckpt_path, device, engine_dir, precision)
    if apply_postprocessing:
        post = PostProcessing(dynamic_multimask=True, fill_hole_area=8)
        encoder = getattr(stage_backend, "memory_encoder", None)
        if encoder is None or not hasattr(encoder, "binarize_prompt_masks"):
            raise ConfigError(f"apply_postprocessing=True needs backend='torch' (the {backend} graphs "
                              "encode clicked masks without binarising them); pass apply_postprocessing=False")
        encoder.binarize_prompt_masks = True
    rules = Sam2Rules.from_config_file(config_file)
    if add_all_frames_to_correct_as_cond is not None:
        rules = replace(rules, add_all_frames_to_correct_as_cond=bool(add_all_frames_to_correct_as_cond))
    return SAM2LongVideoPredictor(stage_backend, rules, mode, tracker_config, post)
