#!/usr/bin/env python
"""Run our engine on the reference runner's inputs and write the same npz keys.

Same CLI and timed span as benchmarks/reference_runner.py (frame loading, prompts and
tracking; model build and npz writing excluded), so the two can be compared side by side.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sam2long.engine.factory import build_backend
from sam2long.engine.stages import PRECISIONS
from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.pipeline import track_frames
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from sam2long.runtime.video_io import VideoSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_cli import FrameStore, GpuMemory, add_timer, peak_rss, runner_parser  # noqa: E402


def time_stages(backend) -> dict[str, float]:
    """Wall time and calls of the backend's four stage methods (CPU: synchronous)."""
    totals: dict = {}
    for name in ("encode_image", "attend_memory", "decode_masks", "encode_memory"):
        add_timer(backend, name, name, totals)
    return totals


def main(argv=None) -> int:
    p = runner_parser(__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch")
    p.add_argument("--engine_dir", default=None, help="engines for --backend onnx / trt")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--cuda_graphs", action="store_true")
    args = p.parse_args(argv)

    memory = GpuMemory(args.device)
    backend = build_backend(args.backend, args.config, args.checkpoint, args.device, args.engine_dir,
                            args.precision)
    # Per-stage times need a wait after every call on a GPU, which would change what is
    # measured: only on the CPU (where calls are synchronous anyway).
    stage_seconds = {} if memory.cuda else time_stages(backend)
    tracker = SAM2LongTracker(backend, TrackerConfig(args.num_pathway, args.iou_thre, args.uncertainty),
                              cuda_graphs=args.cuda_graphs)
    memory.start()
    data = np.load(args.prompts)
    ids = sorted(int(k[5:]) for k in data.files if k.startswith("mask_"))
    prompts = [ObjectPrompt(i, int(data[f"frame_{i}"]), mask=data[f"mask_{i}"]) for i in ids]
    start = time.perf_counter()
    source = VideoSource(args.frames)
    trace: dict | None = None if args.no_trace else {}
    logits = {i: FrameStore(args.packed_masks) for i in ids}
    for frame in track_frames(tracker, source, prompts, trace=trace):
        for obj, frame_logits in zip(frame.obj_ids, frame.logits):
            logits[obj].add(frame_logits)
    memory.sync()
    seconds = time.perf_counter() - start
    num_frames = source.info.num_frames
    out = {"num_frames": np.array(num_frames), "seconds": np.array(seconds), **memory.report(), **peak_rss(),
           **{f"stage_seconds_{k}": np.array(v) for k, v in stage_seconds.items()}}
    for prompt in prompts:
        i = prompt.obj_id
        out[f"logits_{i}"] = logits[i].logits()
        out[f"start_{i}"] = np.array(prompt.frame_idx)
        for name in ("ious", "obj_scores", "acc") if trace is not None else ():
            out[f"{name}_{i}"] = np.stack([getattr(r, name) for r in trace[i]])
    np.savez(args.out, **out)
    print(f"{num_frames} frames in {seconds:.2f}s ({num_frames / seconds:.2f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
