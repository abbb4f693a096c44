#!/usr/bin/env python
"""Parity beyond the shipped fixture: run the original SAM2Long and our engine on more
cases (pathway counts, thresholds, both selection branches, a second object starting
mid-video, 16 frames) and compare masks and traces with the fixture's bars.

Needs a local copy of the original (`--reference_repo`); the fixture is ../shared's, or the
project's copy in tests/data/parity (benchmarks/parity_data.py). Each
case takes about a minute per side on a 2-core CPU. Exit code 1 if any case misses a bar.

    .venv/bin/python benchmarks/parity_cases.py --reference_repo PATH/TO/SAM2Long
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from sam2long.runtime.metrics import mask_iou  # noqa: E402
from parity_data import fixture_dir  # noqa: E402

FIXTURE = None  # set by main: unpacking the project's copy is not for --help

# name: (weights, P, iou_thre, uncertainty, second object starting at frame 5)
CASES = {
    "lively_p3": ("micro_lively_seed0.pt", 3, 0.1, 2.0, False),
    "lively_p2_iou0.3_unc1": ("micro_lively_seed0.pt", 2, 0.3, 1.0, False),
    "lively_p3_two_objects": ("micro_lively_seed0.pt", 3, 0.1, 2.0, True),
    "plain_p1": ("micro_seed0.pt", 1, 0.1, 2.0, False),
    "lively_p3_iou0.9_unc0": ("micro_lively_seed0.pt", 3, 0.9, 0.0, False),
    "lively_p3_iou0.85": ("micro_lively_seed0.pt", 3, 0.85, 2.0, False),
}


def write_prompts(path: Path, two_objects: bool):
    base = np.load(FIXTURE / "prompts.npz")
    prompts = {"mask_1": base["mask_1"], "frame_1": np.array(0)}
    if two_objects:
        rect = np.zeros_like(base["mask_1"])
        rect[200:350, 500:700] = True
        prompts.update(mask_2=rect, frame_2=np.array(5))
    np.savez(path, **prompts)


def run(script: str, pythonpath: str, case, prompts: Path, out: Path):
    weights, P, iou, unc, _ = case
    cmd = [sys.executable, str(ROOT / "benchmarks" / script),
           "--config", str(FIXTURE / "micro_sam2.1.yaml"), "--checkpoint", str(FIXTURE / weights),
           "--frames", str(FIXTURE / "frames16"), "--prompts", str(prompts),
           "--num_pathway", str(P), "--iou_thre", str(iou), "--uncertainty", str(unc),
           "--out", str(out)]
    subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=pythonpath), check=True,
                   capture_output=True, cwd=ROOT)
    return np.load(out)


def compare(ours, ref) -> tuple[float, float]:
    """(min per-frame mask IoU over objects, max trace difference)."""
    worst_iou, worst_trace = 1.0, 0.0
    for key in ref.files:
        if key.startswith("logits_"):
            for a, b in zip(ours[key].astype(np.float32) > 0, ref[key].astype(np.float32) > 0):
                worst_iou = min(worst_iou, mask_iou(a, b))
        if key.split("_")[0] in ("ious", "obj", "acc"):
            want, have = ref[key], ours[key]
            known = ~np.isnan(want)
            if have.shape != want.shape or (np.isnan(have) != ~known).any():
                return worst_iou, float("inf")
            worst_trace = max(worst_trace, float(np.abs(have[known] - want[known]).max()))
    return worst_iou, worst_trace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference_repo", required=True, help="local copy of the original SAM2Long")
    p.add_argument("--cases", nargs="*", default=sorted(CASES), choices=sorted(CASES))
    args = p.parse_args(argv)
    global FIXTURE
    if not (Path(args.reference_repo) / "sam2" / "sam2_video_predictor.py").is_file():
        raise SystemExit(f"--reference_repo {args.reference_repo} is not a checkout of the original SAM2Long "
                         "(Mark12Ding/SAM2Long)")
    FIXTURE = fixture_dir()
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            case = CASES[name]
            prompts = Path(tmp) / f"{name}_prompts.npz"
            write_prompts(prompts, case[4])
            ref = run("reference_runner.py", args.reference_repo, case, prompts, Path(tmp) / "ref.npz")
            ours = run("engine_runner.py", str(ROOT), case, prompts, Path(tmp) / "ours.npz")
            iou, trace = compare(ours, ref)
            ok = iou >= 0.999 and trace <= 1e-4
            failed += [] if ok else [name]
            print(f"{name:28s} min mask IoU {iou:.6f}  max trace diff {trace:.2e}  "
                  f"{'ok' if ok else 'FAILED'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
