"""Selection's uncertain branch, forced: every object score within the uncertainty and IoUs on
a few levels, so the walk over distinct rounded IoUs often runs short and the top-up of
pathways with no kept candidate decides the rest (SAM2LONG_ALGORITHM.md, "the selection").
Checked against a plain loop written from the algorithm text."""

import math

import torch

from sam2long.runtime.selection import select_candidates


def _loop_selection(acc, ious, scores, uncertainty):
    """The contract, one candidate at a time: returns [(pathway, mask)] in kept order."""
    num_path = len(acc)
    cands = []  # (pathway, mask, score, signed iou), pathway-major then mask order
    for p in range(num_path):
        for j in range(3):
            signed = ious[p][j] if scores[p] > 0 else -ious[p][j]
            cands.append((p, j, acc[p] + math.log(ious[p][j] + 1e-5), signed))
    ordered = sorted(cands, key=lambda c: -c[2])  # Python's sort is stable
    if max(abs(s) for s in scores) > uncertainty:
        return [c[:2] for c in ordered[:num_path]]
    kept, seen = [], set()
    for c in ordered:
        if len(kept) == num_path:
            break
        key = round(c[3], 2)
        if key not in seen:
            seen.add(key)
            kept.append(c)
    for p in range(num_path):
        if len(kept) == num_path:
            break
        if all(c[0] != p for c in kept):
            kept.append(next(c for c in ordered if c[0] == p))
    return [c[:2] for c in kept]


def _tensor_selection(acc, ious, scores, uncertainty):
    sel = select_candidates(torch.tensor([acc], dtype=torch.float64), torch.tensor([ious]),
                            torch.tensor([scores]), uncertainty)
    return list(zip(sel.parent[0].tolist(), sel.mask_idx[0].tolist())), sel.score[0].tolist()


def test_the_issue_example_needs_the_uncovered_pathway_rule():
    # The walk keeps (0, 0) for +.90 and (1, 1) for +.50, then runs out of new keys. Only
    # pathway 2 has no kept candidate: it tops up with its best, (2, 2). Pathways 0 and 1
    # are covered; topping up pathway 1 too would put (1, 0) in the last slot.
    ious = [[0.9, 0.9, 0.9], [0.9, 0.5, 0.5], [0.5, 0.5, 0.9]]
    acc = [0.0, -0.01, -1.0]
    want = _loop_selection(acc, ious, [0.5] * 3, 2.0)
    assert _tensor_selection(acc, ious, [0.5] * 3, 2.0)[0] == want == [(0, 0), (1, 1), (2, 2)]


def test_uncertain_branch_matches_the_loop_on_random_inputs():
    gen = torch.Generator().manual_seed(26)
    cases: dict[int, list] = {}  # pathway count -> inputs, selected as one batch of objects
    for trial in range(2000):
        num_path = 2 + trial % 5
        levels = 2 + trial % 3  # 2..4 distinct IoU values: the walk often runs short
        ious = (torch.randint(1, levels + 1, (num_path, 3), generator=gen) / (levels + 1)).float()
        if trial % 4 == 0:
            ious[1:] = ious[0]  # exact copies, as after a confident frame
        acc = (-torch.randint(0, 6, (num_path,), generator=gen) / 100.0).double()
        if trial % 5 == 0:
            acc[:] = 0.0  # ties: the stable order decides
        scores = ((torch.rand(num_path, generator=gen) * 2 - 1) * 1.9).float()  # |s| < 2
        if trial % 3 == 0:
            scores = scores.abs() + 0.01  # one sign only: fewer distinct keys
        if trial % 7 == 0:
            scores[0] = 0.0  # exactly zero counts as absent: the key's sign is minus
        cases.setdefault(num_path, []).append((acc, ious, scores))
    topped_up = 0
    for num_path, batch in cases.items():
        acc, ious, scores = (torch.stack(x) for x in zip(*batch))
        sel = select_candidates(acc, ious, scores, 2.0)
        for row, (a, i, s) in enumerate(batch):
            args = (a.tolist(), i.tolist(), s.tolist())
            got = list(zip(sel.parent[row].tolist(), sel.mask_idx[row].tolist()))
            assert got == _loop_selection(*args, 2.0), args
            for (p, j), score in zip(got, sel.score[row].tolist()):
                assert math.isclose(score, args[0][p] + math.log(args[1][p][j] + 1e-5), rel_tol=1e-12)
            keys = {round(v if sc > 0 else -v, 2) for r, sc in zip(args[1], args[2]) for v in r}
            topped_up += len(keys) < num_path
    assert topped_up > 300  # the top-up really ran, often


def test_an_object_score_of_exactly_zero_signs_the_key_negative():
    # "+ when its pathway's object score is > 0, else -": 0.0 gives -.90, distinct from +.90.
    ious = [[0.9, 0.1, 0.1], [0.9, 0.1, 0.1]]
    assert _tensor_selection([0.0, 0.0], ious, [0.5, 0.0], 2.0)[0] == [(0, 0), (1, 0)]
    assert _loop_selection([0.0, 0.0], ious, [0.5, 0.0], 2.0) == [(0, 0), (1, 0)]
