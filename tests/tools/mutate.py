#!/usr/bin/env python
"""One-line mutation run over the memory tree's runtime: does some test fail for each mutant?

Each mutant replaces one exact line fragment in one file (it must occur exactly once), runs a
chosen fast subset of the tests with `-x` and a time limit, and puts the file back, always
(also on Ctrl-C or SIGTERM). Prints a table: mutant, killed/survived, and the first failing
test. Survivors are either killed by a test added for them or argued equivalent in
MUTATION_RESULTS.md beside this script.

Not a test: pytest collects only tests/test_*.py. Run from the repository root:

    PYTHONPATH=$PWD python tests/tools/mutate.py               # every mutant
    PYTHONPATH=$PWD python tests/tools/mutate.py -k spill tracker_acc0   # names containing these
    PYTHONPATH=$PWD python tests/tools/mutate.py --list
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SELECTION = ["tests/test_selection.py", "tests/test_selection_uncertain.py"]
SPILL = ["tests/test_spill_reuse.py", "tests/test_spill.py", "tests/test_lineage.py"]
LINEAGE = ["tests/test_lineage.py", "tests/test_spill.py::test_lineages_that_never_coalesce_hold_at_most_the_budget_in_ram"]
BANK = ["tests/test_memory_choice.py", "tests/test_memory_choice_edges.py"]
TRACKER = ["tests/test_tracker_reference.py",
           "tests/test_tracker.py::test_later_object_starts_at_its_own_frame_and_objects_are_independent",
           "tests/test_tracker.py::test_memory_tree_is_exercised_and_results_stream"]


@dataclass
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: list[str]


M = Mutant
MUTANTS = [
    # -- runtime/selection.py ------------------------------------------------------------
    M("sel_topup_covered", "runtime/selection.py",  # issue 26, mutant 1
      "top_up = (is_best_of_path & ~path_has_kept[:, None, :]).any(2)",
      "top_up = (is_best_of_path).any(2)", SELECTION),
    M("sel_log_eps", "runtime/selection.py", "torch.log(ious.double() + 1e-5)", "torch.log(ious.double() + 1e-3)", SELECTION),
    M("sel_unstable_sort", "runtime/selection.py", "descending=True, stable=True)", "descending=True, stable=False)", SELECTION),
    M("sel_key_sign", "runtime/selection.py", "(obj_score > 0)[:, :, None]", "(obj_score >= 0)[:, :, None]", SELECTION),
    M("sel_round_floor", "runtime/selection.py", "torch.round(ious.double() * 100)", "torch.floor(ious.double() * 100)", SELECTION),
    M("sel_keep_limit", "runtime/selection.py", "torch.cumsum(first_of_key.long(), 1) <= num_path", "torch.cumsum(first_of_key.long(), 1) < num_path", SELECTION),
    M("sel_earlier_diag", "runtime/selection.py", "dtype=torch.bool, device=device), -1)", "dtype=torch.bool, device=device), 0)", SELECTION),
    M("sel_confident_ge", "runtime/selection.py", "obj_score.double().abs().amax(1) > uncertainty", "obj_score.double().abs().amax(1) >= uncertainty", SELECTION),
    M("sel_confident_noabs", "runtime/selection.py", "obj_score.double().abs().amax(1)", "obj_score.double().amax(1)", SELECTION),
    M("sel_topup_order", "runtime/selection.py", "num_cand + pathway, big)", "num_cand - pathway, big)", SELECTION),
    M("sel_best_last", "runtime/selection.py", "best_pos_of_path = same_path.long().argmax(1)", "best_pos_of_path = same_path.long().flip(1).argmax(1)", SELECTION),
    # -- runtime/lineage.py -------------------------------------------------------------
    M("lin_slot_max", "runtime/lineage.py", "return self._emit_through(index, int(slots.min()))", "return self._emit_through(index, int(slots.max()))", LINEAGE),
    M("lin_no_parent", "runtime/lineage.py", "slot = int(entry.parent[slot])", "slot = slot", LINEAGE),
    M("lin_finish_last", "runtime/lineage.py", "return self._emit_through(len(self._pending) - 1, 0)", "return self._emit_through(len(self._pending) - 1, -1)", LINEAGE),
    M("lin_ignore_copies", "runtime/lineage.py", "len(np.unique(entry.copy_class[slots])) == 1", "len(np.unique(slots)) == 1", LINEAGE),
    M("lin_pop_one_less", "runtime/lineage.py", "for _ in range(newest_index + 1):", "for _ in range(newest_index):", LINEAGE),
    # -- runtime/memory_bank.py --------------------------------------------------------
    M("bank_iou_ge", "runtime/memory_bank.py", "good = (new.iou.double() > self.iou_thre) & (new.score > 0)", "good = (new.iou.double() >= self.iou_thre) & (new.score > 0)", BANK),
    M("bank_score_ge", "runtime/memory_bank.py", "good = (new.iou.double() > self.iou_thre) & (new.score > 0)", "good = (new.iou.double() > self.iou_thre) & (new.score >= 0)", BANK),
    M("bank_ptr_quirk", "runtime/memory_bank.py", "p_valid = p_exists & (ptr_rank <= (length - 1)[:, None])", "p_valid = p_exists & (ptr_rank <= length[:, None])", BANK),
    M("bank_cond_score", "runtime/memory_bank.py", "COND_SCORE = 10.0", "COND_SCORE = 0.0", BANK),
    M("bank_prev_good", "runtime/memory_bank.py", "prev_valid = self.has_prev[objs, slots] & ~self.prev_good[objs, slots]", "prev_valid = self.has_prev[objs, slots]", BANK),
    M("bank_no_modulate_rule", "runtime/memory_bank.py", "modulate = (mem_valid.sum(1) > 1)[:, None]", "modulate = (mem_valid.sum(1) > 0)[:, None]", BANK),
    M("bank_tie_order", "runtime/memory_bank.py", "(idx[None, :] < idx[:, None])", "(idx[None, :] > idx[:, None])", BANK),
    M("bank_count_cap", "runtime/memory_bank.py", "(good_count + 1).clamp(max=self.G)", "(good_count + 1)", BANK),
    M("bank_ptr_norm", "runtime/memory_bank.py", "ptr_pos = dist / G", "ptr_pos = dist / (G + 1)", BANK),
    M("bank_max_ptrs", "runtime/memory_bank.py", "max_ptrs = max(2, min(num_frames, g.max_obj_ptrs))", "max_ptrs = max(2, g.max_obj_ptrs)", BANK),
    M("bank_tpos", "runtime/memory_bank.py", "frame_rank - 1), 1)", "frame_rank), 1)", BANK),
    # -- runtime/spill.py ----------------------------------------------------------------
    M("spill_free_reset", "runtime/spill.py",  # issue 26, mutant 2
      "self._end, self._free = 0, {}", "self._end = 0", SPILL),
    M("spill_no_truncate", "runtime/spill.py", "self._file.truncate(0)", "pass", SPILL),
    M("spill_end_max", "runtime/spill.py", "self._end = max(self._end, offset + array.nbytes)", "self._end = offset + array.nbytes", SPILL),
    M("spill_ram_lt", "runtime/spill.py", "if self.bytes_in_ram + array.nbytes <= self.ram_bytes:", "if self.bytes_in_ram + array.nbytes < self.ram_bytes:", SPILL),
    M("spill_index_offset", "runtime/spill.py", "offset += index * int(np.prod(shape)) * held.dtype.itemsize", "offset += index * int(np.prod(shape))", SPILL),
    M("spill_free_any_size", "runtime/spill.py", "free = self._free.get(array.nbytes)", "free = next(iter(self._free.values()), None)", SPILL),
    M("spill_ram_release", "runtime/spill.py", "self.bytes_in_ram -= held.nbytes", "self.bytes_in_ram -= 0", SPILL),
    # -- runtime/tracker.py --------------------------------------------------------------
    M("tracker_acc0", "runtime/tracker.py",  # issue 26, mutant 3
      "acc = torch.where(first[:, None], 0.0, sel.score)", "acc = sel.score", TRACKER),
    M("tracker_first_best_last", "runtime/tracker.py", "best = torch.argmax(ious[:, 0], dim=1)", "best = torch.argmin(ious[:, 0], dim=1)", TRACKER),
    M("tracker_first_best_zero", "runtime/tracker.py", "best = torch.argmax(ious[:, 0], dim=1)",
      "best = torch.zeros_like(torch.argmax(ious[:, 0], dim=1))", TRACKER),
    M("tracker_first_parent", "runtime/tracker.py", "parent = torch.where(first[:, None], 0, sel.parent)", "parent = sel.parent", TRACKER),
    M("tracker_click_scale", "runtime/tracker.py", "torch.tensor([w, h]) * size", "torch.tensor([h, w]) * size", TRACKER),
    M("tracker_one_click_best", "runtime/tracker.py", "best = int(torch.argmax(dec.ious[0]))", "best = 0", TRACKER),
    M("tracker_no_mem_embed", "runtime/tracker.py", "pix = feats.feat + backend.no_mem_embed.view(1, -1, 1, 1)", "pix = feats.feat", TRACKER),
    M("tracker_cond_start", "runtime/tracker.py", "first = s.bank.start[objs] == t - 1\n        cls = s.copy_class[objs]  # [A, P]",
      "first = s.bank.start[objs] == t\n        cls = s.copy_class[objs]  # [A, P]", TRACKER),
    M("tracker_copy_class", "runtime/tracker.py", "new_cls = _first_index_of_equal(cls.gather(1, parent) * NUM_MASKS + mask_idx)",
      "new_cls = _first_index_of_equal(parent * NUM_MASKS + mask_idx)", TRACKER),
    M("tracker_kept_score", "runtime/tracker.py", "kept_score = dec.obj_score[src_row]", "kept_score = dec.obj_score[src_row].abs()", TRACKER),
    M("tracker_prompt_logit", "runtime/tracker.py", "PROMPT_LOGIT = 10.0", "PROMPT_LOGIT = 5.0", TRACKER),
]


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(f"signal {signum}")


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        match = re.match(r"(FAILED|ERROR) (\S+)", line)
        if match:
            return match.group(2)
    return ""


def run_mutant(mutant: Mutant, timeout: float, python: str) -> tuple[str, str, float]:
    path = ROOT / mutant.path
    original = path.read_bytes()
    text = original.decode()
    if text.count(mutant.old) != 1:
        return "BAD", f"fragment found {text.count(mutant.old)} times", 0.0
    start = time.monotonic()
    try:
        path.write_text(text.replace(mutant.old, mutant.new))
        cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-rfE", *mutant.tests]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # not counted as killed: rerun it with more time
            return "timeout", "", time.monotonic() - start
        if proc.returncode == 0:
            return "survived", "", time.monotonic() - start
        if proc.returncode in (1, 2):  # tests failed / errored while collecting
            return "killed", _first_failure(proc.stdout) or f"(pytest rc {proc.returncode})", time.monotonic() - start
        return "ERROR", f"pytest rc {proc.returncode}: {proc.stdout[-300:]}", time.monotonic() - start
    finally:
        path.write_bytes(original)  # always put the file back


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-k", nargs="*", default=[], help="run only mutants whose name contains one of these")
    p.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    p.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.k or any(k in m.name for k in args.k)]
    if args.list:
        for m in chosen:
            found = (ROOT / m.path).read_text().count(m.old)
            print(f"{m.name:26} {found} {m.path:24} {m.old.splitlines()[0][:60]!r} -> {m.new.splitlines()[0][:60]!r}")
        return 0
    signal.signal(signal.SIGTERM, _raise_stop)
    rows = []
    try:
        for m in chosen:
            status, by, seconds = run_mutant(m, args.timeout, sys.executable)
            rows.append((m.name, m.path, status, by, seconds))
            print(f"{m.name:26} {status:9} {seconds:6.0f}s  {by}", flush=True)
    except (KeyboardInterrupt, _Stop):
        print("interrupted: the mutated file was put back", file=sys.stderr)
    print()
    print(f"| mutant | file | result | caught by |\n|---|---|---|---|")
    for name, path, status, by, _ in rows:
        print(f"| {name} | {path} | {status} | {by} |")
    killed = sum(r[2] == "killed" for r in rows)
    print(f"\n{len(rows)} mutants: {killed} killed, {len(rows) - killed} not killed")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
