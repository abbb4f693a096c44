"""The GPU acceptance run (benchmarks/gpu_acceptance.sh) end to end on the CPU with tiny
inputs (--dry_run), so that the command prepared for the day a GPU is lent cannot rot: every
check and every cell of the speed matrix runs or says why not (CUDA graphs, the original)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_dry_run_writes_the_whole_report(tmp_path):
    out = tmp_path / "report.md"
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_acceptance.sh"), "--dry_run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all checks passed" in done.stdout
    report = out.read_text()
    for check in ("torch cpu fp32 vs CPU fp32", "CUDA graphs on vs off | not run: needs CUDA", "bf16 vs fp32",
                  "fp16 vs fp32", "host syncs per frame", "peak GPU memory"):
        assert check in report, check
    for p in (1, 3):
        for objects in (1, 3):
            assert f"| {p} | {objects} | ours fp32 eager | " in report
            assert f"| {p} | {objects} | original (fp32) | not run: no --reference_repo" in report
            assert f"| {p} | {objects} | ours bf16 CUDA graphs | not run: needs CUDA" in report


def test_the_full_run_refuses_a_machine_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        return  # the real run belongs to the GPU machine, not the test suite
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_acceptance.py"), "--out",
                           str(tmp_path / "r.md")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr


def test_the_fixture_check_agrees_with_the_original(parity_dir):
    """--fixture: ours against the original's own outputs on the parity fixture (on the CPU
    here; on the GPU machine with CUDA), through the acceptance run's own code."""
    import argparse

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_acceptance

    rows = []
    gpu_acceptance.fixture_check(argparse.Namespace(fixture=str(parity_dir), device="cpu"),
                                 lambda *cells: rows.append(cells))
    (name, value, gate, passed), = rows
    assert passed and "parity fixture" in name, value
