#!/usr/bin/env python
"""Interactive tracking on the CPU, side by side in one run: the predictor's plain SAM 2 mode
against sam2's own `SAM2VideoPredictor`, and what a correction costs.

Plain mode (`--parts plain`): `build_sam2long_video_predictor(mode="sam2", P=1)` on each
backend of --backends and sam2 1.1.0's `build_sam2_video_predictor`, on the same frames
(--plain_frames of the bedroom clip played forwards and backwards, as bench_cpu.py --memory)
and the same prompt (the parity fixture's mask on its frame), both without sam2's
post-processing (`apply_postprocessing=False`: the onnx backend takes no other). `auto` is
`--backend auto` (each stage in the faster library, measured in its first run's setup). Every side
runs in its own process: --warmup untimed runs, then --repeats timed runs in alternating
order; the median is reported. Per side: frames/s of `propagate_in_video` (init_state and
the prompt are timed apart), the ratio over sam2's, and the per-frame mask IoU against sam2's
(minimum and mean).

Correction (`--parts correction`): on an N-frame clip (--num_frames, default 100) the object
is tracked over every frame, then a click on frame t (--correction_frame, default N/2; a
negative click on the mask there, or a positive one where the prompt was when the mask is
empty) corrects it, and propagation runs again: from t (as the demo re-tracks), and, in a
second session, from the start (as a notebook reruns its cell). The correction becomes a
conditioning frame (`add_all_frames_to_correct_as_cond=True`), so re-tracking keeps it. Per
re-propagation: the frames the predictor actually computed (its session's `frames_computed`
and the memory-attention calls, counted on the backend), seconds, and the ratio of the full
first propagation's seconds over it; also the first frame whose mask changed. A mode that
refuses the correction (mode sam2long before it takes corrections) is reported as such.

    .venv/bin/python benchmarks/bench_interactive.py --models micro tiny b+ --markdown /tmp/interactive.md
"""

from __future__ import annotations

import argparse
import os
import platform
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
from bench_cpu import LIVELY, build_onnx, clip, model_files  # noqa: E402
from parity_data import fixture_dir  # noqa: E402
from report import publish  # noqa: E402

BACKENDS = ("torch", "onnx", "auto")
GRAPH_BACKENDS = ("onnx", "auto")  # run over the graphs built here
MODES = ("sam2", "sam2long")


# -- one side, in its own process -------------------------------------------------------
def first_prompt(path: str) -> tuple[int, int, np.ndarray]:
    """(object id, frame, bool mask) of the prompts npz's first object."""
    from reference_runner import load_prompts

    obj_id, (frame, mask) = next(iter(load_prompts(path).items()))
    return obj_id, frame, mask


def sam2_predictor(config: str, checkpoint: str):
    """sam2's own builder, on a config file anywhere (hydra searches the file's folder)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2_video_predictor

    path = Path(config).resolve()
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(path.parent), version_base="1.2")
    return build_sam2_video_predictor(path.name, checkpoint, device="cpu", apply_postprocessing=False)


def our_predictor(args, mode: str, **extra):
    from sam2long import build_sam2long_video_predictor

    return build_sam2long_video_predictor(args.config, args.checkpoint, device="cpu", backend=args.backend,
                                          mode=mode, num_pathway=1 if mode == "sam2" else 3,
                                          engine_dir=args.engine_dir, apply_postprocessing=False, **extra)


class AttentionCalls:
    """Counts the backend's memory-attention calls and the rows (objects x pathways) they took."""

    def __init__(self, backend):
        self.calls = self.rows = 0
        inner = backend.attend_memory

        def counted(feat, memory, *rest, **kw):
            self.calls += 1
            self.rows += int(memory.mem_feats.shape[0])
            return inner(feat, memory, *rest, **kw)

        backend.attend_memory = counted

    def snapshot(self) -> tuple[int, int]:
        return self.calls, self.rows


def run_plain_side(args) -> dict:
    import torch

    obj_id, frame, mask = first_prompt(args.prompts)
    predictor = sam2_predictor(args.config, args.checkpoint) if args.side == "sam2" else our_predictor(args, "sam2")
    masks = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        state = predictor.init_state(video_path=args.frames)
        predictor.add_new_mask(state, frame_idx=frame, obj_id=obj_id, mask=mask)
        t1 = time.perf_counter()
        for _, _, logits in predictor.propagate_in_video(state, start_frame_idx=frame):
            masks.append(np.packbits(logits[0, 0].float().cpu().numpy() > 0))
        t2 = time.perf_counter()
    return {"setup_seconds": t1 - t0, "seconds": t2 - t1, "num_frames": len(masks),
            "masks": np.stack(masks), "shape": np.asarray(mask.shape)}


def correction_click(mask: np.ndarray, prompt: np.ndarray) -> tuple[list[float], int]:
    """A negative click on the mask's middle pixel, or (empty mask) a positive one on the prompt's."""
    ys, xs = np.nonzero(mask if mask.any() else prompt)
    k = len(ys) // 2
    return [float(xs[k]), float(ys[k])], 0 if mask.any() else 1


def run_correction_side(args) -> dict:
    from sam2long.engine.errors import SAM2LongError

    obj_id, frame, prompt = first_prompt(args.prompts)
    t = args.correction_frame
    out = {}
    for variant, start in (("from_t", t), ("from_start", None)):
        predictor = our_predictor(args, args.mode, add_all_frames_to_correct_as_cond=True)
        calls = AttentionCalls(predictor.backend)
        state = predictor.init_state(video_path=args.frames)
        predictor.add_new_mask(state, frame_idx=frame, obj_id=obj_id, mask=prompt)
        before, c0 = {}, calls.snapshot()
        computed0 = getattr(state, "frames_computed", 0)
        t0 = time.perf_counter()
        for f, _, logits in predictor.propagate_in_video(state):
            before[f] = logits[0, 0].cpu().numpy() > 0
        full = time.perf_counter() - t0
        full_calls, full_computed = calls.snapshot()[0] - c0[0], getattr(state, "frames_computed", 0) - computed0
        point, label = correction_click(before[t], prompt)
        try:
            predictor.add_new_points_or_box(state, frame_idx=t, obj_id=obj_id, points=[point], labels=[label],
                                            clear_old_points=False)
        except SAM2LongError as e:
            return {"refused": str(e)}
        c1, computed1 = calls.snapshot(), getattr(state, "frames_computed", 0)
        t1 = time.perf_counter()
        changed = []
        for f, _, logits in predictor.propagate_in_video(state, start_frame_idx=start):
            if not np.array_equal(logits[0, 0].cpu().numpy() > 0, before[f]):
                changed.append(f)
        seconds = time.perf_counter() - t1
        out.update({f"{variant}_seconds": seconds, f"{variant}_attention_calls": calls.snapshot()[0] - c1[0],
                    f"{variant}_attention_rows": calls.snapshot()[1] - c1[1],
                    f"{variant}_frames_computed": getattr(state, "frames_computed", 0) - computed1,
                    f"{variant}_first_changed": min(changed) if changed else -1,
                    f"{variant}_full_seconds": full, f"{variant}_full_attention_calls": full_calls,
                    f"{variant}_full_frames_computed": full_computed})
    out["num_frames"] = len(before)
    return out


def side_main(argv) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=("plain", "correction"), required=True)
    p.add_argument("--side", default="torch", help="plain: sam2, torch or onnx")
    p.add_argument("--backend", default="torch")
    p.add_argument("--mode", default="sam2")
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--engine_dir", default=None)
    p.add_argument("--frames", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--correction_frame", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.part == "plain" and args.side != "sam2":
        args.backend = args.side
    from runner_cli import peak_rss

    result = run_plain_side(args) if args.part == "plain" else run_correction_side(args)
    result.update(peak_rss())
    if "refused" in result:
        result["refused"] = np.asarray(result["refused"])
    np.savez(args.out, **result)


# -- the matrix ---------------------------------------------------------------------------
def run_side(args, cmd: list[str], out: Path) -> dict:
    full = [args.python, str(Path(__file__).resolve()), "_side", *cmd, "--out", str(out)]
    proc = subprocess.run(full, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(args.auto_cache)))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError(f"{' '.join(cmd[:4])} failed with exit code {proc.returncode}")
    data = dict(np.load(out))
    if "refused" in data:
        data["refused"] = str(data["refused"])
    return data


def mask_ious(a: dict, b: dict) -> list[float]:
    size = int(np.prod(a["shape"]))
    ious = []
    for x, y in zip(a["masks"], b["masks"]):
        mx, my = np.unpackbits(x, count=size) > 0, np.unpackbits(y, count=size) > 0
        union = (mx | my).sum()
        ious.append(1.0 if union == 0 else float((mx & my).sum() / union))
    return ious


def plain_part(args, name, model, frames, engine_dir, tmp) -> tuple[list[str], dict]:
    sides = ["sam2", *args.backends]
    base = ["--part", "plain", "--config", model[0], "--checkpoint", model[1], "--frames", frames,
            "--prompts", args.prompts]

    def once(side):
        extra = ["--engine_dir", engine_dir] if side in GRAPH_BACKENDS else []
        return run_side(args, [*base, "--side", side, *extra], tmp / f"plain_{side}.npz")

    for _ in range(args.warmup):
        for side in sides:
            once(side)
    seconds, last = {s: [] for s in sides}, {}
    for r in range(args.repeats):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            last[side] = once(side)
            seconds[side].append(float(last[side]["seconds"]))
            print(f"    plain {name} {side}: {seconds[side][-1]:.2f} s", flush=True)
    fps = {s: int(last[s]["num_frames"]) / statistics.median(seconds[s]) for s in sides}
    report, lines = {}, []
    for side in sides:
        ious = mask_ious(last[side], last["sam2"]) if side != "sam2" else []
        report[side] = {"fps": fps[side], "seconds": seconds[side], "x_sam2": fps[side] / fps["sam2"],
                        "setup_seconds": float(last[side]["setup_seconds"]),
                        "min_iou_vs_sam2": min(ious) if ious else None,
                        "mean_iou_vs_sam2": float(np.mean(ious)) if ious else None,
                        "peak_rss_mib": float(last[side]["peak_rss_bytes"]) / 2**20}
        v = report[side]
        iou = f"{v['min_iou_vs_sam2']:.4f} | {v['mean_iou_vs_sam2']:.4f}" if ious else "- | -"
        lines.append(f"| {name} | {'sam2 SAM2VideoPredictor' if side == 'sam2' else side} | "
                     f"{int(last[side]['num_frames'])} | {fps[side]:.3f} | {v['x_sam2']:.2f}x | {iou} | "
                     f"{v['setup_seconds']:.2f} | {v['peak_rss_mib']:.0f} |")
    return lines, report


PLAIN_HEADER = ["| model | side | frames | frames/s | x sam2 | min IoU vs sam2 | mean IoU vs sam2 | "
                "setup s | peak RSS MiB |", "|---" * 9 + "|"]
CORRECTION_HEADER = ["| model | backend | mode | N | t | full run: frames computed, s | re-track from t: "
                     "frames computed, attention calls, s, x faster | from start: frames computed, s, "
                     "x faster | first changed frame (from start) |", "|---" * 9 + "|"]


def correction_part(args, name, model, frames, engine_dir, tmp, num_frames, t) -> tuple[list[str], dict]:
    lines, report = [], {}
    for backend in args.backends:
        for mode in args.correction_modes:
            cmd = ["--part", "correction", "--backend", backend, "--mode", mode, "--config", model[0],
                   "--checkpoint", model[1], "--frames", frames, "--prompts", args.prompts,
                   "--correction_frame", str(t), *(["--engine_dir", engine_dir] if backend in GRAPH_BACKENDS else [])]
            runs = []
            for r in range(args.warmup + args.repeats):
                data = run_side(args, cmd, tmp / f"correction_{backend}_{mode}.npz")
                if "refused" in data:
                    runs = [data]
                    break
                if r >= args.warmup:
                    runs.append(data)
            key = f"{backend}_{mode}"
            if "refused" in runs[0]:
                report[key] = {"refused": runs[0]["refused"]}
                lines.append(f"| {name} | {backend} | {mode} | {num_frames} | {t} | refused: "
                             f"{runs[0]['refused']} | | | |")
                continue

            def med(field):
                return statistics.median(float(d[field]) for d in runs)

            last = runs[-1]
            numbers = {k: float(v) for k, v in last.items() if k != "peak_rss_bytes"}
            for v in ("from_t", "from_start"):
                numbers[f"{v}_seconds"], numbers[f"{v}_full_seconds"] = med(f"{v}_seconds"), med(f"{v}_full_seconds")
                numbers[f"{v}_x_faster"] = numbers[f"{v}_full_seconds"] / max(numbers[f"{v}_seconds"], 1e-9)
            report[key] = numbers
            n = numbers
            lines.append(
                f"| {name} | {backend} | {mode} | {num_frames} | {t} | {n['from_t_full_frames_computed']:.0f}, "
                f"{n['from_t_full_seconds']:.2f} | {n['from_t_frames_computed']:.0f}, "
                f"{n['from_t_attention_calls']:.0f}, {n['from_t_seconds']:.2f}, {n['from_t_x_faster']:.1f}x | "
                f"{n['from_start_frames_computed']:.0f}, {n['from_start_seconds']:.2f}, "
                f"{n['from_start_x_faster']:.1f}x | {n['from_start_first_changed']:.0f} |")
    return lines, report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_side"]:
        return side_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", nargs="+", default=["micro", "tiny", "b+"], choices=["micro", "tiny", "b+"])
    p.add_argument("--model", nargs=2, metavar=("CONFIG", "CHECKPOINT"), default=None,
                   help="one other model instead of --models (named 'custom' in the tables)")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--parts", nargs="+", default=["plain", "correction"], choices=["plain", "correction"])
    p.add_argument("--frames", default=None, help="folder of JPEG frames (default: the parity fixture's frames16/)")
    p.add_argument("--prompts", default=None, help="npz with mask_<id>, frame_<id>; the first object is "
                                                   "prompted (default: the parity fixture's)")
    p.add_argument("--plain_frames", type=int, default=50, help="frames tracked in the plain-mode comparison")
    p.add_argument("--num_frames", type=int, default=100, help="N: the correction clip's length")
    p.add_argument("--correction_frame", type=int, default=None, help="t: the corrected frame (default N/2)")
    p.add_argument("--correction_modes", nargs="+", default=["sam2", "sam2long"], choices=MODES)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each side (median)")
    p.add_argument("--checkpoint_dir", default=str(ROOT / "outputs" / "bench_checkpoints"))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--markdown", help="append the tables to this file")
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--auto_cache", default=None,
                   help="XDG_CACHE_HOME for --backends auto (default: one of this run's, so auto's "
                        "first run measures; name one where a run already chose to time the steady "
                        "runs, as a user's later runs are)")
    args = p.parse_args(argv)
    args.frames = args.frames or str(fixture_dir() / "frames16")
    args.prompts = args.prompts or str(fixture_dir() / "prompts.npz")
    t = args.num_frames // 2 if args.correction_frame is None else args.correction_frame
    if not 0 < t < args.num_frames:
        p.error(f"--correction_frame {t} must be inside the clip's frames 1..{args.num_frames - 1}")
    if first_prompt(args.prompts)[1] != 0:
        p.error("the prompt must be on frame 0 (the clips start where the prompt is)")
    lines = [f"\n### {time.strftime('%Y-%m-%d')}: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores; median of {args.repeats} after {args.warmup} warm-up"]
    plain_lines, correction_lines, report = [], [], {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # auto's choice is measured in its first run (its setup) and kept for the next,
        # in a cache of this run's own unless --auto_cache names one.
        args.auto_cache = args.auto_cache or str(tmp / "auto_cache")
        for name in (["custom"] if args.model else args.models):
            bias, gain = LIVELY.get(name, (0.0, 1.0))
            model = tuple(args.model) if args.model else model_files(name, Path(args.checkpoint_dir), bias, gain)
            engine_dir = (build_onnx(model, tmp / f"engines_{name}", args.python)
                          if set(GRAPH_BACKENDS) & set(args.backends) else None)
            if "plain" in args.parts:
                frames = clip(Path(args.frames), args.plain_frames, tmp / f"plain_{name}")
                print(f"{name}: plain SAM 2, {args.plain_frames} frames", flush=True)
                rows, report[f"{name}_plain"] = plain_part(args, name, model, frames, engine_dir, tmp)
                plain_lines += rows
            if "correction" in args.parts:
                frames = clip(Path(args.frames), args.num_frames, tmp / f"correction_{name}")
                print(f"{name}: a correction on frame {t} of {args.num_frames}", flush=True)
                rows, report[f"{name}_correction"] = correction_part(args, name, model, frames, engine_dir, tmp,
                                                                     args.num_frames, t)
                correction_lines += rows
    if plain_lines:
        lines += ["\n**Plain SAM 2 (P=1) against sam2's SAM2VideoPredictor, same frames and prompt, "
                  "no post-processing**", "", *PLAIN_HEADER, *plain_lines]
    if correction_lines:
        lines += [f"\n**A correction on frame {t} of {args.num_frames}: what propagating again computes**",
                  "", *CORRECTION_HEADER, *correction_lines]
    publish(lines, report, args.markdown, args.json)


if __name__ == "__main__":
    main()
