"""The fixed-size memory-attention stage against SAM 2's variable-length call.

Rows with partly empty memory must give exactly what SAM 2 computes on the valid slots
alone; SAM2Long key weights must scale the keys (memory + position) of each frame and
pointer before projection, and nothing else.
"""

import pytest
import torch

from sam2long.engine.stages import MemoryInputs
from sam2.modeling.sam2_utils import get_1d_sine_pe


def _random_memory(geo, rows, gen, weighted):
    M, K, HW, Cm, C = geo.num_maskmem, geo.max_obj_ptrs, geo.mem_tokens, geo.mem_dim, geo.hidden_dim
    mem_valid = torch.rand(rows, M, generator=gen) < 0.6
    mem_valid[:, 0] = True
    ptr_valid = torch.rand(rows, K, generator=gen) < 0.5
    ptr_valid[:, 0] = True
    weights = lambda n: (0.95 + 0.1 * torch.rand(rows, n, generator=gen)) if weighted else torch.ones(rows, n)
    return MemoryInputs(
        mem_feats=torch.randn(rows, M, HW, Cm, generator=gen).bfloat16().float(),
        mem_valid=mem_valid,
        mem_tpos=torch.randint(0, M, (rows, M), generator=gen),
        mem_weight=weights(M),
        ptrs=torch.randn(rows, K, C, generator=gen),
        ptr_valid=ptr_valid,
        ptr_pos=torch.randint(0, 20, (rows, K), generator=gen) / 15,
        ptr_weight=weights(K),
    )


def _sam2_variable_length(model, feat, mem: MemoryInputs, row: int):
    """SAM 2's own modules on row `row`'s valid slots only (seq-first, batch 1)."""
    ma = model.memory_attention
    geo_hw = feat.shape[-2] * feat.shape[-1]
    curr = feat.flatten(2).permute(2, 0, 1)  # [HW, 1, C]
    pos_img = model.image_encoder.neck.position_encoding(feat).flatten(2).permute(2, 0, 1)
    mem_pos_base = model.memory_encoder.position_encoding(
        torch.zeros(1, model.mem_dim, *feat.shape[-2:])).flatten(2).permute(2, 0, 1)
    frames, frame_pos, frame_w = [], [], []
    for s in torch.nonzero(mem.mem_valid[row]).flatten().tolist():
        frames.append(mem.mem_feats[row, s][:, None])
        frame_pos.append(mem_pos_base + model.maskmem_tpos_enc[mem.mem_tpos[row, s]])
        frame_w.append(mem.mem_weight[row, s].expand(geo_hw))
    idx = torch.nonzero(mem.ptr_valid[row]).flatten()
    ptrs = mem.ptrs[row, idx][:, None]  # [k, 1, C]
    ptr_pos = model.obj_ptr_tpos_proj(get_1d_sine_pe(mem.ptr_pos[row, idx], dim=model.hidden_dim))
    split = model.hidden_dim // model.mem_dim
    ptr_tokens = ptrs.reshape(-1, 1, split, model.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
    ptr_pos = ptr_pos[:, None].repeat_interleave(split, dim=0)
    memory = torch.cat(frames + [ptr_tokens])
    memory_pos = torch.cat(frame_pos + [ptr_pos])
    weight = torch.cat(frame_w + [mem.ptr_weight[row, idx].repeat_interleave(split)])[:, None, None]
    num_ptr_tokens = ptr_tokens.shape[0]

    out = (curr + 0.1 * pos_img).transpose(0, 1)
    memory, memory_pos, weight = memory.transpose(0, 1), memory_pos.transpose(0, 1), weight.transpose(0, 1)
    for layer in ma.layers:
        out = layer._forward_sa(out, pos_img.transpose(0, 1))
        x = layer.norm2(out)
        out = out + layer.cross_attn_image(
            q=x, k=(memory + memory_pos) * weight, v=memory, num_k_exclude_rope=num_ptr_tokens)
        out = out + layer.linear2(layer.activation(layer.linear1(layer.norm3(out))))
    out = ma.norm(out)
    return out.transpose(1, 2).reshape(1, model.hidden_dim, *feat.shape[-2:])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rows", [1, 3, 7])
def test_fixed_size_equals_variable_length(lively_backend, micro_checkpoints, weighted, rows):
    from sam2long.engine.model_loading import load_sam2_model
    from tests.conftest import MICRO_CFG

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    geo = lively_backend.geometry
    gen = torch.Generator().manual_seed(rows * 2 + weighted)  # fresh inputs per case
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    mem = _random_memory(geo, rows, gen, weighted)
    with torch.inference_mode():
        got = lively_backend.memory_attention(feat, *vars(mem).values())
        for row in range(rows):
            want = _sam2_variable_length(model, feat, mem, row)
            scale = want.abs().max()
            assert (got[row] - want[0]).abs().max() <= 1e-4 * scale, row


def test_slot_dropping_in_backend_changes_nothing(lively_backend):
    geo = lively_backend.geometry
    gen = torch.Generator().manual_seed(11)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    mem = _random_memory(geo, 4, gen, True)
    mem.mem_valid[:, -1] = False  # a slot empty in every row is dropped by the backend
    mem.ptr_valid[:, 5:] = False
    with torch.inference_mode():
        full = lively_backend.memory_attention(feat, *vars(mem).values())
    dropped = lively_backend.attend_memory(feat, mem)
    assert (full - dropped).abs().max() <= 1e-5 * full.abs().max()


def test_shared_blocks_give_the_per_row_result(lively_backend):
    """Rows holding the same stored entries (same id, temporal position and weight), as
    pathways with a common past do, are attended once; the result must not change."""
    geo = lively_backend.geometry
    gen = torch.Generator().manual_seed(21)
    mem = _random_memory(geo, 5, gen, True)
    ids = torch.arange(5 * geo.num_maskmem).reshape(5, geo.num_maskmem)
    for row in (1, 2, 4):
        for slot in range(3):
            for name in ("mem_feats", "mem_tpos", "mem_weight", "mem_valid"):
                getattr(mem, name)[row, slot] = getattr(mem, name)[0, slot]
            ids[row, slot] = ids[0, slot]
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    with torch.inference_mode():
        per_row = lively_backend.memory_attention(feat, *vars(mem).values())
        shared = lively_backend.memory_attention(feat, *vars(mem).values(), mem_ids=ids)
    assert (per_row - shared).abs().max() <= 1e-5 * per_row.abs().max()
    assert (lively_backend.attend_memory(feat, mem, ids) - per_row).abs().max() <= 1e-5 * per_row.abs().max()


def _pathway_memory(geo, gen):
    """Four rows as a tracked batch holds them: frames right-aligned, the pathways holding 3, 1,
    3 and 2 good frames besides the conditioning one (rows 0 and 2 the same slots)."""
    mem = _random_memory(geo, 4, gen, True)
    M = geo.num_maskmem
    mem.mem_valid[:] = False
    mem.mem_valid[:, 0] = True
    for row, good in enumerate((3, 1, 3, 2)):
        mem.mem_valid[row, M - good:] = True
    return mem


def test_row_groups_hold_rows_with_the_same_frame_slots(lively_backend):
    mem = _pathway_memory(lively_backend.geometry, torch.Generator().manual_seed(5))
    groups = sorted(g.tolist() for g in mem.row_groups())
    assert groups == [[0, 2], [1], [3]]
    assert [g.tolist() for g in mem.select(rows=[0, 2]).row_groups()] == [[0, 1]]


def test_each_attention_call_takes_only_slots_its_rows_hold(lively_backend, monkeypatch):
    """Rows with fewer good frames are attended apart, without the slots they lack (a masked
    slot costs as much as a real one), and each row's result is its own."""
    geo = lively_backend.geometry
    gen = torch.Generator().manual_seed(9)
    mem = _pathway_memory(geo, gen)
    ids = torch.arange(4 * geo.num_maskmem).reshape(4, geo.num_maskmem)
    ids[:, 0] = 0  # the conditioning frame: one entry every row holds
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    with torch.inference_mode():
        want = lively_backend.memory_attention(feat, *vars(mem).values())
    calls = []
    stage = lively_backend.memory_attention
    real = stage.forward

    def spy(feat, *memory, **kw):
        calls.append(memory[1].clone())  # mem_valid
        return real(feat, *memory, **kw)

    monkeypatch.setattr(stage, "forward", spy)
    got = lively_backend.attend_memory(feat, mem, ids)
    assert sorted(c.shape for c in calls) == sorted([torch.Size([2, 4]), torch.Size([1, 2]), torch.Size([1, 3])])
    assert all(bool(c.all()) for c in calls)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
