"""Pathway selection with hand-made scores (SAM2LONG_ALGORITHM.md, "the selection")."""

import math

import torch

from sam2long.runtime.selection import rounded_iou_key, select_candidates


def _select(acc, ious, scores, uncertainty=2.0):
    sel = select_candidates(
        torch.tensor([acc], dtype=torch.float64),
        torch.tensor([ious], dtype=torch.float32),
        torch.tensor([scores], dtype=torch.float32),
        uncertainty,
    )
    return list(zip(sel.parent[0].tolist(), sel.mask_idx[0].tolist())), sel.score[0].tolist()


def test_confident_keeps_top_scores_with_stable_ties():
    # Identical pathways (copies): ties keep pathway-major order.
    ious = [[0.9, 0.5, 0.7]] * 3
    picked, score = _select([0.0] * 3, ious, [5.0] * 3)
    assert picked == [(0, 0), (1, 0), (2, 0)]
    assert math.isclose(score[0], math.log(0.9 + 1e-5), rel_tol=1e-6)


def test_confident_uses_accumulated_scores():
    ious = [[0.9, 0.1, 0.1], [0.8, 0.7, 0.1], [0.2, 0.2, 0.2]]
    picked, _ = _select([-1.0, 0.0, 0.0], ious, [3.0, 3.0, 3.0])
    # scores: p0: -1+log .9=-1.105; p1: log .8=-.223, log .7=-.357; p2: log .2=-1.609
    assert picked == [(1, 0), (1, 1), (0, 0)]


def test_uncertain_deduplicates_rounded_signed_iou():
    # All object scores small -> uncertain; p1/p2 copies of p0 give equal rounded IoUs.
    ious = [[0.901, 0.5, 0.3]] * 3
    picked, _ = _select([0.0] * 3, ious, [0.5, 0.5, 0.5])
    assert picked == [(0, 0), (0, 1), (0, 2)]


def test_uncertain_sign_separates_present_and_absent():
    # Same IoU 0.9, but pathway 1's object score is negative: -0.9 differs from +0.9.
    ious = [[0.9, 0.1, 0.1], [0.9, 0.1, 0.1]]
    picked, _ = _select([0.0, 0.0], ious, [0.5, -0.5])
    assert picked == [(0, 0), (1, 0)]


def test_uncertain_rounding_merges_close_ious():
    ious = [[0.904, 0.896, 0.2], [0.899, 0.5, 0.4]]  # all of .904/.896/.899 round to 0.90
    picked, _ = _select([0.0, 0.0], ious, [1.0, 1.0])
    assert picked == [(0, 0), (1, 1)]


def test_uncertain_diversity_fill_adds_each_uncovered_pathway_best():
    # Every candidate rounds to the same key: one kept, then pathways 1 and 2 top up
    # with their best-placed candidate, in pathway order.
    ious = [[0.50, 0.501, 0.502], [0.499, 0.503, 0.50], [0.504, 0.50, 0.498]]
    picked, _ = _select([0.0, -0.001, 0.0], ious, [0.1, 0.1, 0.1])
    assert picked[0] == (2, 0)  # best score overall (0.504, acc 0)
    assert picked[1:] == [(0, 2), (1, 1)]  # uncovered pathways 0 then 1, their best


def test_uncertainty_threshold_is_strict_on_abs_score():
    ious = [[0.9, 0.5, 0.1]] * 2
    # max |score| == uncertainty -> uncertain: the copy (1, 0) repeats IoU 0.90
    assert _select([0.0, 0.0], ious, [-2.0, -1.0], 2.0)[0] == [(0, 0), (0, 1)]
    # |score| above it -> confident: both copies of the best
    assert _select([0.0, 0.0], ious, [-2.5, -1.0], 2.0)[0] == [(0, 0), (1, 0)]


def _reference_selection(acc, ious, scores, num_path, uncertainty):
    """A literal loop version of the algorithm contract, to compare the tensor version with."""
    cands = []
    for p in range(num_path):
        for j in range(3):
            s = acc[p] + math.log(float(ious[p][j]) + 1e-5)
            signed = float(ious[p][j]) if scores[p] > 0 else -float(ious[p][j])
            cands.append((p, j, s, signed))
    ordered = sorted(cands, key=lambda c: c[2], reverse=True)
    if max(abs(float(x)) for x in scores) > uncertainty:
        return [(c[0], c[1]) for c in ordered[:num_path]]
    kept, seen = [], set()
    for c in ordered:
        if round(c[3], 2) not in seen:
            kept.append(c)
            seen.add(round(c[3], 2))
        if len(kept) == num_path:
            break
    covered = {c[0] for c in kept}
    for p in range(num_path):
        if len(kept) == num_path:
            break
        if p not in covered:
            kept.append(next(c for c in ordered if c[0] == p))
    return [(c[0], c[1]) for c in kept]


def test_matches_loop_version_on_random_inputs():
    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        num_path = 1 + trial % 8
        # coarse IoUs so that ties and rounding collisions are common
        ious = (torch.randint(0, 40, (num_path, 3), generator=gen) / 40.0).float()
        if trial % 3 == 0:
            ious[1:] = ious[0]  # copies
        acc = (torch.randint(-8, 1, (num_path,), generator=gen) / 4.0).double()
        scores = (torch.randn(num_path, generator=gen) * 2).float()
        picked, _ = _select(acc.tolist(), ious.tolist(), scores.tolist())
        f32 = ious.tolist()
        assert picked == _reference_selection(acc.tolist(), f32, scores.tolist(), num_path, 2.0), trial


def test_single_pathway_is_best_candidate_in_both_branches():
    for scores in ([5.0], [0.1]):
        picked, _ = _select([0.0], [[0.2, 0.8, 0.5]], scores)
        assert picked == [(0, 1)]


def test_rounded_key_matches_python_round():
    values = torch.tensor([0.125, 0.375, 0.005, 0.015, 0.9949999, 0.001, 0.0], dtype=torch.float32)
    for positive in (True, False):
        keys = rounded_iou_key(values, torch.full(values.shape, positive))
        for v, k in zip(values.tolist(), keys.tolist()):
            expected = round(v if positive else -v, 2)
            assert k / 100 == expected, (v, k, expected)


def test_batched_objects_are_independent():
    ious = torch.tensor([[[0.9, 0.5, 0.7]] * 2, [[0.3, 0.6, 0.2]] * 2])
    sel = select_candidates(torch.zeros(2, 2, dtype=torch.float64), ious,
                            torch.tensor([[5.0, 5.0], [0.1, 0.1]]), 2.0)
    assert sel.mask_idx.tolist() == [[0, 0], [1, 0]]
    assert sel.parent.tolist() == [[0, 1], [0, 0]]
