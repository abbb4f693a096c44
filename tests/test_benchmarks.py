"""The benchmark scripts run (ours only: the original implementation is not installed in CI)."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask


def test_bench_runs_our_backends_alone(tmp_path, micro_checkpoints):
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(4):
        Image.fromarray(synthetic_frame(t)).save(frames / f"{t:05d}.jpg")
    np.savez(tmp_path / "prompts.npz", mask_1=synthetic_mask(0), frame_1=np.array(0))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_vs_reference.py"),
         "--config", MICRO_CFG, "--checkpoint", str(micro_checkpoints["lively"]),
         "--frames", str(frames), "--prompts", str(tmp_path / "prompts.npz"),
         "--backends", "torch", "onnx", "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "per-stage ms per call" in result.stdout
    numbers = json.loads((tmp_path / "bench.json").read_text())
    assert set(numbers["sides"]) == {"torch", "onnx"}  # written even without the original
    assert numbers["sides"]["onnx"]["stage_seconds"]["attend_memory"] > 0
    assert numbers["sides"]["torch"]["stage_ms_per_call"]["encode_image"] > 0
