#!/usr/bin/env python
"""tools/evaluate.py against the official DAVIS 2017 evaluation on a DAVIS-sized synthetic set:
wall time of each, and whether the numbers are the same.

The official tool is run from a checkout you point to (`--davis_repo`), with an interpreter that
has its dependencies (`--official_python`): its own `evaluation_method.py`, in a child process,
through `runpy` so that its full-precision tables can be read back. Ours runs as
`tools/evaluate.py` in a child process with the same number of processes (the official tool has
one). Both timings are wall clock from process start to exit, interpreter start-up and imports
included. The synthetic set (default 30 sequences x 80 frames x 480x854, 2-3 objects) is
written once into `--work` and reused.

    python benchmarks/bench_evaluate.py --davis_repo davis2017-evaluation \\
        --official_python /work/official-eval-venv/bin/python --work /tmp/davis_bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.eval_cases import Case, bench_sequences, write_davis  # noqa: E402

# Runs the official script unchanged and saves its two result tables at full precision.
_OFFICIAL = """
import json, runpy, sys
out = sys.argv.pop(1)
g = runpy.run_path("evaluation_method.py", run_name="__main__")
json.dump({"global": g["table_g"].to_dict("list"), "per_sequence": g["table_seq"].to_dict("list")},
          open(out, "w"))
"""


def _prepare(work: Path, sequences: int, frames: int, height: int, width: int) -> tuple[Path, Path]:
    root, pred = work / "DAVIS", work / "pred"
    stamp = work / "dataset.json"
    spec = {"sequences": sequences, "frames": frames, "height": height, "width": width, "seed": 0}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return root, pred
    shutil.rmtree(work, ignore_errors=True)
    start = time.perf_counter()
    write_davis(Case("bench", bench_sequences(0, sequences, frames, height, width)), str(root), str(pred))
    stamp.write_text(json.dumps(spec))
    print(f"wrote the synthetic set in {time.perf_counter() - start:.0f}s: {work}")
    return root, pred


def _timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis_repo", required=True, help="checkout of davisvideochallenge/davis2017-evaluation")
    p.add_argument("--official_python", default=sys.executable,
                   help="Python with the official tool's dependencies (numpy, scipy, pandas, opencv, scikit-image)")
    p.add_argument("--work", default="/tmp/davis_eval_bench", help="where the synthetic set goes (reused)")
    p.add_argument("--sequences", type=int, default=30, help="number of sequences")
    p.add_argument("--frames", type=int, default=80, help="frames per sequence")
    p.add_argument("--height", type=int, default=480, help="frame height")
    p.add_argument("--width", type=int, default=854, help="frame width")
    p.add_argument("--num_processes", type=int, default=1,
                   help="our worker processes (the official tool has one; compare at 1)")
    p.add_argument("--json", default=None, help="also write the timings and the comparison here")
    args = p.parse_args(argv)
    if not (Path(args.davis_repo) / "evaluation_method.py").is_file():
        raise SystemExit(f"--davis_repo {args.davis_repo}: no evaluation_method.py there (clone "
                         "davisvideochallenge/davis2017-evaluation first)")

    work = Path(args.work).resolve()
    root, pred = _prepare(work, args.sequences, args.frames, args.height, args.width)
    official_out, ours_out = work / "official", work / "ours"
    for folder in (official_out, ours_out):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    for name in os.listdir(pred):  # the official tool reuses CSVs it finds there instead of scoring
        if name.endswith(".csv"):
            os.remove(pred / name)

    official_s = _timed([args.official_python, "-c", _OFFICIAL, str(official_out / "tables.json"),
                         "--task", "semi-supervised", "--set", "val", "--davis_path", str(root),
                         "--results_path", str(pred)], cwd=os.path.abspath(args.davis_repo))
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        shutil.move(str(pred / name), str(official_out / name))
    ours_s = _timed([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--benchmark", "davis",
                     "--davis_path", str(root), "--pred_root", str(pred), "--json", str(ours_out / "scores.json"),
                     "--output_dir", str(ours_out), "--num_processes", str(args.num_processes)], cwd=str(ROOT))

    tables = json.loads((official_out / "tables.json").read_text())
    ours = json.loads((ours_out / "scores.json").read_text())
    global_diff = max(abs(ours[k] - v[0]) for k, v in tables["global"].items())
    seq = tables["per_sequence"]
    object_diff = max(max(abs(ours["per_object"][n]["J-Mean"] - j), abs(ours["per_object"][n]["F-Mean"] - f))
                      for n, j, f in zip(seq["Sequence"], seq["J-Mean"], seq["F-Mean"]))
    same_csv = all((official_out / n).read_bytes() == (ours_out / n).read_bytes()
                   for n in ("global_results-val.csv", "per-sequence_results-val.csv"))
    report = {"sequences": args.sequences, "frames": args.frames, "size": f"{args.width}x{args.height}",
              "objects": len(seq["Sequence"]), "official_s": official_s, "ours_s": ours_s,
              "num_processes": args.num_processes, "speedup": official_s / ours_s,
              "max_global_diff": global_diff, "max_object_diff": object_diff, "csv_identical": same_csv,
              "J&F-Mean": ours["J&F-Mean"]}
    print(f"{args.sequences} sequences x {args.frames} frames at {args.width}x{args.height}, "
          f"{len(seq['Sequence'])} objects")
    print(f"official: {official_s:.1f}s   ours ({args.num_processes} process): {ours_s:.1f}s   "
          f"speed-up {official_s / ours_s:.1f}x")
    print(f"J&F-Mean {ours['J&F-Mean']:.6f}; largest difference: globals {global_diff:.1e}, "
          f"per object {object_diff:.1e}; CSV files identical: {same_csv}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if same_csv and global_diff == 0 and object_diff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
