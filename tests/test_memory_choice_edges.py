"""Memory choice at its strict edges (SAM2LONG_ALGORITHM.md step 1): a frame is "good" only
when its predicted IoU is strictly above iou_thre and its object score strictly above 0. A
threshold a float32 IoU can equal exactly (0.5, 0.25) must still leave that frame out."""

import pytest
import torch

from sam2long.runtime.memory_bank import NewEntries, PathwayBank
from tests.test_memory_choice import GEO


def _memory_frames_after(entries, iou_thre):
    """One pathway: the prompt at frame 0, then one tracked frame per (iou, score); the
    memory frames (by entry value) the next frame reads, oldest first, conditioning excluded."""
    bank = PathwayBank(GEO, 1, 1, 20, iou_thre, torch.device("cpu"))
    bank.set_condition(0, torch.full((4, 4), -1.0), torch.full((8,), -1.0), 0)
    for value, (iou, score) in enumerate(entries, start=1):
        bank.advance(torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), NewEntries(
            feat=torch.full((1, 1, 4, 4), float(value)).to(torch.bfloat16),
            ptr=torch.full((1, 1, 8), float(value)), score=torch.tensor([[score]]),
            iou=torch.tensor([[iou]])), torch.zeros(1, 1, dtype=torch.long))
    memory, _ = bank.memory_inputs(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                                   len(entries) + 1)
    valid = memory.mem_valid[0]
    return [int(memory.mem_feats[0, s, 0, 0]) for s in range(1, valid.shape[0]) if valid[s]]


@pytest.mark.parametrize("iou_thre", [0.5, 0.25])
def test_an_iou_equal_to_the_threshold_is_not_good(iou_thre):
    # Frame 1: IoU == thre (left out), frame 2: above (kept), frame 3: the previous frame
    # (always read). Frame 1 would be read too if "equal" counted as above.
    assert _memory_frames_after([(iou_thre, 1.0), (0.9, 1.0), (0.01, -1.0)], iou_thre) == [2, 3]
    assert _memory_frames_after([(iou_thre + 1e-3, 1.0), (0.9, 1.0), (0.01, -1.0)], iou_thre) == [1, 2, 3]


def test_an_object_score_of_exactly_zero_is_not_good():
    assert _memory_frames_after([(0.9, 0.0), (0.9, 1.0), (0.01, -1.0)], 0.1) == [2, 3]
