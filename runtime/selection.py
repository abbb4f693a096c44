"""SAM2Long's pathway selection for all objects at once, as tensor ops.

Given, per object, P pathways x 3 candidate masks, keep P candidates (SAM2LONG_ALGORITHM.md
"the selection"): scores acc + log(iou + 1e-5) in float64, a stable descending sort,
then either the top P (confident) or a walk that keeps only new rounded signed IoUs,
topped up with each uncovered pathway's best candidate (uncertain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NUM_MASKS = 3


@dataclass
class Selection:
    parent: torch.Tensor  # [O, P] int64 pathway each kept candidate comes from
    mask_idx: torch.Tensor  # [O, P] int64 which of the 3 masks
    score: torch.Tensor  # [O, P] float64 accumulated score of the kept candidate


def rounded_iou_key(ious: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Integer form of Python's `round(+-iou, 2)`, the de-duplication key.

    A float32 IoU times 100 is exact in float64 and round-half-even matches Python's
    `round`; integers also merge -0.0 with 0.0 as Python's set does.
    """
    cents = torch.round(ious.double() * 100).to(torch.int64)
    return torch.where(positive, cents, -cents)


def select_candidates(
    acc: torch.Tensor, ious: torch.Tensor, obj_score: torch.Tensor, uncertainty: float
) -> Selection:
    """acc [O, P] float64, ious [O, P, 3], obj_score [O, P] -> Selection."""
    num_obj, num_path, _ = ious.shape
    num_cand = num_path * NUM_MASKS
    device = ious.device
    scores = (acc[:, :, None] + torch.log(ious.double() + 1e-5)).reshape(num_obj, num_cand)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)  # [O, 3P]
    pathway = order // NUM_MASKS
    position = torch.arange(num_cand, device=device).expand(num_obj, -1)

    keys = rounded_iou_key(ious, (obj_score > 0)[:, :, None].expand_as(ious))
    keys = keys.reshape(num_obj, num_cand).gather(1, order)
    earlier = torch.tril(torch.ones(num_cand, num_cand, dtype=torch.bool, device=device), -1)
    seen_before = ((keys[:, :, None] == keys[:, None, :]) & earlier).any(2)
    first_of_key = ~seen_before
    kept = first_of_key & (torch.cumsum(first_of_key.long(), 1) <= num_path)

    # Top-up candidates: each pathway's best-placed candidate, if none of its own was kept.
    same_path = pathway[:, :, None] == torch.arange(num_path, device=device)  # [O, 3P, P]
    path_has_kept = (same_path & kept[:, :, None]).any(1)  # [O, P]
    best_pos_of_path = same_path.long().argmax(1)  # [O, P] first sorted position
    is_best_of_path = (position[:, :, None] == best_pos_of_path[:, None, :]) & same_path
    top_up = (is_best_of_path & ~path_has_kept[:, None, :]).any(2)

    big = 2 * num_cand
    uncertain_rank = torch.where(kept, position, torch.where(top_up, num_cand + pathway, big))
    confident = obj_score.double().abs().amax(1) > uncertainty
    rank = torch.where(confident[:, None], position, uncertain_rank)
    chosen_pos = torch.argsort(rank, dim=1, stable=True)[:, :num_path]
    chosen = order.gather(1, chosen_pos)
    return Selection(
        parent=chosen // NUM_MASKS,
        mask_idx=chosen % NUM_MASKS,
        score=scores.gather(1, chosen),
    )
