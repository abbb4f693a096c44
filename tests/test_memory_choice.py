"""Memory choice from the pathway banks against a literal version of the reference's walk
(SAM2LONG_ALGORITHM.md steps 1-4): IoU threshold, object score, the previous-frame rule,
the pointer-rank quirk, temporal positions and key weights."""

import random

import pytest
import torch

from sam2long.engine.stages import ModelGeometry
from sam2long.runtime.memory_bank import NewEntries, PathwayBank

GEO = ModelGeometry(image_size=64, feat_hw=(2, 2), hidden_dim=8, mem_dim=4, num_maskmem=4,
                    max_obj_ptrs=16, hr0_channels=2, hr1_channels=2)


def _reference_memory(history, t, start, num_frames, iou_thre, num_maskmem):
    """history: {frame: (entry_id, iou, score)} along one lineage. Returns the frames as
    [(entry_id or 'cond', t_pos, score)] and pointers as [(entry_id or 'cond', dist, score)]."""
    max_ptrs = min(num_frames, 16)
    valid = []
    if t > start + 1:
        for i in range(t - 1, start, -1):
            _, iou, score = history[i]
            if iou > iou_thre and score > 0:
                valid.insert(0, i)
            if len(valid) >= max_ptrs - 1:
                break
        if t - 1 not in valid:
            valid.append(t - 1)
    frames = [("cond", 0, 10.0)]
    for t_pos in range(1, num_maskmem):
        idx = t_pos - num_maskmem
        if idx < -len(valid):
            continue
        entry_id, _, score = history[valid[idx]]
        frames.append((entry_id, t_pos, score))
    ptrs = [("cond", t - start, 10.0)]
    for t_diff in range(1, max_ptrs):
        if -t_diff <= -len(valid):
            break
        entry_id, _, score = history[valid[-t_diff]]
        ptrs.append((entry_id, t_diff, score))
    return frames, ptrs


def _expected_weights(scores):
    n = len(scores)
    if n == 0:
        return []
    lin = torch.linspace(0.95, 1.05, n)
    order = sorted(range(n), key=lambda i: (scores[i], i))
    weights = [0.0] * n
    for rank, i in enumerate(order):
        weights[i] = lin[rank].item()
    return weights


@pytest.mark.parametrize("num_frames,num_path,seed", [(40, 3, 0), (40, 1, 1), (9, 4, 2), (30, 8, 3)])
def test_bank_matches_reference_walk(num_frames, num_path, seed):
    rng = random.Random(seed)
    iou_thre, start = 0.3, 2
    bank = PathwayBank(GEO, 1, num_path, num_frames, iou_thre, torch.device("cpu"))
    bank.set_condition(0, torch.full((4, 4), -1.0), torch.full((8,), -1.0), start)
    histories = [dict() for _ in range(num_path)]
    next_id = 1
    for t in range(start + 1, num_frames):
        memory, mem_ids = bank.memory_inputs(torch.zeros(num_path, dtype=torch.long),
                                             torch.arange(num_path), t)
        same_entry = {}  # (feature id) <-> (bank id) must be one to one across rows
        for k in range(num_path):
            for s in range(4):
                if memory.mem_valid[k, s]:
                    same_entry.setdefault(float(memory.mem_feats[k, s, 0, 0]), set()).add(int(mem_ids[k, s]))
        assert all(len(v) == 1 for v in same_entry.values())
        assert len({next(iter(v)) for v in same_entry.values()}) == len(same_entry)
        for k in range(num_path):
            frames, ptrs = _reference_memory(histories[k], t, start, num_frames, iou_thre, 4)
            valid = memory.mem_valid[k]
            got_frames = [
                ("cond" if s == 0 else int(memory.mem_feats[k, s, 0, 0]),
                 4 - 1 - int(memory.mem_tpos[k, s]))
                for s in range(4) if valid[s]
            ]
            assert got_frames == [(f[0], f[1]) for f in frames], (t, k)
            # entry ids identify the stored entries: same entry <=> same id
            got_ids = [int(mem_ids[k, s]) for s in range(4) if valid[s]]
            assert len(set(got_ids)) == len(got_ids)
            pvalid = memory.ptr_valid[k]
            got_ptrs = [
                ("cond" if s == 0 else int(memory.ptrs[k, s, 0]),
                 round(float(memory.ptr_pos[k, s]) * (min(num_frames, 16) - 1)))
                for s in range(pvalid.shape[0]) if pvalid[s]
            ]
            assert got_ptrs == [(p[0], p[1]) for p in ptrs], (t, k)
            if len(frames) > 1:
                want_fw = _expected_weights([f[2] for f in frames])
                want_pw = _expected_weights([p[2] for p in ptrs])
            else:  # only the conditioning frame: no modulation at all
                want_fw, want_pw = [1.0], [1.0] * len(ptrs)
            assert memory.mem_weight[k][valid].tolist() == pytest.approx(want_fw, abs=1e-7)
            assert memory.ptr_weight[k][pvalid].tolist() == pytest.approx(want_pw, abs=1e-7)
        # A new frame: random parents (first tracked frame: all from slot 0) and entries.
        parents = [0] * num_path if t == start + 1 else [rng.randrange(num_path) for _ in range(num_path)]
        ids, ious, scores = [], [], []
        for k in range(num_path):
            ids.append(next_id)
            next_id += 1
            ious.append(rng.choice([0.05, 0.2, 0.3, 0.31, 0.9]))
            scores.append(rng.choice([-1.5, -0.01, 0.0, 0.02, 2.5]) + 1e-3 * k)
        histories = [dict(histories[p]) for p in parents]
        for k in range(num_path):
            # The reference compares float32 tensors' values: 0.3 stored is above 0.3.
            f32 = torch.tensor([ious[k], scores[k]], dtype=torch.float32).tolist()
            histories[k][t] = (ids[k], f32[0], f32[1])
        bank.advance(
            torch.zeros(1, dtype=torch.long),
            torch.tensor([parents]),
            NewEntries(
                feat=torch.tensor(ids, dtype=torch.float32)[None, :, None, None].expand(1, num_path, 4, 4).to(torch.bfloat16),
                ptr=torch.tensor(ids, dtype=torch.float32)[None, :, None].expand(1, num_path, 8),
                score=torch.tensor([scores]),
                iou=torch.tensor([ious]),
            ),
            torch.arange(num_path)[None],
        )


def test_state_size_does_not_grow_with_video_length():
    short = PathwayBank(GEO, 2, 3, 20, 0.1, torch.device("cpu"))
    long = PathwayBank(GEO, 2, 3, 100_000, 0.1, torch.device("cpu"))

    def nbytes(bank):
        return sum(v.numel() * v.element_size() for v in vars(bank).values() if torch.is_tensor(v))

    assert nbytes(long) <= nbytes(short) * 1.2
