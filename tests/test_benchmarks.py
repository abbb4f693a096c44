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


def test_gpu_matrix_helpers_and_clear_exit_without_cuda(tmp_path, micro_checkpoints):
    """bench_gpu.py: N-object prompts are shifted copies; without CUDA it says so. SAM 2's
    own predictor runner (the 1-pathway speed bar) runs on the CPU too."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_gpu import make_prompts

    mask = synthetic_mask(0)
    np.savez(tmp_path / "one.npz", mask_3=mask, frame_3=np.array(2))
    four = np.load(make_prompts(str(tmp_path / "one.npz"), 4, tmp_path / "four.npz"))
    assert sorted(four.files) == sorted([f"mask_{i}" for i in range(1, 5)] + [f"frame_{i}" for i in range(1, 5)])
    assert np.array_equal(four["mask_1"], mask) and not np.array_equal(four["mask_2"], mask)
    assert four["mask_4"].sum() == mask.sum() and int(four["frame_4"]) == 2

    if not torch.cuda.is_available():
        result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--config", MICRO_CFG,
                                 "--checkpoint", str(micro_checkpoints["lively"]), "--frames", str(tmp_path),
                                 "--prompts", str(tmp_path / "one.npz")], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode != 0 and "needs a CUDA GPU" in result.stderr

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(3):
        Image.fromarray(synthetic_frame(t)).save(frames / f"{t:05d}.jpg")
    np.savez(tmp_path / "prompts.npz", mask_1=mask, frame_1=np.array(0))
    out = tmp_path / "sam2.npz"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sam2_vos_runner.py"), "--config", MICRO_CFG,
         "--checkpoint", str(micro_checkpoints["lively"]), "--frames", str(frames),
         "--prompts", str(tmp_path / "prompts.npz"), "--num_pathway", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert data["logits_1"].shape == (3, 120, 160) and float(data["seconds"]) > 0
