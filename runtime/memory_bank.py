"""Pathway banks: what the next frame of each object and pathway slot can read.

Memory choice (SAM2LONG_ALGORITHM.md, step 1) only ever reads a pathway's "good" entries
(predicted IoU > iou_thre and object score > 0) plus its previous frame, and of those at
most the newest `max_obj_ptrs - 1` for pointers and `num_maskmem - 1` for features. So
each slot keeps a right-aligned ring of its newest good entries (pointers and scores for
all of them, features for the newest few) and its previous-frame entry. Everything lives
in tensors allocated once per video: state is flat in video length, and re-parenting after
selection is a gather.

Conditioning memory is per object, shared by its pathways: the prompt frame, and every later
prompt frame the tree has reached (runtime/tracker.py), at most `max_conds` of them; each
frame reads the newest `max_cond_in_attn` (SAM 2's `max_cond_frames_in_attn`; -1: all) in
front of its num_maskmem - 1 own frames, so with several it reads more than num_maskmem
frames, as SAM 2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sam2long.engine.stages import MemoryInputs, ModelGeometry

COND_SCORE = 10.0  # the conditioning frame and pointer rank as very confident
WEIGHT_LOW, WEIGHT_HIGH = 0.95, 1.05


@dataclass
class NewEntries:
    """One new memory entry per (object, slot) after a frame's selection."""

    feat: torch.Tensor  # [n, P, HW, Cm] bfloat16
    ptr: torch.Tensor  # [n, P, C]
    score: torch.Tensor  # [n, P] object-score logit
    iou: torch.Tensor  # [n, P] predicted IoU of the kept mask


def _rank_weights(scores: torch.Tensor, valid: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """linspace(0.95, 1.05, n) spread by ascending score rank over the valid slots
    (stable: earlier slots first on ties), as the reference's argsort + scatter."""
    n = scores.shape[1]
    idx = torch.arange(n, device=scores.device)
    lower = scores[:, None, :] < scores[:, :, None]
    tie_before = (scores[:, None, :] == scores[:, :, None]) & (idx[None, :] < idx[:, None])
    rank = ((lower | tie_before) & valid[:, None, :]).sum(2)
    count = valid.sum(1)
    weights = table[count[:, None].clamp(max=table.shape[0] - 1), rank.clamp(max=table.shape[1] - 1)]
    return torch.where(valid, weights, torch.ones_like(weights))


class PathwayBank:
    def __init__(self, geometry: ModelGeometry, num_objects: int, num_pathway: int,
                 num_frames: int, iou_thre: float, device: torch.device, max_conds: int = 1,
                 max_cond_in_attn: int = -1):
        g = geometry
        self.geo = g
        self.P = num_pathway
        self.C = max_conds  # conditioning frames per object
        self.max_cond_in_attn = max_cond_in_attn
        self.iou_thre = iou_thre
        self.device = device
        # The reference caps pointers at min(num_frames, max_obj_ptrs_in_encoder).
        max_ptrs = max(2, min(num_frames, g.max_obj_ptrs))
        self.G = max_ptrs - 1  # good entries kept; also the pointer distance normaliser
        self.F = min(g.num_maskmem - 1, self.G)  # good entries whose features are kept
        o, p, hw, cm, c = num_objects, num_pathway, g.mem_tokens, g.mem_dim, g.hidden_dim
        z = dict(device=device)
        C = max_conds
        self.cond_feat = torch.zeros(o, C, hw, cm, dtype=torch.bfloat16, **z)
        self.cond_ptr = torch.zeros(o, C, c, **z)
        self.cond_frame = torch.zeros(o, C, dtype=torch.int64, **z)
        self.cond_count = torch.zeros(o, dtype=torch.int64, **z)
        self._conds = [0] * o  # cond_count on the host
        self.start = torch.zeros(o, dtype=torch.int64, **z)
        self.good_feat = torch.zeros(o, p, self.F, hw, cm, dtype=torch.bfloat16, **z)
        self.good_ptr = torch.zeros(o, p, self.G, c, **z)
        self.good_score = torch.zeros(o, p, self.G, **z)
        self.good_count = torch.zeros(o, p, dtype=torch.int64, **z)
        self.prev_feat = torch.zeros(o, p, hw, cm, dtype=torch.bfloat16, **z)
        self.prev_ptr = torch.zeros(o, p, c, **z)
        self.prev_score = torch.zeros(o, p, **z)
        self.prev_good = torch.zeros(o, p, dtype=torch.bool, **z)
        self.has_prev = torch.zeros(o, p, dtype=torch.bool, **z)
        # Entry ids: equal ids mean the same stored memory entry (lets a backend attend to
        # a frame shared by several pathways once).
        self.cond_id = torch.zeros(o, C, dtype=torch.int64, **z)
        self.good_id = torch.zeros(o, p, self.F, dtype=torch.int64, **z)
        self.prev_id = torch.zeros(o, p, dtype=torch.int64, **z)
        # A device counter (not a Python int) so a captured CUDA graph advances it too.
        self.next_id = torch.ones((), dtype=torch.int64, **z)
        n = max(g.num_maskmem, self.G + 1) + C
        table = torch.ones(n, n)
        for count in range(1, n):
            table[count, :count] = torch.linspace(WEIGHT_LOW, WEIGHT_HIGH, count)
        self.weight_table = table.to(device)

    # -- writing ---------------------------------------------------------------------
    def set_condition(self, obj: int, feat: torch.Tensor, ptr: torch.Tensor, start: int):
        """The prompt frame's memory, shared by every pathway of the object."""
        self._conds[obj] = 0
        self.cond_count[obj] = 0
        self.add_condition(obj, feat, ptr, start)
        self.start[obj] = start
        self.good_count[obj] = 0

    def add_condition(self, obj: int, feat: torch.Tensor, ptr: torch.Tensor, frame_idx: int):
        """A prompt frame the object's tree reaches: its memory joins the conditioning memory
        of every pathway; the previous frame is this one (in that memory), so no pathway's
        own previous entry is forced into memory any more."""
        j = self._conds[obj]
        if j >= self.C:
            raise ValueError(f"object {obj}: more than the {self.C} conditioning frames "
                             "this bank was made for")
        self.cond_feat[obj, j] = feat.to(torch.bfloat16)
        self.cond_ptr[obj, j] = ptr
        self.cond_frame[obj, j] = frame_idx
        self.cond_id[obj, j] = self.next_id
        self.next_id += 1
        self._conds[obj] = j + 1
        self.cond_count[obj] = j + 1
        for field in (self.prev_good, self.has_prev):
            field[obj] = 0

    def advance(self, objs: torch.Tensor, parent: torch.Tensor, new: NewEntries,
                copy_class: torch.Tensor):
        """Slot k of each object in `objs` becomes its parent slot plus the new entry;
        slots with equal `copy_class` [n, P] received the same entry."""
        def regather(field):
            rows = field[objs]
            index = parent.reshape(parent.shape + (1,) * (rows.dim() - 2)).expand(
                parent.shape + rows.shape[2:])
            return rows.gather(1, index)

        good_ptr, good_score = regather(self.good_ptr), regather(self.good_score)
        good_feat, good_count = regather(self.good_feat), regather(self.good_count)
        good_id = regather(self.good_id)
        n = objs.shape[0]
        new_id = self.next_id + torch.arange(n, device=self.device)[:, None] * self.P + copy_class
        self.next_id += n * self.P
        good = (new.iou.double() > self.iou_thre) & (new.score > 0)

        def push(ring, item):
            shifted = torch.cat((ring[:, :, 1:], item[:, :, None]), dim=2)
            mask = good.reshape(good.shape + (1,) * (ring.dim() - 2))
            return torch.where(mask, shifted, ring)

        self.good_ptr[objs] = push(good_ptr, new.ptr)
        self.good_score[objs] = push(good_score, new.score)
        self.good_feat[objs] = push(good_feat, new.feat)
        self.good_id[objs] = push(good_id, new_id)
        self.prev_id[objs] = new_id
        self.good_count[objs] = torch.where(good, (good_count + 1).clamp(max=self.G), good_count)
        self.prev_feat[objs] = new.feat
        self.prev_ptr[objs] = new.ptr
        self.prev_score[objs] = new.score
        self.prev_good[objs] = good
        self.has_prev[objs] = True

    # -- snapshots (an interactive session resumes from any tracked frame) -------------
    # Everything but the features: those are stored once per entry id by the caller.
    _STATE = ("cond_ptr", "cond_frame", "cond_count", "cond_id", "start", "good_ptr", "good_score",
              "good_count", "good_id", "prev_ptr", "prev_score", "prev_good", "has_prev", "prev_id")

    def object_state(self, obj: int) -> dict[str, torch.Tensor]:
        """One object's bank without its features, copied to the host (small: pointers,
        scores and entry ids)."""
        return {name: getattr(self, name)[obj].to("cpu", copy=True) for name in self._STATE}

    def entries(self, obj: int) -> dict[int, torch.Tensor]:
        """The object's memory entries its slots read now, by entry id -> [HW, Cm] bfloat16."""
        conds = self.cond_id[obj, :self._conds[obj]].tolist()
        out = {int(i): self.cond_feat[obj, j] for j, i in enumerate(conds)}
        for k, i in enumerate(self.prev_id[obj].tolist()):
            out.setdefault(i, self.prev_feat[obj, k])
        return out

    def restore_object(self, obj: int, state: dict[str, torch.Tensor], feature) -> None:
        """Make object `obj` what `object_state` saw; `feature(entry_id)` gives an entry's
        features (id 0: never written, zeros as allocated)."""
        for name in self._STATE:
            field, value = getattr(self, name), state[name].to(self.device)
            if name.startswith("cond_") and name != "cond_count":
                field[obj].zero_()
                field[obj, :value.shape[0]] = value[:field.shape[1]]
            else:
                field[obj] = value
        self._conds[obj] = int(state["cond_count"])
        if self._conds[obj] > self.C:
            raise ValueError(f"object {obj}: the snapshot has more conditioning frames than this bank takes")

        def features(ids: torch.Tensor) -> torch.Tensor:
            flat = [torch.zeros_like(self.prev_feat[0, 0]) if i == 0 else feature(i).to(self.device)
                    for i in ids.reshape(-1).tolist()]
            return torch.stack(flat).reshape(*ids.shape, *flat[0].shape)

        self.cond_feat[obj].zero_()
        if self._conds[obj]:
            self.cond_feat[obj, :self._conds[obj]] = features(self.cond_id[obj, :self._conds[obj]])
        self.good_feat[obj] = features(self.good_id[obj])
        self.prev_feat[obj] = features(self.prev_id[obj])

    # -- reading ---------------------------------------------------------------------
    def memory_inputs(self, objs: torch.Tensor, slots: torch.Tensor,
                      frame_idx: int | torch.Tensor) -> tuple[MemoryInputs, torch.Tensor]:
        """Fixed-size memory for rows (objs[i], slots[i]) tracking frame `frame_idx` (an int,
        or a 0-d device tensor inside a CUDA graph), and the entry id of every frame slot [R, M]."""
        M, G, F = self.geo.num_maskmem, self.G, self.F
        dev = self.device
        rows = torch.arange(objs.shape[0], device=dev)
        # Candidate entries, oldest first: the good ring (right-aligned) then the previous
        # frame, which joins the list only when it is not good (good ones are in the ring).
        ring_valid = torch.arange(G, device=dev) >= (G - self.good_count[objs, slots])[:, None]
        prev_valid = self.has_prev[objs, slots] & ~self.prev_good[objs, slots]
        valid = torch.cat((ring_valid, prev_valid[:, None]), 1)  # [R, G+1]
        newest_rank = valid.flip(1).cumsum(1).flip(1)  # 1 = newest valid entry
        length = valid.sum(1)  # L: entries in the reference's `valid_indices`
        scores = torch.cat((self.good_score[objs, slots], self.prev_score[objs, slots][:, None]), 1)
        ptrs = torch.cat((self.good_ptr[objs, slots], self.prev_ptr[objs, slots][:, None]), 1)

        def entry_of_rank(target):  # [R, n] ranks -> entry index and whether it exists
            hit = valid[:, None, :] & (newest_rank[:, None, :] == target[..., None])
            return hit.long().argmax(2), hit.any(2)

        # Conditioning frames (slots 0..C-1, oldest first): those reached so far, the newest
        # max_cond_in_attn of them (all reached ones are in the past: SAM 2's closest).
        C = self.C
        cond_slot = torch.arange(C, device=dev)
        count = self.cond_count[objs][:, None]
        cond_valid = cond_slot < count
        if self.max_cond_in_attn != -1:
            cond_valid &= cond_slot >= count - self.max_cond_in_attn
        # Frames: conditioning first, then ranks M-1 .. 1 (oldest first, t_pos 1..M-1).
        frame_rank = torch.arange(M - 1, 0, -1, device=dev).expand(len(rows), -1)
        f_entry, f_valid = entry_of_rank(frame_rank)
        feat_src = torch.cat((self.good_feat[objs, slots], self.prev_feat[objs, slots][:, None]), 1)
        f_src = (f_entry - (G - F)).clamp(min=0)  # ring entry -> feature ring position
        mem_feats = torch.cat((self.cond_feat[objs], feat_src[rows[:, None], f_src]), 1).float()
        id_src = torch.cat((self.good_id[objs, slots], self.prev_id[objs, slots][:, None]), 1)
        mem_ids = torch.cat((self.cond_id[objs], id_src.gather(1, f_src)), 1)
        mem_valid = torch.cat((cond_valid, f_valid), 1)
        cond_fill = torch.zeros_like(frame_rank[:, :1]).expand(-1, C)
        mem_tpos = torch.cat((cond_fill + (M - 1), frame_rank - 1), 1)
        cond_scores = torch.full_like(scores[:, :1], COND_SCORE).expand(-1, C)
        frame_scores = torch.cat((cond_scores, scores.gather(1, f_entry)), 1)

        # Pointers: conditioning in slot 0, then ranks 1 .. L-1 (the oldest entry never
        # contributes one: the reference's quirk).
        # Always the model's K slots (fixed graph shapes); short videos leave some empty.
        ptr_rank = torch.arange(1, self.geo.max_obj_ptrs, device=dev).expand(len(rows), -1)
        p_entry, p_exists = entry_of_rank(ptr_rank)
        p_valid = p_exists & (ptr_rank <= (length - 1)[:, None])
        ptr_tokens = torch.cat((self.cond_ptr[objs], ptrs[rows[:, None], p_entry]), 1)
        ptr_valid = torch.cat((cond_valid, p_valid), 1)
        cond_dist = frame_idx - self.cond_frame[objs]  # [R, C]: |t - c|, every c is in the past
        dist = torch.cat((cond_dist, ptr_rank), 1)  # int64, as the reference
        ptr_pos = dist / G
        ptr_scores = torch.cat((cond_scores, scores.gather(1, p_entry)), 1)

        # Key weights: none at all while only conditioning frames are in memory.
        modulate = f_valid.any(1)[:, None]
        mem_weight = torch.where(modulate, _rank_weights(frame_scores, mem_valid, self.weight_table), 1.0)
        ptr_weight = torch.where(modulate, _rank_weights(ptr_scores, ptr_valid, self.weight_table), 1.0)
        memory = MemoryInputs(
            mem_feats=mem_feats, mem_valid=mem_valid, mem_tpos=mem_tpos, mem_weight=mem_weight,
            ptrs=ptr_tokens, ptr_valid=ptr_valid, ptr_pos=ptr_pos.float(), ptr_weight=ptr_weight,
        )
        return memory, mem_ids


# -- plain SAM 2 ("mode sam2"): what SAM 2's own video predictor attends to --------------------
@dataclass
class StoredFrame:
    """One object's output on one frame, kept for later frames' memory (SAM 2's per-frame
    output, typed)."""

    masks: torch.Tensor  # [1, 1, S/4, S/4] float32 low-res logits (what the frame shows)
    ptr: torch.Tensor  # [C] object pointer
    score: torch.Tensor  # [1] object-score logit
    feat: torch.Tensor | None = None  # [HW, Cm] bfloat16 memory; None until encoded
    serial: int = 0  # unique per stored output of a session: names it in `inputs`
    inputs: tuple | None = None  # what a tracked frame was computed from (`memory_key`)


@dataclass(frozen=True)
class Sam2Rules:
    """The model-config settings that decide SAM 2's memory (SAM2Base's defaults)."""

    max_cond_frames_in_attn: int = -1  # -1: every conditioning frame
    memory_temporal_stride_for_eval: int = 1
    only_obj_ptrs_in_the_past_for_eval: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    # The video predictor's: a prompt on a tracked frame makes it a conditioning frame too
    # (off: the correction shows, and the next propagation through the frame recomputes it).
    add_all_frames_to_correct_as_cond: bool = False

    @classmethod
    def from_config_file(cls, config: str) -> "Sam2Rules":
        """From a config name (inside the sam2 package) or YAML path."""
        from omegaconf import OmegaConf

        from sam2long.engine.model_loading import resolve_config_path

        return cls.from_model_config(OmegaConf.load(resolve_config_path(config)).model)

    @classmethod
    def from_model_config(cls, model_cfg) -> "Sam2Rules":
        """From a config's `model:` mapping (anything with .get)."""
        return cls(**{f: type(getattr(cls, f))(model_cfg.get(f, getattr(cls, f)))
                      for f in cls.__dataclass_fields__})


def closest_cond_frames(frame_idx: int, cond_frames, max_cond: int) -> tuple[list[int], list[int]]:
    """(selected, unselected) conditioning frames: all of them, or at most `max_cond`: the
    closest before `frame_idx`, the closest at or after it, then the temporally closest;
    equally close ones in the order they became conditioning frames (`cond_frames`'
    order), as sam2 breaks ties."""
    frames = list(cond_frames)
    if max_cond == -1 or len(frames) <= max_cond:
        return frames, []
    before = [t for t in frames if t < frame_idx]
    after = [t for t in frames if t >= frame_idx]
    chosen = ([max(before)] if before else []) + ([min(after)] if after else [])
    rest = sorted((t for t in frames if t not in chosen), key=lambda t: abs(t - frame_idx))
    chosen += rest[:max_cond - len(chosen)]
    return chosen, [t for t in frames if t not in chosen]


def sam2_memory(cond: dict[int, StoredFrame], non_cond: dict[int, StoredFrame], frame_idx: int,
                reverse: bool, num_frames: int, geo: ModelGeometry, rules: Sam2Rules):
    """SAM 2's memory for one object on `frame_idx`: ([(stored frame, temporal-encoding
    index)], [(stored frame, its pointer's distance)], pointer distance normaliser). Every selected
    conditioning frame, then the last num_maskmem - 1 frames (tracking order), then pointers
    of past conditioning frames and of the last max_obj_ptrs - 1 frames."""
    M = geo.num_maskmem
    selected, unselected = closest_cond_frames(frame_idx, cond, rules.max_cond_frames_in_attn)
    spare = {t: cond[t] for t in unselected}
    frames = [(cond[t], M - 1) for t in selected]  # t_pos 0
    stride = rules.memory_temporal_stride_for_eval
    sign = -1 if reverse else 1
    for t_pos in range(1, M):
        t_rel = M - t_pos  # frames before this one, in tracking order
        if t_rel == 1:
            prev = frame_idx - sign
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        entry = non_cond.get(prev, spare.get(prev))
        if entry is not None:
            frames.append((entry, M - t_pos - 1))
    max_ptrs = min(num_frames, geo.max_obj_ptrs)
    in_past = (lambda t: t >= frame_idx) if reverse else (lambda t: t <= frame_idx)
    ptr_frames = [t for t in selected if in_past(t) or not rules.only_obj_ptrs_in_the_past_for_eval]
    ptrs = [(cond[t], (frame_idx - t) * sign if rules.use_signed_tpos_enc_to_obj_ptrs
             else abs(frame_idx - t)) for t in ptr_frames]
    for t_diff in range(1, max_ptrs):
        t = frame_idx - sign * t_diff
        if t < 0 or t >= num_frames:
            break
        entry = non_cond.get(t, spare.get(t))
        if entry is not None:
            ptrs.append((entry, t_diff))
    return frames, ptrs, max_ptrs - 1


def memory_key(rows_entry, reverse: bool) -> tuple:
    """What one `sam2_memory` row is made of: equal keys, equal memory (and so an equal
    tracked output, which needs no recomputing)."""
    frames, ptrs, _ = rows_entry
    return (reverse, tuple((e.serial, tpos) for e, tpos in frames), tuple((e.serial, d) for e, d in ptrs))


def stack_sam2_memory(rows, geo: ModelGeometry, device: torch.device) -> MemoryInputs:
    """Rows of `sam2_memory` as one batch: slots padded to the model's M frames and K
    pointers (what fixed-shape engines take) or to the longest row, and marked invalid (a
    masked key adds nothing); key weights 1 (plain SAM 2 has none)."""
    b = len(rows)
    m = max(geo.num_maskmem, max(len(frames) for frames, _, _ in rows))
    k = max(geo.max_obj_ptrs, max(len(ptrs) for _, ptrs, _ in rows))
    hw, cm, c = geo.mem_tokens, geo.mem_dim, geo.hidden_dim
    mem_feats = torch.zeros(b, m, hw, cm, device=device)
    mem_valid = torch.zeros(b, m, dtype=torch.bool, device=device)
    mem_tpos = torch.zeros(b, m, dtype=torch.int64, device=device)
    ptrs = torch.zeros(b, k, c, device=device)
    ptr_valid = torch.zeros(b, k, dtype=torch.bool, device=device)
    ptr_pos = torch.zeros(b, k, device=device)
    for i, (frames, row_ptrs, t_diff_max) in enumerate(rows):
        for j, (entry, tpos) in enumerate(frames):
            mem_feats[i, j] = entry.feat.to(device).float()
            mem_valid[i, j] = True
            mem_tpos[i, j] = tpos
        if row_ptrs:
            ptrs[i, :len(row_ptrs)] = torch.stack([e.ptr.to(device) for e, _ in row_ptrs])
            ptr_valid[i, :len(row_ptrs)] = True
            # int64 distances / an int, as SAM 2 computes them
            ptr_pos[i, :len(row_ptrs)] = torch.tensor([d for _, d in row_ptrs]) / t_diff_max
    return MemoryInputs(mem_feats=mem_feats, mem_valid=mem_valid, mem_tpos=mem_tpos,
                        mem_weight=torch.ones(b, m, device=device), ptrs=ptrs, ptr_valid=ptr_valid,
                        ptr_pos=ptr_pos, ptr_weight=torch.ones(b, k, device=device))
