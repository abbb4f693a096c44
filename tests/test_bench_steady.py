"""benchmarks/bench_steady.py (issue 24's instrument) runs end to end on the test micro model,
and its per-frame clocks and summaries say what they claim. Ours only: the original is not
installed in CI."""

import argparse
import csv
import json
import subprocess
import sys

import numpy as np

from tests.conftest import MICRO_CFG, ROOT, synthetic_mask, write_frames

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_steady_bench_writes_every_table_and_field(tmp_path, micro_checkpoints):
    """All three parts on 4 synthetic frames, torch only, one run each: the steady-state,
    per-window, dataset and start-up tables, the JSON numbers and one CSV row per frame."""
    frames = write_frames(tmp_path / "frames", 4)
    np.savez(tmp_path / "prompts.npz", mask_1=synthetic_mask(0), frame_1=np.array(0))
    md, js, rows = tmp_path / "steady.md", tmp_path / "steady.json", tmp_path / "frames.csv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_steady.py"), "--config", MICRO_CFG,
         "--checkpoint", str(micro_checkpoints["lively"]), "--frames", str(frames),
         "--prompts", str(tmp_path / "prompts.npz"), "--sides", "torch", "--objects", "1",
         "--num_frames", "4", "--steady_from", "2", "--dataset_frames", "3", "--warmup", "0",
         "--repeats", "1", "--markdown", str(md), "--json", str(js), "--csv", str(rows)],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = md.read_text()
    for heading in ("steady state (frames 2-3) and whole run", "ms/frame by frame index",
                    "whole `vos_inference.py` process", "from process start to the first tracked frame"):
        assert heading in text
    assert "| torch | torch |" in text and "| 3 | torch | torch |" in text

    numbers = json.loads(js.read_text())
    steady = numbers["micro_sam2.1_256_o1_steady"]["sides"]["torch"]
    assert len(steady["frame_ms"]) == 4 and all(ms > 0 for ms in steady["frame_ms"])
    assert steady["steady_ms"] > 0 and steady["whole_fps"] > 0 and steady["late_over_early"] > 0
    assert list(steady["windows_ms"]) == ["0", "1", "2-3"]
    rss = steady["windows_rss_mib"]  # resident memory after each window, from the runner's /proc reads
    assert list(rss) == ["0", "1", "2-3"] and all(50 < rss[w] < steady["peak_rss_mib"][0] + 1 for w in rss)
    assert "resident MiB after each window's last frame" in text
    assert steady["steady_fps_x_original"] is None and steady["min_iou_vs_original"] is None
    dataset = numbers["micro_sam2.1_256_o1_dataset"]["3"]["torch"]
    assert dataset["backend"] == "torch" and dataset["wall_seconds"][0] > 0 and dataset["peak_rss_mib"][0] > 50
    phases = numbers["micro_sam2.1_256_startup"]["torch"]["phases_seconds"]
    assert all(phases[k] > 0 for k in ("interpreter", "imports", "model load", "prompt frame",
                                       "first tracked frame", "to first tracked frame"))
    assert phases["to first tracked frame"] > phases["imports"] + phases["model load"]
    assert set(numbers["micro_sam2.1_256_startup"]["torch"]["first_call_seconds"]) == {
        "encode_image", "attend_memory", "decode_masks", "encode_memory"}

    with open(rows) as f:
        table = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in table] == [0, 1, 2, 3]
    assert all(r["side"] == "torch" and float(r["ms_median"]) > 0 for r in table)


def test_flatness_windows_and_startup_phases():
    import bench_steady

    flat = [300.0] + [200.0] * 15 + [100.0] * 48  # prompt frame, slots filling, then steady
    shape = bench_steady.flatness(flat, 16)
    assert shape["late_over_early"] == 1.0 and abs(shape["slope_pct_per_16"]) < 1e-9
    growing = [100.0 + t for t in range(64)]  # +1 ms per frame: frames 52-63 over 16-31
    shape = bench_steady.flatness(growing, 16)
    assert abs(shape["late_over_early"] - 157.5 / 123.5) < 1e-9
    assert abs(shape["slope_pct_per_16"] - 100 * 16 / 139.5) < 1e-6  # 1 ms/frame over a 139.5 ms median
    assert bench_steady.flatness([1.0, 2.0, 3.0], 16) == {"late_over_early": None, "slope_pct_per_16": None}
    assert bench_steady.windows(64, 16) == [(0, 1), (1, 8), (8, 16), (16, 32), (32, 48), (48, 64)]
    assert bench_steady.windows(4, 2) == [(0, 1), (1, 2), (2, 4)]
    assert bench_steady.median_per_frame([[0.1, None, 0.3], [0.3, None, 0.5], [0.2, None, 0.4]]) == \
        [200.0, None, 400.0]
    assert bench_steady.median_per_frame([[900.0, 1000.0], [910.0, 990.0]], scale=1) == [905.0, 995.0]
    assert bench_steady.window_last([1.0, 2.0, None, 4.0, None], (1, 5)) == 4.0
    assert bench_steady.window_last([1.0, None], (1, 2)) is None

    order = bench_steady.rounds(["a", "b"], argparse.Namespace(warmup=1, repeats=2))
    assert list(order) == [(0, "a", False), (0, "b", False), (1, "a", True), (1, "b", True),
                           (2, "b", True), (2, "a", True)]  # warm-up, then alternating timed rounds

    stamps = {"spawn": 10.0, "script_start": 10.1, "imports": 11.1, "backend_built": 13.1,
              "tracker_ready": 13.2, "first_frame": 13.7, "first_tracked_frame": 14.0}
    phases = bench_steady.breakdown({"monotonic": stamps, "graph_sessions_seconds": 0.5})
    assert abs(phases["model load"] - 1.5) < 1e-9 and phases["graph sessions"] == 0.5
    assert abs(phases["to first tracked frame"] - 4.0) < 1e-9 and abs(phases["interpreter"] - 0.1) < 1e-9


def test_original_frame_clock_counts_nested_calls_once(tmp_path):
    """The reference runner's per-frame clock: the prompt's own inference inside add_new_mask
    is one span, and the objects' spans of a frame add up."""
    import reference_runner
    from runner_cli import FrameClock

    ticks = iter(range(100))
    clock = FrameClock()
    clock._now = lambda: float(next(ticks))
    clock.start()  # t = 0

    class Predictor:
        def _get_image_feature(self, inference_state, frame_idx, batch_size):
            return frame_idx

        def add_new_mask(self, inference_state, frame_idx, obj_id, mask):
            self._get_image_feature(inference_state, frame_idx, 1)
            return self._run_single_frame_inference(inference_state=inference_state, frame_idx=frame_idx)

        def _consolidate_temp_output_across_obj(self, inference_state, frame_idx, is_cond=False,
                                                run_mem_encoder=False):
            return frame_idx

        def _run_single_frame_inference(self, inference_state, frame_idx):
            return frame_idx

    predictor = Predictor()
    reference_runner.time_frames(predictor, clock)
    predictor._get_image_feature({}, frame_idx=0, batch_size=1)  # init_state: ticks 1, 2
    for obj in (1, 2):  # two objects, tracked one after the other
        predictor.add_new_mask(inference_state={}, frame_idx=0, obj_id=obj, mask=None)  # 3, 4; 9, 10
        predictor._consolidate_temp_output_across_obj({}, 0, is_cond=True, run_mem_encoder=True)  # 5, 6
        predictor._run_single_frame_inference(inference_state={}, frame_idx=1)  # 7, 8; 13, 14
    assert clock.seconds == {0: 5.0, 1: 2.0} and clock.ends == {0: 12.0, 1: 14.0}
    clock.write(str(tmp_path / "t.json"), 3, backend="original")
    written = json.loads((tmp_path / "t.json").read_text())
    rss = written.pop("frame_rss_mib")  # read from /proc after each frame's last span
    assert written == {"frame_seconds": [5.0, 2.0, None], "frame_end": [12.0, 14.0, None], "backend": "original"}
    assert rss[2] is None and all(20 < v < 100_000 for v in rss[:2]), rss


def test_recorded_backend_and_png_agreement(tmp_path):
    from PIL import Image

    import bench_steady

    out = tmp_path / "out" / bench_steady.VIDEO
    out.mkdir(parents=True)
    (out / ".complete").write_text(json.dumps({"produced_by": {"backend": "onnx", "device": "cpu"}}))
    assert bench_steady.recorded_backend(tmp_path / "out") == "onnx"
    assert bench_steady.recorded_backend(tmp_path) == "onnx" and bench_steady.recorded_backend(out / "x") is None

    ref = tmp_path / "ref" / bench_steady.VIDEO
    ref.mkdir(parents=True)
    a = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1
    b = a.copy()
    b[0, 0] = 0  # object 1: 3 of 4 pixels
    Image.fromarray(a).save(out / "00000.png")
    Image.fromarray(b).save(ref / "00000.png")
    assert bench_steady.png_min_iou(tmp_path / "out", tmp_path / "ref") == 0.75


def test_parent_imports_neither_torch_nor_onnxruntime():
    """The parent stays light: its own imports would load a core and memory beside the timed sides."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_steady; "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_engine_runner_auto_names_its_pick_and_times_each_frame(tmp_path, micro_checkpoints, monkeypatch, capsys):
    """--backend auto without graphs runs torch (unmeasured, as the tools do) and says so in
    the npz and the frame times; every frame has its seconds, ending in order."""
    import engine_runner

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    frames = write_frames(tmp_path / "frames", 3)
    np.savez(tmp_path / "prompts.npz", mask_1=synthetic_mask(0), frame_1=np.array(0))
    times = tmp_path / "frames.json"
    assert engine_runner.main(["--config", MICRO_CFG, "--checkpoint", str(micro_checkpoints["lively"]),
                               "--frames", str(frames), "--prompts", str(tmp_path / "prompts.npz"),
                               "--out", str(tmp_path / "auto.npz"), "--no_trace", "--backend", "auto",
                               "--frame_times", str(times), "--startup_breakdown"]) == 0
    assert str(np.load(tmp_path / "auto.npz")["backend"]) == "torch"
    report = json.loads(times.read_text())
    assert report["backend"] == "torch" and all(s > 0 for s in report["frame_seconds"])
    assert report["frame_end"] == sorted(report["frame_end"]) and len(report["emitted"]) == 3
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("startup_breakdown: "))
    stamps = json.loads(line.split(": ", 1)[1])["monotonic"]
    order = ["script_start", "imports", "backend_built", "tracker_ready", "first_frame", "first_tracked_frame"]
    assert [stamps[k] for k in order] == sorted(stamps[k] for k in order)
