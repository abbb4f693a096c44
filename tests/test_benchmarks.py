"""The benchmark scripts run (ours only: the original implementation is not installed in CI)."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask


def write_clip(tmp_path, num_frames: int):
    """A synthetic clip and its one-object mask prompt on frame 0: (frames dir, prompts npz)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(num_frames):
        Image.fromarray(synthetic_frame(t)).save(frames / f"{t:05d}.jpg")
    np.savez(tmp_path / "prompts.npz", mask_1=synthetic_mask(0), frame_1=np.array(0))
    return frames, tmp_path / "prompts.npz"


def runner_args(tmp_path, micro_checkpoints, num_frames: int) -> list[str]:
    """The runners' model and input arguments on a synthetic clip (lively micro weights)."""
    frames, prompts = write_clip(tmp_path, num_frames)
    return ["--config", MICRO_CFG, "--checkpoint", str(micro_checkpoints["lively"]), "--frames", str(frames),
            "--prompts", str(prompts)]


def test_bench_runs_our_backends_alone(tmp_path, micro_checkpoints):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_vs_reference.py"),
         *runner_args(tmp_path, micro_checkpoints, 4),
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

    out = tmp_path / "sam2.npz"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sam2_vos_runner.py"), *runner_args(tmp_path, micro_checkpoints, 3),
         "--num_pathway", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    assert data["logits_1"].shape == (3, 120, 160) and float(data["seconds"]) > 0


def test_gpu_matrix_survives_a_precision_that_does_not_build(tmp_path, monkeypatch, capsys):
    """A TensorRT precision whose build fails (bf16 before Ampere) is dropped with a note;
    the other precisions keep their sides."""
    import types

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    def run(cmd, **kwargs):
        failed = "--precision" in cmd and cmd[cmd.index("--precision") + 1] == "bf16"
        return types.SimpleNamespace(returncode=1 if failed else 0, stdout="",
                                     stderr="error: bf16 needs compute capability 8.0" if failed else "")

    monkeypatch.setattr(bench_gpu.subprocess, "run", run)
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    args = types.SimpleNamespace(python=sys.executable, config="c.yaml", checkpoint="c.pt",
                                 trt_precisions=["fp32", "fp16", "bf16"], reference_repo=None)
    dirs = bench_gpu.build_engines(args, tmp_path)
    assert dirs["trt_precisions"] == ["fp32", "fp16"]
    assert "trt_bf16 side skipped: the engine build failed (error: bf16 needs compute capability 8.0)" \
        in capsys.readouterr().out
    sides = bench_gpu.available_sides(args, dirs)
    assert {"trt_fp32", "trt_fp16"} <= set(sides) and "trt_bf16" not in sides


def test_gpu_matrix_times_without_traces(tmp_path, monkeypatch):
    """Every timed side runs with --no_trace, and the runner then collects no trace (its
    per-frame host reads would be inside the timing)."""
    import types

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_gpu

    seen = []

    def run_side(script, pythonpath, cfg, out, extra):
        seen.append(extra)
        np.savez(out, logits_1=np.zeros((2, 4, 4), np.float16), seconds=np.array(1.0))
        return 1.0

    monkeypatch.setattr(bench_gpu, "run_side", run_side)
    np.savez(tmp_path / "p.npz", mask_1=np.ones((4, 4), bool), frame_1=np.array(0))
    args = types.SimpleNamespace(repeats=2)
    sides = {"torch_fp32": ("engine_runner.py", "", ["--backend", "torch"]),
             "original": ("reference_runner.py", "", ["--device", "cuda"])}
    bench_gpu.run_config(args, sides, 3, str(tmp_path / "p.npz"), tmp_path, [])
    assert len(seen) == 4 and all(extra[-1] == "--no_trace" for extra in seen)


def test_engine_runner_without_traces(tmp_path, micro_checkpoints, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import engine_runner
    from sam2long.runtime.tracker import SAM2LongTracker

    base = runner_args(tmp_path, micro_checkpoints, 3)
    traces = []
    track = SAM2LongTracker.track

    def recording_track(self, frames, prompts, num_frames, video_hw, trace=None):
        traces.append(trace)
        return track(self, frames, prompts, num_frames, video_hw, trace=trace)

    monkeypatch.setattr(SAM2LongTracker, "track", recording_track)
    assert engine_runner.main(base + ["--out", str(tmp_path / "a.npz"), "--no_trace"]) == 0
    assert engine_runner.main(base + ["--out", str(tmp_path / "b.npz")]) == 0
    assert traces[0] is None and isinstance(traces[1], dict)
    assert "ious_1" not in np.load(tmp_path / "a.npz") and "ious_1" in np.load(tmp_path / "b.npz")


def test_packed_masks_keep_the_masks_in_a_sixteenth_of_the_bytes(tmp_path, micro_checkpoints):
    """--packed_masks (the peak-memory runs): the runner holds bits, and the npz's logits
    give the same masks as the float16 logits of a plain run."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import engine_runner
    from runner_cli import FrameStore

    base = runner_args(tmp_path, micro_checkpoints, 3) + ["--no_trace"]
    assert engine_runner.main(base + ["--out", str(tmp_path / "plain.npz")]) == 0
    assert engine_runner.main(base + ["--out", str(tmp_path / "packed.npz"), "--packed_masks"]) == 0
    plain, packed = np.load(tmp_path / "plain.npz")["logits_1"], np.load(tmp_path / "packed.npz")["logits_1"]
    assert packed.shape == plain.shape and set(np.unique(packed)) <= {-1, 1}
    assert np.array_equal(packed > 0, plain > 0) and (plain > 0).any()

    store = FrameStore(packed=True)
    for frame in plain:
        store.add(frame)
    assert sum(f.nbytes for f in store.frames) * 16 == plain.nbytes


def test_cpu_matrix_without_the_original_keeps_each_sides_outputs(tmp_path, parity_dir):
    """bench_cpu.py on the fixture's micro model, 3 frames, P=1, plain SAM 2 beside our torch
    backend: the table says how they compare, and --keep_outputs holds each side's masks."""
    kept = tmp_path / "kept"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_cpu.py"), "--models", "micro", "--pathways", "1",
         "--objects", "1", "--sides", "sam2", "torch", "--num_frames", "3", "--warmup", "0", "--repeats", "1",
         "--json", str(tmp_path / "cpu.json"), "--keep_outputs", str(kept)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, SAM2LONG_PARITY_FIXTURE=str(parity_dir)))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| sam2 |" in result.stdout and "| torch |" in result.stdout
    numbers = json.loads((tmp_path / "cpu.json").read_text())["micro_p1_o1"]
    assert set(numbers) == {"sam2", "torch"}
    assert numbers["torch"]["x_sam2"] > 0 and numbers["torch"]["min_iou_vs_original"] is None
    sides = {side: np.load(kept / "micro_p1_o1" / f"{side}.npz") for side in ("sam2", "torch")}
    for data in sides.values():
        assert data["logits_1"].shape == (3, 540, 960)
    # P=1 on three frames: SAM2Long's memory differs from SAM 2's only on frame 2 (key weights
    # 0.95-1.05, no pointer from frame 1), so the masks nearly agree; a misaligned frame or a
    # wrong side would not.
    agree = (sides["sam2"]["logits_1"] > 0) == (sides["torch"]["logits_1"] > 0)
    assert agree.mean() > 0.99


def test_memory_table_compares_medians_and_shows_the_runs_range():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_cpu import memory_table

    rows = memory_table("micro", {"torch": {20: [800.0, 880.0, 850.0], 200: [900.0, 890.0, 880.0]},
                                  "onnx": {20: [1000.0], 200: [1010.0]}})
    assert rows[-2] == "| torch | 850 (800-880) | 890 (880-900) | +4.7% |"
    assert rows[-1] == "| onnx | 1000 | 1010 | +1.0% |"


def test_interactive_bench_smoke(tmp_path, micro_checkpoints):
    """bench_interactive.py on the micro model, 3 frames: plain SAM 2 beside sam2's own
    predictor (same masks), and a correction on frame 1 whose re-propagation from it computes
    only frame 2; mode sam2long's refusal of the correction is a row, not a crash. (Torch
    only, to stay quick: --backends torch onnx passes too, at twice the time.)"""
    frames, prompts = write_clip(tmp_path, 3)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_interactive.py"), "--model", MICRO_CFG,
         str(micro_checkpoints["lively"]), "--frames", str(frames), "--prompts", str(prompts),
         "--backends", "torch", "--plain_frames", "3", "--num_frames", "3", "--warmup", "0", "--repeats", "1",
         "--markdown", str(tmp_path / "bench.md"), "--json", str(tmp_path / "bench.json")],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    table = (tmp_path / "bench.md").read_text()
    assert "| custom | sam2 SAM2VideoPredictor | 3 |" in table and "| custom | torch | 3 |" in table
    numbers = json.loads((tmp_path / "bench.json").read_text())
    plain = numbers["custom_plain"]["torch"]
    assert plain["x_sam2"] > 0 and plain["min_iou_vs_sam2"] > 0.99
    correction = numbers["custom_correction"]
    sam2 = correction["torch_sam2"]
    assert sam2["from_t_full_frames_computed"] == 2  # frames 1 and 2 after the prompt on frame 0
    assert sam2["from_t_frames_computed"] == 1 and sam2["from_t_attention_calls"] == 1  # only frame 2
    assert sam2["from_t_seconds"] > 0 and sam2["from_start_seconds"] > 0
    assert "refused" in correction["torch_sam2long"] or correction["torch_sam2long"]["from_t_frames_computed"] >= 1
