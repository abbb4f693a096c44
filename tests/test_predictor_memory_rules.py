"""The memory bank's plain SAM 2 policy (`sam2_memory`) picks exactly the frames, temporal
encodings and pointers sam2's `_prepare_memory_conditioned_features` picks, under every
rule the config can set: several conditioning frames, `max_cond_frames_in_attn`, the
memory stride, past-only and signed pointer distances, forward and reverse."""

from __future__ import annotations

import itertools

import pytest
import torch

from sam2long.engine.torch_stages import model_geometry
from sam2long.runtime.memory_bank import Sam2Rules, StoredFrame, closest_cond_frames, sam2_memory


@pytest.fixture(scope="module")
def model(micro_checkpoints):
    from sam2long.engine.model_loading import load_sam2_model
    from tests.conftest import MICRO_CFG

    return load_sam2_model(MICRO_CFG, micro_checkpoints["plain"]).model


def _entry(t, geo):
    """A stored frame whose features and pointer carry its frame index."""
    return StoredFrame(masks=torch.zeros(1), ptr=torch.full((geo.hidden_dim,), float(t)),
                       score=torch.zeros(1), feat=torch.full((geo.mem_tokens, geo.mem_dim), float(t)))


def sam2_picks(model, cond, non_cond, frame_idx, reverse, num_frames, rules, monkeypatch):
    """What sam2 attends to: [(frame, temporal-encoding index)], [(frame, distance)]."""
    import sam2.modeling.sam2_base as base

    geo = model_geometry(model)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, **kw):
            seen.update(kw)
            return kw["curr"][0]

    def out(t):
        return {"maskmem_features": torch.full((1, geo.mem_dim, *geo.feat_hw), float(t)),
                "maskmem_pos_enc": [torch.zeros(1, geo.mem_dim, *geo.feat_hw)],
                "obj_ptr": torch.full((1, geo.hidden_dim), float(t))}

    hw = geo.mem_tokens
    with torch.no_grad(), monkeypatch.context() as m:
        for name in ("max_cond_frames_in_attn", "memory_temporal_stride_for_eval",
                     "only_obj_ptrs_in_the_past_for_eval", "use_signed_tpos_enc_to_obj_ptrs"):
            m.setattr(model, name, getattr(rules, name))
        m.setattr(base, "get_1d_sine_pe", lambda pos, dim: seen.setdefault("pos", pos.clone())
                  .new_zeros(len(pos), dim))
        saved = model.memory_attention, model.maskmem_tpos_enc
        model.memory_attention = Recorder()
        # Temporal encoding i is the constant i, spatial encodings zero: positions name slots.
        model.maskmem_tpos_enc = torch.nn.Parameter(
            torch.arange(geo.num_maskmem, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 1, geo.mem_dim))
        try:
            model._prepare_memory_conditioned_features(
                frame_idx, False, [torch.zeros(hw, 1, geo.hidden_dim)], [torch.zeros(hw, 1, geo.hidden_dim)],
                [geo.feat_hw], {"cond_frame_outputs": {t: out(t) for t in cond},
                                "non_cond_frame_outputs": {t: out(t) for t in non_cond}},
                num_frames, track_in_reverse=reverse)
        finally:
            model.memory_attention, model.maskmem_tpos_enc = saved
    n_ptr = seen["num_obj_ptr_tokens"]
    memory, pos = seen["memory"][:, 0, 0], seen["memory_pos"][:, 0, 0]
    frames_part = len(memory) - n_ptr
    frames = sorted((int(memory[i]), int(pos[i])) for i in range(0, frames_part, hw))
    per_ptr = geo.tokens_per_ptr
    ptr_frames = [int(v) for v in memory[frames_part::per_ptr]]
    dists = [int(round(float(d) * (min(num_frames, geo.max_obj_ptrs) - 1))) for d in seen.get("pos", [])]
    return frames, sorted(zip(ptr_frames, dists))


CASES = [
    # cond frames, tracked frames, current frame, reverse
    ({0}, range(1, 9), 9, False),
    ({0, 6}, range(1, 12), 12, False),
    ({0, 4, 8, 13}, [1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 14, 15], 10, False),
    ({15, 3, 9}, range(10, 15), 8, True),
    ({5}, [], 2, False),  # before the object's first prompt: no pointer, no past frame
    ({20, 2}, range(3, 20), 21, False),
    ([12, 4, 8, 0], range(0, 16), 6, False),  # 12 and 0 equally close: the earlier prompted wins
    ([0, 4, 12, 8], range(0, 16), 6, True),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_frames_and_pointers_are_sam2s(model, case, monkeypatch):
    cond, tracked, frame_idx, reverse = CASES[case]
    geo = model_geometry(model)
    num_frames = 24
    for max_cond, stride, past, signed in itertools.product((-1, 2, 3), (1, 3), (True, False), (True, False)):
        rules = Sam2Rules(max_cond, stride, past, signed)
        cond_d = {t: _entry(t, geo) for t in cond}  # in prompting order
        non_cond_d = {t: _entry(t, geo) for t in tracked if t not in cond}
        frames, ptrs, t_diff_max = sam2_memory(cond_d, non_cond_d, frame_idx, reverse, num_frames, geo, rules)
        ours = (sorted((int(e.feat[0, 0]), tpos) for e, tpos in frames),
                sorted((int(e.ptr[0]), d) for e, d in ptrs))
        assert t_diff_max == min(num_frames, geo.max_obj_ptrs) - 1
        assert ours == sam2_picks(model, cond, non_cond_d, frame_idx, reverse, num_frames, rules,
                                  monkeypatch), rules


def test_closest_conditioning_frames_are_sam2s():
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        frames = torch.randperm(30, generator=gen)[: int(torch.randint(1, 8, (1,), generator=gen))].tolist()
        frame_idx = int(torch.randint(0, 30, (1,), generator=gen))
        max_cond = int(torch.randint(2, 5, (1,), generator=gen))
        selected, unselected = select_closest_cond_frames(frame_idx, {t: t for t in frames}, max_cond)
        ours = closest_cond_frames(frame_idx, frames, max_cond)
        assert (sorted(ours[0]), ours[1]) == (sorted(selected), list(unselected)), (frames, frame_idx)
