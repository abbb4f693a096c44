#!/usr/bin/env python
"""Steady state of real-length videos, side by side in one run (issue 24): the original
SAM2Long and our torch, onnx and auto backends, each in its own process, on the same frames.

Three parts (--parts):

1. `steady`: time against frame index. Each side tracks --num_frames frames (the parity
   fixture's bedroom clip played forwards and backwards, as bench_cpu.py --memory does) at
   P=--num_pathway with each --objects count, and its runner records every frame's seconds
   (--frame_times; ours: the tracker's step of that frame, while a background thread
   decodes the next frames; the original: that frame's image features, prompt,
   consolidation and `_run_single_frame_inference`, summed over the objects it tracks one
   after another; see the runners' docstrings). Per side: the steady state (frames --steady_from..N: median
   ms/frame and frames/s) and the whole run (the runner's timed span, frame loading and the
   original's final mask resize included) separately, each as a ratio over the original of
   the same run; flatness after the memory slots fill (late/early: the median of the last
   quarter of the frames over the median of the first 16 steady frames; and the
   least-squares slope over the steady frames, as % of the steady median per 16 frames);
   the worst per-frame mask IoU against the original; which backend `auto` picked.
   Per-frame milliseconds go to --csv and --json.
2. `dataset`: whole-process wall time of the README's DAVIS-style command
   (tools/vos_inference.py) on a DAVIS-layout set of each --dataset_frames frames, against
   the original's own tools/vos_inference.py (run by reference_runner.py --vos_inference:
   on the CPU, the config given by path), with each process's peak RSS (os.wait4) and the
   worst per-frame IoU of its PNGs against the original's.
3. `startup`: time from process start to the first tracked frame, broken down (interpreter
   start, imports, model load, ONNX Runtime session creation, tracker setup, the prompt
   frame, the first frame with memory attention) from engine_runner.py --startup_breakdown.
   For `auto` the model load includes its choice (read from its cache, or measured).

Every measurement runs --warmup untimed rounds, then --repeats timed rounds in alternating
side order; medians are reported. `auto` keeps its choice in a cache of this run
(--auto_cache to use another), so a warm-up makes its choice and the timed runs reuse it,
as a user's later runs do. The parent imports neither torch nor ONNX Runtime.

    .venv/bin/python benchmarks/bench_steady.py --reference_repo .reference/SAM2Long \\
        --models micro tiny b+ --markdown /tmp/steady.md --json /tmp/steady.json --csv /tmp/frames.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
from bench_vs_reference import agreement  # noqa: E402  (light: numpy and our metrics)
from parity_data import fixture_dir  # noqa: E402
from report import publish  # noqa: E402

SIDES = ("original", "torch", "onnx", "auto")
PARTS = ("steady", "dataset", "startup")
SPAWN_ENV = "SAM2LONG_BENCH_SPAWN"  # engine_runner.py reads it: the interpreter's start
VIDEO = "bedroom"

# bench_cpu.py's model recipes, clip and prompts run in a child: they import torch.
PREPARE = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from bench_cpu import LIVELY, build_onnx, clip, model_files
from bench_gpu import make_prompts
job = json.loads(sys.argv[1])
out = Path(job["out"])
if job["config"]:
    model = (job["config"], job["checkpoint"])
else:
    bias, gain = LIVELY.get(job["name"], (0.0, 1.0))
    model = model_files(job["name"], Path(job["checkpoint_dir"]), bias, gain)
result = {"model": model,
          "prompts": {n: make_prompts(job["prompts"], n, out / f"prompts_{n}.npz") for n in job["objects"]},
          "clips": {n: clip(Path(job["frames"]), n, out / f"clip_{n}") for n in job["lengths"]},
          "engine_dir": build_onnx(model, out / "engines", sys.executable) if job["onnx"] else None}
print("PREPARED " + json.dumps(result))
"""


# -- processes -----------------------------------------------------------------------------
def run_process(cmd: list[str], env: dict, log: Path) -> dict:
    """Run one side's process: its wall time from just before the start to its exit, its own
    peak RSS (os.wait4 reports the child's, not the maximum over all children) and its output."""
    spawn = time.monotonic()
    env = dict(env, **{SPAWN_ENV: repr(spawn)})
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - spawn
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise RuntimeError(f"{Path(cmd[1]).name} failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return {"wall_seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "output": text}


def side_env(side: str, args) -> dict:
    pythonpath = str(Path(args.reference_repo).resolve()) if side == "original" else str(ROOT)
    env = dict(os.environ, PYTHONPATH=pythonpath)
    if side == "auto":
        env["XDG_CACHE_HOME"] = str(args.auto_cache)
    return env


def backend_args(side: str, engine_dir: str | None) -> list[str]:
    return ["--backend", side] + (["--engine_dir", engine_dir] if side in ("onnx", "auto") else [])


def rounds(sides: list[str], args):
    """(round, side, timed) in the run order: warm-ups, then alternating timed rounds."""
    for r in range(args.warmup + args.repeats):
        timed = r >= args.warmup
        order = sides if (r - args.warmup) % 2 == 0 or not timed else sides[::-1]
        for side in order:
            yield r, side, timed


# -- 1. steady state -------------------------------------------------------------------------
def steady_runs(sides, prep, num_objects, args, tmp: Path) -> dict:
    """side -> {"frame_seconds": [per timed run], "seconds": [...], "data": last npz, ...}."""
    results = {side: {"frame_seconds": [], "frame_rss_mib": [], "seconds": [], "peak_rss_mib": []}
               for side in sides}
    config, checkpoint = prep["model"]
    for _, side, timed in rounds(sides, args):
        script = "reference_runner.py" if side == "original" else "engine_runner.py"
        out, times = tmp / f"{side}.npz", tmp / f"{side}_frames.json"
        cmd = [args.python, str(BENCH / script), "--config", config, "--checkpoint", checkpoint,
               "--frames", prep["clips"][str(args.num_frames)], "--prompts", prep["prompts"][str(num_objects)],
               "--num_pathway", str(args.num_pathway), "--iou_thre", str(args.iou_thre),
               "--uncertainty", str(args.uncertainty), "--out", str(out), "--packed_masks",
               "--frame_times", str(times)]
        cmd += [] if side == "original" else backend_args(side, prep["engine_dir"])
        proc = run_process(cmd, side_env(side, args), tmp / f"{side}.log")
        if not timed:
            continue
        frames = json.loads(times.read_text())
        data = dict(np.load(out))
        r = results[side]
        r["frame_seconds"].append(frames["frame_seconds"])
        r["frame_rss_mib"].append(frames.get("frame_rss_mib", []))
        r["seconds"].append(float(data["seconds"]))
        r["peak_rss_mib"].append(float(data["peak_rss_bytes"]) / 2**20)
        r["backend"] = frames.get("backend", side)
        r["data"] = data
        print(f"    {side}: {data['seconds']:.1f} s ({r['backend']}), process {proc['wall_seconds']:.1f} s",
              flush=True)
    return results


def median_per_frame(runs: list[list], scale: float = 1000) -> list[float | None]:
    """Per frame index, the median over the runs times `scale` (seconds to ms by default;
    None where no run has a value)."""
    out = []
    for values in zip(*runs):
        values = [v for v in values if v is not None]
        out.append(scale * statistics.median(values) if values else None)
    return out


def flatness(ms: list[float | None], steady_from: int) -> dict:
    """Is the per-frame time flat after the slots fill? late/early: median of the last
    quarter of the frames over the median of the first 16 steady frames; slope: least
    squares over the steady frames, as % of the steady median per 16 frames."""
    frames = [(t, v) for t, v in enumerate(ms) if t >= steady_from and v is not None]
    if len(frames) < 2:
        return {"late_over_early": None, "slope_pct_per_16": None}
    t, v = np.array(frames, dtype=float).T
    early = v[t < steady_from + 16]
    late = v[t >= len(ms) - max(1, (len(ms) - steady_from) // 4)]
    slope = np.polyfit(t, v, 1)[0]
    return {"late_over_early": float(np.median(late) / np.median(early)),
            "slope_pct_per_16": float(100 * 16 * slope / np.median(v))}


def windows(num_frames: int, steady_from: int) -> list[tuple[int, int]]:
    """Frame-index windows for the table: the prompt frame, the slots filling (in two), then
    16 frames at a time."""
    edges = [0, 1, min(8, steady_from), steady_from]
    edges = sorted({e for e in edges if e < num_frames})
    while edges[-1] + 16 < num_frames:
        edges.append(edges[-1] + 16)
    return [(a, b) for a, b in zip(edges, edges[1:] + [num_frames]) if a < b]


def window_ms(ms, window) -> float | None:
    values = [v for v in ms[window[0]:window[1]] if v is not None]
    return statistics.median(values) if values else None


def window_last(values, window) -> float | None:
    """The value at the window's last frame that has one (resident memory after it)."""
    known = [v for v in values[window[0]:window[1]] if v is not None]
    return known[-1] if known else None


def steady_summary(results: dict, args) -> dict:
    """The numbers of one (model, object count): per side, steady and whole-run speed, ratios
    over the original, flatness, agreement and per-frame ms."""
    ref = results.get("original", {}).get("data")
    report = {}
    for side, r in results.items():
        ms = median_per_frame(r["frame_seconds"])
        rss = median_per_frame(r["frame_rss_mib"], scale=1)
        spans = {f"{a}-{b - 1}" if b - 1 > a else f"{a}": (a, b) for a, b in windows(len(ms), args.steady_from)}
        steady = [v for v in ms[args.steady_from:] if v is not None]
        steady_ms = statistics.median(steady) if steady else None
        seconds = statistics.median(r["seconds"])
        iou = None
        if ref is not None and side != "original":
            values = [v["min_iou"] for v in agreement(r["data"], ref).values() if v["min_iou"] is not None]
            iou = min(values) if values else None
        report[side] = {"backend": r["backend"], "frame_ms": ms, "steady_ms": steady_ms,
                        "steady_fps": 1000 / steady_ms if steady_ms else None,
                        "whole_seconds": r["seconds"], "whole_fps": args.num_frames / seconds,
                        "windows_ms": {label: window_ms(ms, w) for label, w in spans.items()},
                        "windows_rss_mib": {label: window_last(rss, w) for label, w in spans.items()},
                        **flatness(ms, args.steady_from), "min_iou_vs_original": iou,
                        "peak_rss_mib": r["peak_rss_mib"]}
    orig = report.get("original")
    for numbers in report.values():
        for key in ("steady_fps", "whole_fps"):
            ok = orig is not None and orig[key] and numbers[key]
            numbers[f"{key}_x_original"] = numbers[key] / orig[key] if ok else None
    return report


def fmt(value, spec=".0f", suffix="") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def steady_table(name: str, num_objects: int, report: dict, args) -> list[str]:
    wins = list(next(iter(report.values()))["windows_ms"])
    lines = [f"\n**{name}, P={args.num_pathway}, {num_objects} object(s), {args.num_frames} frames: "
             f"steady state (frames {args.steady_from}-{args.num_frames - 1}) and whole run**", "",
             "| side | backend | steady ms/frame | steady fps | x original | whole-run fps | x original "
             "| late/early | slope %/16 frames | flat | min IoU vs original | peak RSS MiB |",
             "|---" * 12 + "|"]
    for side, n in report.items():
        late = n["late_over_early"]
        flat = "-" if late is None else ("yes" if abs(late - 1) <= args.flat_tolerance else "NO")
        lines.append(f"| {side} | {n['backend']} | {fmt(n['steady_ms'])} | {fmt(n['steady_fps'], '.3f')} "
                     f"| {fmt(n['steady_fps_x_original'], '.2f', 'x')} | {fmt(n['whole_fps'], '.3f')} "
                     f"| {fmt(n['whole_fps_x_original'], '.2f', 'x')} | {fmt(late, '.3f')} "
                     f"| {fmt(n['slope_pct_per_16'], '+.1f', '%')} | {flat} "
                     f"| {fmt(n['min_iou_vs_original'], '.4f')} | {fmt(statistics.median(n['peak_rss_mib']))} |")
    for key, what in (("windows_ms", "ms/frame by frame index (median of each window)"),
                      ("windows_rss_mib", "resident MiB after each window's last frame")):
        lines += ["", f"{what}, {name}, {num_objects} object(s):", "",
                  "| side | " + " | ".join(f"frames {w}" for w in wins) + " |", "|---" * (len(wins) + 1) + "|"]
        lines += [f"| {side} | " + " | ".join(fmt(n[key][w]) for w in wins) + " |" for side, n in report.items()]
    return lines


# -- 2. the dataset command ------------------------------------------------------------------
def davis_set(clip_dir: str, prompts: str, root: Path) -> Path:
    """A DAVIS-layout set of one video (the clip's frames, copied) whose first-frame
    annotation holds the prompt masks as ids 1..K (a later id wins where they overlap)."""
    from PIL import Image

    frames = root / "JPEGImages" / VIDEO
    frames.mkdir(parents=True)
    for f in sorted(Path(clip_dir).glob("*.jpg")):
        shutil.copyfile(f, frames / f.name)  # real files, as a dataset has
    data = np.load(prompts)
    ids = sorted(int(k[5:]) for k in data.files if k.startswith("mask_"))
    label = np.zeros(data[f"mask_{ids[0]}"].shape, np.uint8)
    for i in ids:
        label[data[f"mask_{i}"]] = i
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128]
    png = Image.fromarray(label, mode="P")
    png.putpalette(palette + [0] * (768 - len(palette)))
    (root / "Annotations" / VIDEO).mkdir(parents=True)
    png.save(root / "Annotations" / VIDEO / "00000.png")
    return root


def dataset_command(side: str, prep: dict, root: Path, out: Path, args) -> list[str]:
    config, checkpoint = prep["model"]
    flags = ["--sam2_cfg", config, "--sam2_checkpoint", checkpoint,
             "--base_video_dir", str(root / "JPEGImages"), "--input_mask_dir", str(root / "Annotations"),
             "--output_mask_dir", str(out), "--num_pathway", str(args.num_pathway),
             "--iou_thre", str(args.iou_thre), "--uncertainty", str(args.uncertainty)]
    if side == "original":
        script = Path(args.reference_repo).resolve() / "tools" / "vos_inference.py"
        return [args.python, str(BENCH / "reference_runner.py"), "--vos_inference", str(script), *flags]
    return [args.python, str(ROOT / "tools" / "vos_inference.py"), *flags, "--device", "cpu",
            *backend_args(side, prep["engine_dir"])]


def png_min_iou(ours: Path, ref: Path) -> float | None:
    """Worst per-frame, per-object IoU of two DAVIS prediction folders of the video."""
    from PIL import Image

    worst = None
    for ref_png in sorted((ref / VIDEO).glob("*.png")):
        a, b = np.array(Image.open(ours / VIDEO / ref_png.name)), np.array(Image.open(ref_png))
        for i in (set(np.unique(a)) | set(np.unique(b))) - {0}:
            union = np.logical_or(a == i, b == i).sum()
            iou = np.logical_and(a == i, b == i).sum() / union if union else 1.0
            worst = iou if worst is None else min(worst, iou)
    return None if worst is None else float(worst)


def dataset_runs(sides, prep, length: int, num_objects: int, args, tmp: Path) -> dict:
    root = davis_set(prep["clips"][str(length)], prep["prompts"][str(num_objects)], tmp / f"davis_{length}")
    results = {side: {"wall_seconds": [], "peak_rss_mib": []} for side in sides}
    for r, side, timed in rounds(sides, args):
        out = tmp / f"out_{side}_{r}"  # a new folder each time: a finished video would be skipped
        proc = run_process(dataset_command(side, prep, root, out, args), side_env(side, args),
                           tmp / f"{side}_vos.log")
        if side != "original":
            results[side]["backend"] = recorded_backend(out) or side
        results[side]["last_out"] = out
        if timed:
            results[side]["wall_seconds"].append(proc["wall_seconds"])
            results[side]["peak_rss_mib"].append(proc["peak_rss_mib"])
            print(f"    {side}: {proc['wall_seconds']:.1f} s, peak RSS {proc['peak_rss_mib']:.0f} MiB", flush=True)
    return results


def recorded_backend(out: Path) -> str | None:
    """The backend the completion record of our run names (auto's pick)."""
    def find(value):
        if isinstance(value, dict):
            if isinstance(value.get("backend"), str):
                return value["backend"]
            value = list(value.values())
        if isinstance(value, list):
            return next((b for b in map(find, value) if b), None)
        return None

    for record in sorted(out.rglob("*complete*")):
        try:
            found = find(json.loads(record.read_text()))
        except (ValueError, OSError):
            continue
        if found:
            return found
    return None


def dataset_summary(results: dict) -> dict:
    ref = results.get("original")
    report = {}
    for side, r in results.items():
        wall = statistics.median(r["wall_seconds"])
        report[side] = {"backend": r.get("backend", side), "wall_seconds": r["wall_seconds"],
                        "peak_rss_mib": r["peak_rss_mib"],
                        "x_original": statistics.median(ref["wall_seconds"]) / wall if ref else None,
                        "min_iou_vs_original": png_min_iou(r["last_out"], ref["last_out"])
                        if ref and side != "original" else None}
    return report


def dataset_table(name: str, num_objects: int, by_length: dict) -> list[str]:
    lines = [f"\n**{name}, {num_objects} object(s): whole `vos_inference.py` process (DAVIS layout, one video)**",
             "", "| frames | side | backend | wall s | x original | peak RSS MiB | min IoU vs original |",
             "|---|---|---|---|---|---|---|"]
    for length, report in by_length.items():
        for side, n in report.items():
            lines.append(f"| {length} | {side} | {n['backend']} | {statistics.median(n['wall_seconds']):.2f} "
                         f"| {fmt(n['x_original'], '.2f', 'x')} | {statistics.median(n['peak_rss_mib']):.0f} "
                         f"| {fmt(n['min_iou_vs_original'], '.4f')} |")
    return lines


# -- 3. start-up -----------------------------------------------------------------------------
PHASES = (("interpreter", "spawn", "script_start"), ("imports", "script_start", "imports"),
          ("model load", "imports", "backend_built"), ("tracker", "backend_built", "tracker_ready"),
          ("prompt frame", "tracker_ready", "first_frame"),
          ("first tracked frame", "first_frame", "first_tracked_frame"))


def breakdown(line: dict) -> dict:
    """Seconds per phase from the runner's monotonic stamps; ONNX Runtime's session creation
    is taken out of the model load."""
    stamps, out = line["monotonic"], {}
    for phase, a, b in PHASES:
        out[phase] = stamps[b] - stamps[a] if stamps.get(a) is not None and stamps.get(b) is not None else None
    sessions = line.get("graph_sessions_seconds", 0.0)
    if out["model load"] is not None:
        out["model load"] -= sessions
    out["graph sessions"] = sessions
    begin = stamps.get("spawn", stamps["script_start"])
    end = stamps.get("first_tracked_frame")
    out["to first tracked frame"] = end - begin if end is not None else None
    return out


def startup_runs(sides, prep, args, tmp: Path) -> dict:
    config, checkpoint = prep["model"]
    results = {side: {"phases": [], "first_calls": []} for side in sides if side != "original"}
    for _, side, timed in rounds(list(results), args):
        cmd = [args.python, str(BENCH / "engine_runner.py"), "--config", config, "--checkpoint", checkpoint,
               "--frames", prep["clips"][str(args.startup_frames)], "--prompts", prep["prompts"]["1"],
               "--num_pathway", str(args.num_pathway), "--iou_thre", str(args.iou_thre),
               "--uncertainty", str(args.uncertainty), "--out", str(tmp / f"{side}_start.npz"),
               "--no_trace", "--startup_breakdown", *backend_args(side, prep["engine_dir"])]
        proc = run_process(cmd, side_env(side, args), tmp / f"{side}_start.log")
        line = next(json.loads(text.split(": ", 1)[1]) for text in proc["output"].splitlines()
                    if text.startswith("startup_breakdown: "))
        if timed:
            results[side]["phases"].append(breakdown(line))
            results[side]["first_calls"].append(line["first_call_seconds"])
            results[side]["backend"] = line["backend"]
    report = {}
    for side, r in results.items():
        phases = {k: statistics.median([p[k] for p in r["phases"] if p[k] is not None])
                  if any(p[k] is not None for p in r["phases"]) else None for k in r["phases"][0]}
        first = {k: statistics.median([c[k] for c in r["first_calls"] if k in c]) for k in r["first_calls"][0]}
        report[side] = {"backend": r["backend"], "phases_seconds": phases, "first_call_seconds": first,
                        "runs": r["phases"]}
    return report


def startup_table(name: str, report: dict, limit: float) -> list[str]:
    phases = [p for p, _, _ in PHASES[:3]] + ["graph sessions"] + [p for p, _, _ in PHASES[3:]]
    lines = [f"\n**{name}: from process start to the first tracked frame (seconds)**", "",
             "| side | backend | " + " | ".join(phases) + f" | total | under {limit:g} s | first calls (ms) |",
             "|---" * (len(phases) + 5) + "|"]
    for side, n in report.items():
        total = n["phases_seconds"]["to first tracked frame"]
        calls = ", ".join(f"{k} {1000 * v:.0f}" for k, v in n["first_call_seconds"].items())
        lines.append(f"| {side} | {n['backend']} | " + " | ".join(fmt(n["phases_seconds"][p], ".2f") for p in phases)
                     + f" | {fmt(total, '.2f')} | {'-' if total is None else ('yes' if total < limit else 'NO')} "
                     f"| {calls} |")
    return lines


# -- main ------------------------------------------------------------------------------------
def prepare(name: str, args, lengths: list[int], onnx: bool, tmp: Path) -> dict:
    """Model files, prompts per object count, clips per length and graphs, made in a child."""
    job = {"name": name, "config": args.config, "checkpoint": args.checkpoint,
           "checkpoint_dir": args.checkpoint_dir, "prompts": args.prompts, "frames": args.frames,
           "objects": sorted(set(args.objects) | {1}), "lengths": sorted(set(lengths)), "onnx": onnx,
           "out": str(tmp)}
    proc = subprocess.run([args.python, "-c", PREPARE, json.dumps(job), str(ROOT), str(BENCH)],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"preparing {name} failed")
    line = next(t for t in proc.stdout.splitlines() if t.startswith("PREPARED "))
    return json.loads(line[len("PREPARED "):])


def write_csv(path: str, report: dict) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["model", "objects", "side", "backend", "frame", "ms_median", "ms_runs"])
        for key, sides in report.items():
            if not key.endswith("_steady"):
                continue
            model, objects = sides["_model"], sides["_objects"]
            for side, n in sides["sides"].items():
                for t, ms in enumerate(n["frame_ms"]):
                    runs = [r[t] for r in n["frame_seconds_runs"]]
                    out.writerow([model, objects, side, n["backend"], t, fmt(ms, ".2f"),
                                  ";".join(fmt(1000 * v if v is not None else None, ".2f") for v in runs)])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--reference_repo", help="local copy of the original SAM2Long (Mark12Ding/SAM2Long)")
    p.add_argument("--models", nargs="+", default=["micro", "tiny", "b+"], choices=["micro", "tiny", "b+"])
    p.add_argument("--config", help="another model: its YAML (with --checkpoint; replaces --models)")
    p.add_argument("--checkpoint", help="another model: its checkpoint")
    p.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--objects", type=int, nargs="+", default=[1, 3])
    p.add_argument("--num_pathway", type=int, default=3)
    p.add_argument("--num_frames", type=int, default=64, help="steady part: frames tracked")
    p.add_argument("--steady_from", type=int, default=16,
                   help="first frame of the steady state (the memory slots are full by then)")
    p.add_argument("--flat_tolerance", type=float, default=0.05,
                   help="late/early within 1 +- this counts as flat")
    p.add_argument("--dataset_frames", type=int, nargs="+", default=[8, 64], help="dataset part: video lengths")
    p.add_argument("--startup_frames", type=int, default=2,
                   help="startup part: frames of the clip (the prompt frame and one tracked frame)")
    p.add_argument("--startup_limit", type=float, default=3.0, help="seconds to the first tracked frame aimed at")
    p.add_argument("--frames", default=None, help="folder of JPEG frames (default: the parity fixture's frames16/)")
    p.add_argument("--prompts", default=None, help="npz with mask_1, frame_1 (default: the parity fixture's)")
    p.add_argument("--iou_thre", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2.0)
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds of every side first")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    p.add_argument("--checkpoint_dir", default=str(ROOT / "outputs" / "bench_checkpoints"))
    p.add_argument("--auto_cache", default=None,
                   help="XDG_CACHE_HOME of the auto side (default: a folder of this run, so its first "
                        "run makes the choice)")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--markdown", help="append the tables to this file")
    p.add_argument("--json", help="write the numbers (per-frame ms included) to this file")
    p.add_argument("--csv", help="write per-frame ms (model, objects, side, frame) to this file")
    args = p.parse_args(argv)
    if (args.config is None) != (args.checkpoint is None):
        p.error("--config and --checkpoint go together")
    if args.warmup < 0 or args.repeats < 1 or args.num_frames < 2 or args.startup_frames < 2:
        p.error("--repeats >= 1, --warmup >= 0, --num_frames and --startup_frames >= 2")
    if args.reference_repo and not (Path(args.reference_repo) / "sam2").is_dir():
        p.error(f"--reference_repo {args.reference_repo} has no sam2/ folder (the original's checkout)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.frames = args.frames or str(fixture_dir() / "frames16")
    args.prompts = args.prompts or str(fixture_dir() / "prompts.npz")
    sides = [s for s in args.sides if s != "original" or args.reference_repo]
    if "original" in args.sides and not args.reference_repo:
        print("no --reference_repo: the original is left out")
    models = [Path(args.config).stem] if args.config else args.models
    lines = [f"\n### {time.strftime('%Y-%m-%d')}: steady state, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, P={args.num_pathway}, {Path(args.frames).name} played forwards and "
             f"backwards, median of {args.repeats} after {args.warmup} warm-up round(s)"]
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        args.auto_cache = Path(args.auto_cache or tmp / "auto_cache")
        for name in models:
            lengths = [args.num_frames] * ("steady" in args.parts) + args.dataset_frames * ("dataset" in args.parts) \
                + [args.startup_frames] * ("startup" in args.parts)
            work = tmp / name.replace("+", "p")
            work.mkdir()
            prep = prepare(name, args, lengths, bool({"onnx", "auto"} & set(sides)), work)
            for num_objects in args.objects if "steady" in args.parts else ():
                print(f"{name}: steady state, {num_objects} object(s), {args.num_frames} frames", flush=True)
                folder = work / f"steady_{num_objects}"
                folder.mkdir()
                results = steady_runs(sides, prep, num_objects, args, folder)
                numbers = steady_summary(results, args)
                for side, n in numbers.items():
                    n["frame_seconds_runs"] = results[side]["frame_seconds"]
                report[f"{name}_o{num_objects}_steady"] = {"_model": name, "_objects": num_objects, "sides": numbers}
                lines += steady_table(name, num_objects, numbers, args)
                print("\n".join(lines[-(len(numbers) * 2 + 8):]), flush=True)
            for num_objects in args.objects if "dataset" in args.parts else ():
                by_length = {}
                for length in args.dataset_frames:
                    print(f"{name}: vos_inference.py, {length} frames, {num_objects} object(s)", flush=True)
                    folder = work / f"dataset_{length}_{num_objects}"
                    folder.mkdir()
                    by_length[length] = dataset_summary(dataset_runs(sides, prep, length, num_objects, args, folder))
                report[f"{name}_o{num_objects}_dataset"] = by_length
                lines += dataset_table(name, num_objects, by_length)
            if "startup" in args.parts and set(sides) - {"original"}:
                print(f"{name}: start-up", flush=True)
                folder = work / "startup"
                folder.mkdir()
                report[f"{name}_startup"] = startup_runs(sides, prep, args, folder)
                lines += startup_table(name, report[f"{name}_startup"], args.startup_limit)
    publish(lines, report, args.markdown, args.json, indent=1, default=str)
    if args.csv:
        write_csv(args.csv, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
