#!/usr/bin/env python
"""Run the OFFICIAL evaluation tools on the synthetic cases and store their numbers as test data.

This script drives checkouts of the official code that you point it to; it contains no
evaluation logic of its own. It runs each tool's own command-line script in this process
(`runpy`, with `sys.argv` set), keeps what the script computed, and records per-frame values by
wrapping the official per-object statistics functions. Multiprocessing pools are replaced by an
in-process one so those wrappers see every call (the numbers do not depend on it).

Run it with a Python that has the official tools' dependencies (numpy, scipy, pandas,
opencv-python, scikit-image, pillow, tqdm), for example:

    python3 -m venv /work/official-eval-venv
    /work/official-eval-venv/bin/pip install numpy scipy pandas opencv-python scikit-image pillow tqdm
    /work/official-eval-venv/bin/python benchmarks/official_eval.py \\
        --davis_repo davis2017-evaluation --sav_repo sam2 --lvos_repo lvos-evaluation \\
        --mose_repo MOSE-api --out tests/data/evaluation

Each repository's commit is read with `git rev-parse HEAD`, or from a file named COMMIT in the
checkout. Output: one JSON per benchmark and case (`<benchmark>_<case>.json`) with the command,
the commit, package versions, the case's fingerprint, the global and per-object numbers, the
per-frame values and the files the tool wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.eval_cases import (make_case, write_davis, write_lvos, write_mose,  # noqa: E402
                                   write_sav)

SAV_SKIP = ("border",)  # a video left without predictions (SA-V skips it, MOSEv2 scores it 0)
MOSE_SKIP = ("border",)


class InlinePool:
    """multiprocessing.Pool's interface, run in this process."""

    def __init__(self, *args, **kwargs):
        pass

    def imap(self, func, iterable, chunksize=1):
        return map(func, iterable)

    imap_unordered = imap

    def map(self, func, iterable, chunksize=None):
        return list(map(func, iterable))

    def close(self):
        pass

    def join(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _commit(repo: str) -> str:
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        path = os.path.join(repo, "COMMIT")
        return open(path).read().strip() if os.path.isfile(path) else "unknown"


def _versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name, module in (("numpy", "numpy"), ("scipy", "scipy"), ("pandas", "pandas"),
                         ("opencv-python", "cv2"), ("scikit-image", "skimage"), ("pillow", "PIL"),
                         ("tqdm", "tqdm")):
        try:
            out[name] = __import__(module).__version__
        except ImportError:
            pass
    return out


def _float(v):
    """JSON-safe number (NaN stays NaN: Python's json reads it back)."""
    if v is None:
        return None
    return float(v)


@contextlib.contextmanager
def _script_env(repo_dir: str, argv: list[str], cwd: str):
    """sys.path, sys.argv and cwd for running a tool's script; the tool's own modules are
    forgotten afterwards so another checkout can be imported next."""
    saved = (list(sys.path), list(sys.argv), os.getcwd(), set(sys.modules))
    sys.path.insert(0, repo_dir)
    sys.argv = argv
    os.chdir(cwd)
    try:
        yield
    finally:
        sys.path[:] = saved[0]
        sys.argv = saved[1]
        os.chdir(saved[2])
        for name in set(sys.modules) - saved[3]:
            if not name.startswith(("numpy", "scipy", "pandas", "cv2", "skimage", "PIL", "tqdm")):
                del sys.modules[name]


def _run_quiet(path: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        return runpy.run_path(path, run_name="__main__")


def _record_statistics(utils_module, per_frame: list) -> None:
    """Wrap the per-object statistics so each object's per-frame values are kept, in call order."""
    original = utils_module.db_statistics

    def recording(values):
        per_frame.append(np.asarray(values, dtype=np.float64).ravel().tolist())
        return original(values)

    utils_module.db_statistics = recording


def _table(df) -> dict:
    return {col: [v if isinstance(v, str) else _float(v) for v in df[col].tolist()] for col in df.columns}


def run_davis(repo: str, case_name: str, work: str, unsupervised: bool) -> dict:
    case = make_case(case_name)
    root, pred = os.path.join(work, "DAVIS"), os.path.join(work, "pred")
    write_davis(case, root, pred, unsupervised=unsupervised)
    task = "unsupervised" if unsupervised else "semi-supervised"
    argv = ["evaluation_method.py", "--task", task, "--results_path", pred, "--davis_path", root, "--set", "val"]
    per_frame: list = []
    with _script_env(repo, argv, repo):
        import davis2017.utils

        _record_statistics(davis2017.utils, per_frame)
        g = _run_quiet(os.path.join(repo, "evaluation_method.py"))
    table_g, table_seq = _table(g["table_g"]), _table(g["table_seq"])
    names = table_seq["Sequence"]
    # db_statistics runs for J then F per object, objects in table order
    frames = {n: {"J": per_frame[2 * i], "F": per_frame[2 * i + 1]} for i, n in enumerate(names)}
    J, F = g["J"], g["F"]
    per_object = {n: {"J-Mean": _float(J["M"][i]), "J-Recall": _float(J["R"][i]), "J-Decay": _float(J["D"][i]),
                      "F-Mean": _float(F["M"][i]), "F-Recall": _float(F["R"][i]), "F-Decay": _float(F["D"][i])}
                  for i, n in enumerate(names)}
    files = {}
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        files[name] = Path(pred, name).read_text()
    return {"benchmark": "davis", "task": task, "case": case_name, "fingerprint": case.fingerprint(),
            "command": " ".join(["python"] + argv),
            "globals": {k: v[0] for k, v in table_g.items()}, "per_object": per_object,
            "per_frame": frames, "files": files}


def run_sav(repo: str, case_name: str, work: str, per_object: bool) -> dict:
    case = make_case(case_name)
    gt, pred = os.path.join(work, "gt"), os.path.join(work, "pred")
    write_sav(case, gt, pred, per_object=per_object, skip_pred=SAV_SKIP)
    sav_dir = os.path.join(repo, "sav_dataset")
    argv = ["sav_evaluator.py", "--gt_root", gt, "--pred_root", pred, "-n", "1"]
    captured, frames = {}, {}
    with _script_env(sav_dir, argv, sav_dir):
        import utils.sav_benchmark as sb

        sb.Pool = InlinePool
        original_benchmark, original_call = sb.benchmark, sb.VideoEvaluator.__call__

        def benchmark(*args, **kwargs):
            captured["result"] = original_benchmark(*args, **kwargs)
            return captured["result"]

        def call(self, vid_name):
            conclude = sb.Evaluator.conclude

            def recording(ev):
                key = ev.obj_id if ev.obj_id is not None else None
                for obj in ev.objects_in_gt:
                    label = key if key is not None else f"{obj:03}"
                    frames.setdefault(vid_name, {})[label] = {
                        "J": [float(x) for x in ev.object_iou[obj]], "F": [float(x) for x in ev.boundary_f[obj]]}
                return conclude(ev)

            sb.Evaluator.conclude = recording
            try:
                return original_call(self, vid_name)
            finally:
                sb.Evaluator.conclude = conclude

        sb.benchmark = benchmark
        sb.VideoEvaluator.__call__ = call
        _run_quiet(os.path.join(sav_dir, "sav_evaluator.py"))
    jf, j, f, objects = captured["result"]
    per_obj = {}
    for video, (iou, bf) in objects[0].items():
        per_obj[video] = {}
        for key in iou:
            label = key if isinstance(key, str) else f"{key:03}"
            per_obj[video][label] = {"J&F": (iou[key] + bf[key]) / 2, "J": _float(iou[key]), "F": _float(bf[key])}
    return {"benchmark": "sav", "case": case_name, "per_object_layout": per_object, "skip_pred": list(SAV_SKIP),
            "fingerprint": case.fingerprint(), "command": " ".join(["python"] + argv),
            "globals": {"J&F": _float(jf[0]), "J": _float(j[0]), "F": _float(f[0])},
            "per_object": per_obj, "per_frame": frames,
            "files": {"results.csv": Path(pred, "results.csv").read_text()}}


def run_lvos(repo: str, case_name: str, work: str) -> dict:
    case = make_case(case_name)
    root, pred = os.path.join(work, "LVOS"), os.path.join(work, "pred")
    unseen = write_lvos(case, root, pred)
    cwd = os.path.join(work, "cwd")  # the official tool reads ./unseen_videos.txt
    os.makedirs(cwd)
    Path(cwd, "unseen_videos.txt").write_text(Path(unseen).read_text())
    Path(cwd, "unsupervised_videos.txt").write_text("")
    argv = ["evaluation_method.py", "--lvos_path", root, "--set", "valid", "--task", "semi-supervised",
            "--results_path", pred, "--mp_nums", "1"]
    per_frame: list = []
    with _script_env(repo, argv, cwd):
        import lvos.utils

        _record_statistics(lvos.utils, per_frame)
        g = _run_quiet(os.path.join(repo, "evaluation_method.py"))
    table_g, table_seq = _table(g["table_g"]), _table(g["table_seq"])
    names = table_seq["Sequence"]
    frames = {n: {"J": per_frame[2 * i], "F": per_frame[2 * i + 1]} for i, n in enumerate(names)}
    per_object = {n: {"J-Mean": table_seq["J-Mean"][i], "F-Mean": table_seq["F-Mean"][i],
                      "V-Mean": table_seq["V-Mean"][i]} for i, n in enumerate(names)}
    files = {name: Path(pred, name).read_text()
             for name in ("global_results-valid.csv", "per-sequence_results-valid.csv")}
    return {"benchmark": "lvos", "case": case_name, "fingerprint": case.fingerprint(),
            "command": " ".join(["python"] + argv) + "  (cwd holding the unseen list)",
            "globals": {k: v[0] for k, v in table_g.items()}, "per_object": per_object,
            "per_frame": frames, "files": files}


def run_mose(repo: str, case_name: str, work: str) -> dict:
    case = make_case(case_name)
    ann, meta, pred, out = (os.path.join(work, n) for n in ("Annotations", "meta.json", "pred", "out"))
    write_mose(case, ann, meta, pred, skip_pred=MOSE_SKIP)
    tools_dir = os.path.join(repo, "MOSEv2", "sam2_rcms", "tools")
    argv = ["score.py", "--meta", meta, "--ann", ann, "--pred", pred, "--output", out]
    records = {}
    with _script_env(tools_dir, argv, tools_dir):
        with contextlib.redirect_stdout(io.StringIO()):
            import score
        score.MAX_WORKERS = 1  # track_progress_rich then runs in this process
        original = score.merge_chunk_results

        def merge(chunk_results, vid_name, anno_id):
            records[f"{vid_name}_{anno_id}"] = result = original(chunk_results, vid_name, anno_id)
            return result

        score.merge_chunk_results = merge
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            score.main()
    metrics = json.loads(Path(out, "metrics.json").read_text())
    metrics.pop("total_time")
    scores_txt = Path(out, "scores.txt").read_text()
    summary = {}
    for line in scores_txt.splitlines():
        key, _, value = line.partition(": ")
        if key != "Copy-Paste":
            summary[key] = float(value)
    exact = {}
    for name, rec in records.items():
        exact[name] = [_float(v) for v in rec]
    return {"benchmark": "mose", "case": case_name, "skip_pred": list(MOSE_SKIP),
            "fingerprint": case.fingerprint(), "command": " ".join(["python"] + argv) + "  (MAX_WORKERS=1)",
            "globals": summary, "per_object": metrics, "per_object_exact": exact,
            "files": {"scores.txt": scores_txt}}


def run_assignment(count: int = 300, seed: int = 0) -> dict:
    """SciPy's answers on small cost matrices full of ties (DAVIS's unsupervised matching)."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    cases = []
    for t in range(count):
        rows, cols = (int(x) for x in rng.integers(1, 8, 2))
        values = rng.integers(0, 3, (rows, cols)) / 2 if t % 2 else np.round(rng.random((rows, cols)), 2)
        cost = -values
        r, c = linear_sum_assignment(cost)
        cases.append({"cost": cost.tolist(), "rows": r.tolist(), "cols": c.tolist()})
    return {"benchmark": "assignment", "command": "scipy.optimize.linear_sum_assignment(cost)",
            "cases": cases}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis_repo", help="checkout of davisvideochallenge/davis2017-evaluation")
    p.add_argument("--sav_repo", help="checkout of facebookresearch/sam2 (its sav_dataset folder is used)")
    p.add_argument("--lvos_repo", help="checkout of LingyiHongfd/lvos-evaluation")
    p.add_argument("--mose_repo", help="checkout of henghuiding/MOSE-api")
    p.add_argument("--assignment", action="store_true",
                   help="also store SciPy's linear_sum_assignment answers on tie-heavy matrices")
    p.add_argument("--out", required=True, help="folder for the <benchmark>_<case>.json files")
    args = p.parse_args(argv)
    missing = [f"--{flag} {path}" for flag, path in (("davis_repo", args.davis_repo), ("sav_repo", args.sav_repo),
                                                      ("lvos_repo", args.lvos_repo), ("mose_repo", args.mose_repo))
               if path and not os.path.isdir(path)]
    if missing:
        raise SystemExit(f"no checkout at {', '.join(missing)}: clone the official repositories first")
    os.makedirs(args.out, exist_ok=True)
    if args.assignment:
        result = run_assignment()
        result["versions"] = _versions()
        with open(os.path.join(args.out, "assignment_scipy.json"), "w") as f:
            json.dump(result, f)
            f.write("\n")
    jobs = []
    if args.davis_repo:
        jobs += [("davis_main", args.davis_repo, lambda r, w: run_davis(r, "main", w, False)),
                 ("davis_unsupervised", args.davis_repo, lambda r, w: run_davis(r, "unsupervised", w, True))]
    if args.sav_repo:
        jobs += [("sav_main", args.sav_repo, lambda r, w: run_sav(r, "main", w, True)),
                 ("sav_davislike", args.sav_repo, lambda r, w: run_sav(r, "davislike", w, False))]
    if args.lvos_repo:
        jobs += [("lvos_main", args.lvos_repo, lambda r, w: run_lvos(r, "main", w))]
    if args.mose_repo:
        jobs += [("mose_main", args.mose_repo, lambda r, w: run_mose(r, "main", w))]
    for name, repo, job in jobs:
        repo = os.path.abspath(repo)
        with tempfile.TemporaryDirectory() as work:
            result = job(repo, work)
        result.update(repository=_repo_name(name), commit=_commit(repo), versions=_versions())
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=1, sort_keys=False)
            f.write("\n")
        print(f"{path}: {json.dumps(result['globals'])}")
    return 0


def _repo_name(job: str) -> str:
    return {"davis": "davisvideochallenge/davis2017-evaluation", "sav": "facebookresearch/sam2",
            "lvos": "LingyiHongfd/lvos-evaluation", "mose": "henghuiding/MOSE-api"}[job.split("_")[0]]


if __name__ == "__main__":
    sys.exit(main())
