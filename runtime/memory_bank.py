"""Pathway banks: what the next frame of each object and pathway slot can read.

Memory choice (SAM2LONG_ALGORITHM.md, step 1) only ever reads a pathway's "good" entries
(predicted IoU > iou_thre and object score > 0) plus its previous frame, and of those at
most the newest `max_obj_ptrs - 1` for pointers and `num_maskmem - 1` for features. So
each slot keeps a right-aligned ring of its newest good entries (pointers and scores for
all of them, features for the newest few) and its previous-frame entry. Everything lives
in tensors allocated once per video: state is flat in video length, and re-parenting after
selection is a gather.
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
                 num_frames: int, iou_thre: float, device: torch.device):
        g = geometry
        self.geo = g
        self.P = num_pathway
        self.iou_thre = iou_thre
        self.device = device
        # The reference caps pointers at min(num_frames, max_obj_ptrs_in_encoder).
        max_ptrs = max(2, min(num_frames, g.max_obj_ptrs))
        self.G = max_ptrs - 1  # good entries kept; also the pointer distance normaliser
        self.F = min(g.num_maskmem - 1, self.G)  # good entries whose features are kept
        o, p, hw, cm, c = num_objects, num_pathway, g.mem_tokens, g.mem_dim, g.hidden_dim
        z = dict(device=device)
        self.cond_feat = torch.zeros(o, hw, cm, dtype=torch.bfloat16, **z)
        self.cond_ptr = torch.zeros(o, c, **z)
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
        self.cond_id = torch.zeros(o, dtype=torch.int64, **z)
        self.good_id = torch.zeros(o, p, self.F, dtype=torch.int64, **z)
        self.prev_id = torch.zeros(o, p, dtype=torch.int64, **z)
        # A device counter (not a Python int) so a captured CUDA graph advances it too.
        self.next_id = torch.ones((), dtype=torch.int64, **z)
        n = max(g.num_maskmem, self.G + 1) + 1
        table = torch.ones(n, n)
        for count in range(1, n):
            table[count, :count] = torch.linspace(WEIGHT_LOW, WEIGHT_HIGH, count)
        self.weight_table = table.to(device)

    # -- writing ---------------------------------------------------------------------
    def set_condition(self, obj: int, feat: torch.Tensor, ptr: torch.Tensor, start: int):
        """The prompt frame's memory, shared by every pathway of the object."""
        self.cond_feat[obj] = feat.to(torch.bfloat16)
        self.cond_ptr[obj] = ptr
        self.start[obj] = start
        self.cond_id[obj] = self.next_id
        self.next_id += 1
        for field in (self.good_count, self.prev_good, self.has_prev):
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

        # Frames: conditioning in slot 0, then ranks M-1 .. 1 (oldest first, t_pos 1..M-1).
        frame_rank = torch.arange(M - 1, 0, -1, device=dev).expand(len(rows), -1)
        f_entry, f_valid = entry_of_rank(frame_rank)
        feat_src = torch.cat((self.good_feat[objs, slots], self.prev_feat[objs, slots][:, None]), 1)
        f_src = (f_entry - (G - F)).clamp(min=0)  # ring entry -> feature ring position
        mem_feats = torch.cat(
            (self.cond_feat[objs][:, None], feat_src[rows[:, None], f_src]), 1).float()
        id_src = torch.cat((self.good_id[objs, slots], self.prev_id[objs, slots][:, None]), 1)
        mem_ids = torch.cat((self.cond_id[objs][:, None], id_src.gather(1, f_src)), 1)
        mem_valid = torch.cat((torch.ones_like(f_valid[:, :1]), f_valid), 1)
        mem_tpos = torch.cat((torch.full_like(frame_rank[:, :1], M - 1), frame_rank - 1), 1)
        frame_scores = torch.cat(
            (torch.full_like(scores[:, :1], COND_SCORE), scores.gather(1, f_entry)), 1)

        # Pointers: conditioning in slot 0, then ranks 1 .. L-1 (the oldest entry never
        # contributes one: the reference's quirk).
        # Always the model's K slots (fixed graph shapes); short videos leave some empty.
        ptr_rank = torch.arange(1, self.geo.max_obj_ptrs, device=dev).expand(len(rows), -1)
        p_entry, p_exists = entry_of_rank(ptr_rank)
        p_valid = p_exists & (ptr_rank <= (length - 1)[:, None])
        ptr_tokens = torch.cat((self.cond_ptr[objs][:, None], ptrs[rows[:, None], p_entry]), 1)
        ptr_valid = torch.cat((torch.ones_like(p_valid[:, :1]), p_valid), 1)
        cond_dist = frame_idx - self.start[objs]
        dist = torch.cat((cond_dist[:, None], ptr_rank), 1)  # int64, as the reference
        ptr_pos = dist / G
        ptr_scores = torch.cat(
            (torch.full_like(scores[:, :1], COND_SCORE), scores.gather(1, p_entry)), 1)

        # Key weights: none at all while only the conditioning frame is in memory.
        modulate = (mem_valid.sum(1) > 1)[:, None]
        mem_weight = torch.where(modulate, _rank_weights(frame_scores, mem_valid, self.weight_table), 1.0)
        ptr_weight = torch.where(modulate, _rank_weights(ptr_scores, ptr_valid, self.weight_table), 1.0)
        memory = MemoryInputs(
            mem_feats=mem_feats, mem_valid=mem_valid, mem_tpos=mem_tpos, mem_weight=mem_weight,
            ptrs=ptr_tokens, ptr_valid=ptr_valid, ptr_pos=ptr_pos.float(), ptr_weight=ptr_weight,
        )
        return memory, mem_ids
