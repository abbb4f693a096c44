"""The command line and GPU-memory report shared by the runners (reference_runner.py,
engine_runner.py, sam2_vos_runner.py), so that the benchmarks can drive every side with
the same arguments and read the same keys. No project imports: the reference runner runs
with the original implementation first on the path."""

import argparse


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
    return p


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
        import numpy as np

        return {"peak_torch_bytes": np.int64(self.torch.cuda.max_memory_allocated()),
                "gpu_bytes_used": np.int64(self._in_use() - self._before)}
