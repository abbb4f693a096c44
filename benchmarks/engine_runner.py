#!/usr/bin/env python
"""Run our engine on the reference runner's inputs and write the same npz keys.

Same CLI and timed span as benchmarks/reference_runner.py (frame loading, prompts and
tracking; model build and npz writing excluded), so the two can be compared side by side.
`--backend auto` makes the tools' choice (tools/cli.py) and writes which backend it picked.
`--frame_times FILE` writes each frame's tracking seconds (the tracker's step for that frame:
image encoder, memory attention, decoder and memory encoder of every object, and the
selection between them); `--startup_breakdown` prints, as one `startup_breakdown: {json}`
line, when each phase from process start to the first tracked frame ended.
"""

from __future__ import annotations

import time

# Before the heavy imports: the startup breakdown's "imports" phase starts here.
_SCRIPT_START = time.monotonic()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sam2long.engine.stages import PRECISIONS  # noqa: E402
from sam2long.runtime.config import TrackerConfig  # noqa: E402
from sam2long.runtime.pipeline import track_frames  # noqa: E402
from sam2long.runtime.prompts import ObjectPrompt  # noqa: E402
from sam2long.runtime.tracker import SAM2LongTracker  # noqa: E402
from sam2long.runtime.video_io import VideoSource  # noqa: E402
from sam2long.tools.cli import build_chosen_backend  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_cli import FrameClock, FrameStore, GpuMemory, add_timer, peak_rss, runner_parser  # noqa: E402

_IMPORTED = time.monotonic()
STAGE_NAMES = ("encode_image", "attend_memory", "decode_masks", "encode_memory")
# The parent's time.monotonic() just before it started this process (system-wide clock on
# Linux), so that the breakdown includes the interpreter's own start.
SPAWN_ENV = "SAM2LONG_BENCH_SPAWN"


def time_stages(backend) -> dict[str, float]:
    """Wall time and calls of the backend's four stage methods (CPU: synchronous)."""
    totals: dict = {}
    for name in STAGE_NAMES:
        add_timer(backend, name, name, totals)
    return totals


def time_first_calls(backend) -> dict[str, float]:
    """Seconds of each stage method's first call (graph warm-up, lazy allocations)."""
    first: dict = {}
    for name in STAGE_NAMES:
        method = getattr(backend, name)

        def timed(*a, _method=method, _name=name, **k):
            began = time.monotonic()
            result = _method(*a, **k)
            first.setdefault(_name, time.monotonic() - began)
            return result

        setattr(backend, name, timed)
    return first


class SessionTimer:
    """Total seconds spent creating ONNX Runtime sessions while active (the graphs' load
    and optimisation, apart from the rest of building the backend)."""

    def __init__(self):
        import onnxruntime

        self.ort, self.original, self.seconds = onnxruntime, onnxruntime.InferenceSession, 0.0

    def __enter__(self):
        def timed(*a, **k):
            began = time.monotonic()
            session = self.original(*a, **k)
            self.seconds += time.monotonic() - began
            return session

        self.ort.InferenceSession = timed
        return self

    def __exit__(self, *exc):
        self.ort.InferenceSession = self.original


def main(argv=None) -> int:
    p = runner_parser(__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "trt", "auto"))
    p.add_argument("--engine_dir", default=None, help="engines for --backend onnx / trt / auto")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--cuda_graphs", action="store_true")
    p.add_argument("--startup_breakdown", action="store_true",
                   help="print when each phase up to the first tracked frame ended (a JSON line)")
    args = p.parse_args(argv)

    stamps = {"script_start": _SCRIPT_START, "imports": _IMPORTED}
    if os.environ.get(SPAWN_ENV):
        stamps["spawn"] = float(os.environ[SPAWN_ENV])
    sessions = None
    if args.startup_breakdown and args.backend in ("onnx", "auto"):
        sessions = SessionTimer()  # imports onnxruntime: part of the imports phase
        stamps["imports"] = time.monotonic()

    memory = GpuMemory(args.device)
    with sessions or contextlib.nullcontext():
        backend = build_chosen_backend(args.backend, args.config, args.checkpoint, args.device,
                                       args.engine_dir, args.precision, build_graphs=False)
    stamps["backend_built"] = time.monotonic()
    backend_name = backend.describe()
    # Per-stage times need a wait after every call on a GPU, which would change what is
    # measured: only on the CPU (where calls are synchronous anyway).
    stage_seconds = {} if memory.cuda else time_stages(backend)
    first_calls = time_first_calls(backend) if args.startup_breakdown else {}
    tracker = SAM2LongTracker(backend, TrackerConfig(args.num_pathway, args.iou_thre, args.uncertainty),
                              cuda_graphs=args.cuda_graphs)
    stamps["tracker_ready"] = time.monotonic()
    clock = FrameClock()
    step_ends: dict[int, float] = {}
    if args.frame_times or args.startup_breakdown:
        step = clock.wrap(tracker._step, lambda session, t, *rest: t)

        def stamped_step(session, t, *rest):
            step(session, t, *rest)
            step_ends[t] = time.monotonic()

        tracker._step = stamped_step  # instance attribute: this runner's tracker only
    memory.start()
    data = np.load(args.prompts)
    ids = sorted(int(k[5:]) for k in data.files if k.startswith("mask_"))
    prompts = [ObjectPrompt(i, int(data[f"frame_{i}"]), mask=data[f"mask_{i}"]) for i in ids]
    start = time.perf_counter()
    clock.start()
    source = VideoSource(args.frames)
    trace: dict | None = None if args.no_trace else {}
    logits = {i: FrameStore(args.packed_masks) for i in ids}
    emitted: dict[int, float] = {}
    for frame in track_frames(tracker, source, prompts, trace=trace):
        for obj, frame_logits in zip(frame.obj_ids, frame.logits):
            logits[obj].add(frame_logits)
        emitted[frame.index] = time.perf_counter() - start
    memory.sync()
    seconds = time.perf_counter() - start
    num_frames = source.info.num_frames
    out = {"num_frames": np.array(num_frames), "seconds": np.array(seconds), "backend": np.array(backend_name),
           **memory.report(), **peak_rss(), **{f"stage_seconds_{k}": np.array(v) for k, v in stage_seconds.items()}}
    for prompt in prompts:
        i = prompt.obj_id
        out[f"logits_{i}"] = logits[i].logits()
        out[f"start_{i}"] = np.array(prompt.frame_idx)
        for name in ("ious", "obj_scores", "acc") if trace is not None else ():
            out[f"{name}_{i}"] = np.stack([getattr(r, name) for r in trace[i]])
    np.savez(args.out, **out)
    if args.frame_times:
        clock.write(args.frame_times, num_frames, backend=backend_name,
                    emitted=[emitted.get(t) for t in range(num_frames)])
    if args.startup_breakdown:
        first = min(p.frame_idx for p in prompts)
        stamps["first_frame"] = step_ends.get(first)  # the prompt frame
        stamps["first_tracked_frame"] = step_ends.get(first + 1)  # memory attention's first frame
        print("startup_breakdown: " + json.dumps(
            {"backend": backend_name, "monotonic": stamps,
             "graph_sessions_seconds": sessions.seconds if sessions else 0.0,
             "first_call_seconds": first_calls}), flush=True)
    print(f"{num_frames} frames in {seconds:.2f}s ({num_frames / seconds:.2f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
