"""Propagation of an interactive session with SAM2Long's memory tree: the batch tracker
itself (runtime/tracker.py), started from the prompt-frame outputs the user saw.

The tree with prompts on several frames (the definition README "Python API" gives):

- An object's first prompt frame starts its tree, as in the original. A later prompt frame t
  (a second prompt, or a correction on a tracked frame) acts when the tree reaches t: the
  frames of the object still undecided before t take the lineage of slot 0 at t - 1; frame t
  shows the prompted mask (the one the user saw); its memory joins every pathway's
  conditioning memory, read by every later frame under SAM 2's `max_cond_frames_in_attn`
  (the newest ones); every pathway keeps its own memory otherwise; the accumulated scores
  restart at 0. A prompt is not seen by the frames the tree passed before reaching it
  (SAM 2 attends to later conditioning frames too; the tree does not, so that a correction
  stays local and the batch tracker, reading the video once, can do the same).
- So a correction on frame t changes frames >= t and, of the frames before t, only those
  still undecided at t - 1. Propagating after it resumes from the tree's state at t - 1 (a
  snapshot per frame: the banks' small tensors, copy classes, scores and lineages, with each
  memory entry's features stored once by entry id, all on the host in a spill store: RAM
  up to a budget, then a temporary file) and tracks frames t + 1 on only; masks are the
  same as a fresh run with the same prompts.
- Reverse propagation is the same tree on the video read backward: frame t is frame
  num_frames - 1 - t of the mirror, an object starts at its last prompt frame and its earlier
  prompt frames are later ones there. Forward and reverse runs are kept apart; each shows
  its frames as it computes them.

A click on a frame is decoded on the frame's own features, with the mask the frame shows
going back in as the mask prompt (the tree has no single memory to condition it on).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from sam2long.engine.stages import ImageFeatures, StageBackend
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import normalize_frame
from sam2long.runtime.interactive import InferenceSession, empty_masks, video_res
from sam2long.runtime.memory_bank import StoredFrame
from sam2long.runtime.spill import Held, SpillStore
from sam2long.runtime.tracker import SAM2LongTracker


class KeepStore(SpillStore):
    """A spill store whose arrays live as long as the session's tree run: snapshots of
    earlier frames still refer to masks a later frame has emitted (RAM up to the budget,
    then a temporary file)."""

    def release(self, held: Held):
        pass

    def take(self, held: Held) -> np.ndarray:
        return self.get(held)

    def close(self):
        pass  # the run owns the store; its file goes with it

    def discard(self):
        super().close()


@dataclass
class _Snapshot:
    """The tree after one frame (before its masks were emitted), per object id."""

    bank: dict[int, dict[str, torch.Tensor]]
    copy_class: dict[int, torch.Tensor]
    acc: dict[int, torch.Tensor]
    pending: dict[int, list]
    decided: dict[int, list]
    next_id: int
    next_emit: int


@dataclass
class TreeRun:
    """One direction's tree over a session, kept between propagations: frames are indexed
    in tracking order (the mirror's for reverse)."""

    config: tuple
    conds: dict[int, dict[int, int]] = field(default_factory=dict)  # obj id -> {frame: prompt serial}
    snapshots: dict[int, _Snapshot] = field(default_factory=dict)
    outputs: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # frame -> obj id -> logits
    # Memory entry id -> its [HW, Cm] bfloat16 features (as int16 bits), in the store: RAM up
    # to its budget, then its temporary file.
    features: dict[int, Held] = field(default_factory=dict)
    store: KeepStore = field(default_factory=KeepStore)

    def keep_feature(self, entry_id: int, feat: torch.Tensor):
        self.features[entry_id] = self.store.put(feat.detach().to("cpu").view(torch.int16).numpy().copy())

    def feature(self, entry_id: int) -> torch.Tensor:
        return torch.from_numpy(self.store.get(self.features[entry_id])).view(torch.bfloat16)


def _first_change(old: dict[int, dict[int, int]], new: dict[int, dict[int, int]]) -> float:
    """The first frame whose prompts differ, over objects in both runs or new (an object
    gone changes no other's frames)."""
    first = float("inf")
    for obj_id, frames in new.items():
        before = old.get(obj_id, {})
        changed = [t for t in set(frames) | set(before) if frames.get(t) != before.get(t)]
        if changed:
            first = min(first, min(changed))
    return first


class _PromptedTracker(SAM2LongTracker):
    """The tracker, with each prompt frame's output taken from the session (the mask the
    user saw after their clicks, refinements included) instead of decoded again, and a
    snapshot of the tree after every frame."""

    def __init__(self, backend, config, run: TreeRun, max_cond_frames_in_attn: int,
                 session: InferenceSession):
        super().__init__(backend, config, max_cond_frames_in_attn=max_cond_frames_in_attn)
        self._run_state = run
        self._session = session
        self._fresh_from = 0  # entry ids from here on are not stored yet

    def _spill_store(self):
        return self._run_state.store

    def _condition(self, s, obj: int, t: int, feats: ImageFeatures, video_hw):
        out: StoredFrame = s.conds[obj][t]
        return out.masks[0, 0].float().cpu().numpy(), out.feat.to(self.device), out.ptr

    def _track_active(self, s, t, feats, active):
        self._session.frames_computed += len(active)
        super()._track_active(s, t, feats, active)

    def _frame_done(self, s, t: int):
        if t < min(s.starts):
            return
        run, bank = self._run_state, s.bank
        started = [obj for obj, start in enumerate(s.starts) if start <= t]
        for obj in started:
            for entry_id, feat in bank.entries(obj).items():
                if entry_id >= self._fresh_from:
                    run.keep_feature(entry_id, feat)
        next_id = int(bank.next_id)
        self._fresh_from = next_id
        ids = s.obj_ids
        run.snapshots[t] = _Snapshot(
            bank={ids[o]: bank.object_state(o) for o in started},
            copy_class={ids[o]: s.copy_class[o].cpu().clone() for o in started},
            acc={ids[o]: s.acc[o].cpu().clone() for o in started},
            pending={ids[o]: s.lineages[o].snapshot() for o in started},
            decided={ids[o]: list(s.decided[o]) for o in started},
            next_id=next_id, next_emit=s.next_emit)

    def resume(self, objects, num_frames: int, snap: _Snapshot | None, first: int):
        """A tracker session for `objects` as the tree stood after frame first - 1."""
        s = self._session_for(objects, num_frames, None)
        if snap is None:
            return s
        run = self._run_state
        for obj, obj_id in enumerate(s.obj_ids):
            if obj_id not in snap.bank:
                continue
            s.bank.restore_object(obj, snap.bank[obj_id], run.feature)
            s.copy_class[obj] = snap.copy_class[obj_id].to(self.device)
            s.acc[obj] = snap.acc[obj_id].to(self.device)
            s.lineages[obj].restore(snap.pending[obj_id])
            s.decided[obj].extend(snap.decided[obj_id])
        s.bank.next_id.fill_(snap.next_id)
        self._fresh_from = snap.next_id
        s.next_emit = snap.next_emit
        s.frames_seen = first
        return s


def propagate_tree(backend: StageBackend, config: TrackerConfig, s: InferenceSession, order: range,
                   reverse: bool, max_cond_frames_in_attn: int = -1
                   ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
    """Frames of `order` as (frame_idx, obj_ids, video_res_masks), from the session's tree run
    in that direction, resumed where its prompts last changed; an object shows -1024 on
    frames its tree has not reached."""
    n = s.num_frames

    def mirror(t: int) -> int:  # frame index <-> tracking order
        return n - 1 - t if reverse else t

    objs = list(s.objects.values())
    conds = {o.obj_id: {mirror(t): out for t, out in o.cond.items()} for o in objs}
    key = {i: {t: out.serial for t, out in c.items()} for i, c in conds.items()}
    settings = (config, max_cond_frames_in_attn)
    run = s.tree_runs.get(reverse)
    if run is None or run.config != settings:
        if run is not None:
            run.store.discard()
        run = s.tree_runs[reverse] = TreeRun(settings)
    first = min(_first_change(run.conds, key), max(run.snapshots, default=-1) + 1)
    snap = run.snapshots.get(first - 1)
    if snap is None:
        first = 0
    emitted = snap.next_emit if snap is not None else 0
    for t in [t for t in run.snapshots if t >= first]:
        del run.snapshots[t]
    for t in [t for t in run.outputs if t >= emitted]:
        del run.outputs[t]
    run.conds = key

    wanted = sorted(mirror(t) for t in order)
    last = max(wanted, default=-1)
    hw = (s.video_height, s.video_width)
    objects = [(o.obj_id, dict(sorted(conds[o.obj_id].items()))) for o in objs]
    tracker = _PromptedTracker(backend, config, run, max_cond_frames_in_attn, s)
    session = tracker.resume(objects, n, snap, first)
    frames = ((t, normalize_frame(s.frames[mirror(t)])) for t in range(first, n))
    results = tracker._run(session, frames, n, hw) if last >= emitted else iter(())
    wanted_set = set(wanted)
    try:
        for t in wanted:
            if t >= emitted:
                break
            yield _shown(s, objs, mirror(t), run.outputs[t], reverse, backend.device)
        for result in results:
            run.outputs[result.frame_idx] = dict(zip(result.obj_ids, result.low_res_logits))
            if result.frame_idx in wanted_set:
                yield _shown(s, objs, mirror(result.frame_idx), run.outputs[result.frame_idx], reverse,
                             backend.device)
            if result.frame_idx >= last:
                break
    finally:
        if hasattr(results, "close"):
            results.close()


def _shown(s: InferenceSession, objs, frame_idx: int, low: dict[int, np.ndarray], reverse: bool, device):
    """One frame's tree masks into the session (what a later click there refines) and out
    at video resolution."""
    masks = empty_masks(len(objs), s.video_height, s.video_width, device)
    for row, o in enumerate(objs):
        if o.obj_id not in low:
            continue
        logits = torch.from_numpy(low[o.obj_id])[None, None].to(device)
        if frame_idx not in o.cond:
            o.non_cond[frame_idx] = StoredFrame(logits, torch.zeros(0, device=device),
                                                torch.zeros(1, device=device))
        o.tracked[frame_idx] = reverse
        masks[row:row + 1] = video_res(logits, s)
    return frame_idx, s.obj_ids, masks
