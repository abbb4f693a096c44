"""The command line and GPU-memory report shared by the runners (reference_runner.py,
engine_runner.py, sam2_vos_runner.py), so that the benchmarks can drive every side with
the same arguments and read the same keys. No project imports: the reference runner runs
with the original implementation first on the path."""

import argparse

import numpy as np


def runner_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="model YAML (SAM 2.1 layout)")
    p.add_argument("--checkpoint", required=True, help='{"model": state_dict} .pt')
    p.add_argument("--frames", required=True, help="folder of <index>.jpg frames")
    p.add_argument("--prompts", required=True, help="npz with mask_<id> and frame_<id>")
    p.add_argument("--num_pathway", type=int, default=3)
    p.add_argument("--iou_thre", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2)
    p.add_argument("--out", required=True, help="npz to write (the fixture's keys)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no_trace", action="store_true",
                   help="skip the per-frame score traces (their host reads are not part of tracking: "
                        "timed GPU runs leave them out)")
    p.add_argument("--packed_masks", action="store_true",
                   help="hold each frame's output as a bit-packed mask instead of float16 logits "
                        "(peak-memory runs: what the IoU needs, without the runner's own storage "
                        "growing by a video-sized array); logits_<id> are then written as +1/-1")
    p.add_argument("--frame_times", default=None,
                   help="write a JSON of each frame's tracking seconds and when it ended "
                        "(benchmarks/bench_steady.py: time against frame index)")
    return p


class FrameClock:
    """Per-frame wall time inside a runner, on the CPU (calls are synchronous there): each
    piece of a frame's work is timed with `span(frame_idx)` and summed per frame (the original
    tracks objects one after another, so one frame has one span per object). Written by
    `write` as {"frame_seconds": [per frame index, null where nothing ran], "frame_end":
    [when the frame's last span ended, seconds after `start()`], "frame_rss_mib": [resident
    memory then, null where /proc does not say], **extra}."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self.origin = self._now()
        self.seconds: dict[int, float] = {}
        self.ends: dict[int, float] = {}
        self.rss: dict[int, float | None] = {}
        self._depth = 0

    def start(self):
        self.origin = self._now()

    def add(self, frame_idx: int, began: float, ended: float) -> None:
        self.seconds[frame_idx] = self.seconds.get(frame_idx, 0.0) + ended - began
        self.ends[frame_idx] = ended - self.origin
        self.rss[frame_idx] = current_rss_mib()

    def wrap(self, fn, frame_of):
        """`fn` timed as a span of frame `frame_of(*args, **kwargs)`; a wrapped call inside
        another is part of the outer span, not counted twice."""
        def timed(*a, **k):
            if self._depth:
                return fn(*a, **k)
            self._depth += 1
            began = self._now()
            try:
                result = fn(*a, **k)
            finally:
                self._depth -= 1
            self.add(frame_of(*a, **k), began, self._now())
            return result
        return timed

    def write(self, path: str, num_frames: int, **extra) -> None:
        import json

        report = {"frame_seconds": [self.seconds.get(t) for t in range(num_frames)],
                  "frame_end": [self.ends.get(t) for t in range(num_frames)],
                  "frame_rss_mib": [self.rss.get(t) for t in range(num_frames)], **extra}
        with open(path, "w") as f:
            json.dump(report, f)


class FrameStore:
    """The runner's copy of one object's per-frame outputs: float16 logits, or with
    packed=True bit-packed masks (1/16 of the bytes), read back as +1/-1 logits."""

    def __init__(self, packed: bool):
        self.packed, self.frames, self.shape = packed, [], None

    def add(self, logits) -> None:
        logits = np.asarray(logits)
        self.shape = logits.shape
        self.frames.append(np.packbits(logits > 0) if self.packed else logits.astype(np.float16))

    def logits(self):
        if not self.packed:
            return np.stack(self.frames)
        size = int(np.prod(self.shape))
        masks = np.stack([np.unpackbits(f, count=size).reshape(self.shape) for f in self.frames])
        return np.where(masks > 0, 1, -1).astype(np.float16)


class GpuMemory:
    """Peak torch allocation in the timed span and the device memory the process holds
    (TensorRT, cuDNN and the rest included) for a runner's npz; nothing on the CPU."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")
        self._before = self._in_use() if self.cuda else 0  # before the model is built

    def _in_use(self) -> int:
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def start(self):
        """The timed span begins: queued work done, peak counter reset."""
        if self.cuda:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats()

    def report(self) -> dict:
        if not self.cuda:
            return {}
        return {"peak_torch_bytes": np.int64(self.torch.cuda.max_memory_allocated()),
                "gpu_bytes_used": np.int64(self._in_use() - self._before)}


def current_rss_mib() -> float | None:
    """The process's resident memory now (Linux's /proc/self/statm), None elsewhere."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> dict:
    """The process's peak resident memory so far (Linux reports KiB), for a runner's npz."""
    import resource

    return {"peak_rss_bytes": np.int64(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}


# SAM 2 module -> the engine stage it corresponds to, for per-stage times of the original
# and of SAM 2's predictor (their decoder call includes the prompt encoder).
SAM2_STAGE_MODULES = {"image_encoder": "encode_image", "memory_attention": "attend_memory",
                      "sam_mask_decoder": "decode_masks", "memory_encoder": "encode_memory"}


def add_timer(owner, attr: str, stage: str, totals: dict) -> None:
    """Replace `owner.attr` (a callable) by one that adds its wall time and calls to
    totals[stage] and totals[f"{stage}_calls"]; CPU only, where calls are synchronous."""
    import time

    method = getattr(owner, attr)
    totals[stage] = totals[f"{stage}_calls"] = 0.0

    def timed(*a, **k):
        start = time.perf_counter()
        result = method(*a, **k)
        totals[stage] += time.perf_counter() - start
        totals[f"{stage}_calls"] += 1
        return result

    setattr(owner, attr, timed)


def time_modules(model) -> dict:
    """Per-stage times of a SAM 2 model (the original's, or SAM 2's own predictor)."""
    totals: dict = {}
    for attr, stage in SAM2_STAGE_MODULES.items():
        add_timer(getattr(model, attr), "forward", stage, totals)
    return totals


def stage_report(totals: dict) -> dict:
    return {f"stage_seconds_{k}": np.array(v) for k, v in totals.items()}
