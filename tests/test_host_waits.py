"""No host wait inside what is captured: the work the tracker hands to its CUDA-graph cache
(the image encoder, and the fixed-shape tracking step with memory attention, decoder,
selection, memory encoder and bank update) runs here on the CPU under a dispatch mode that
fails on every op that would make the host wait for the GPU (tests/capture_checks.py).
A wait there breaks capture (CUDA graphs silently off) and stalls the stream eagerly.
"""

from __future__ import annotations

import pytest
import torch

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.cuda_graphs import GraphCache
from sam2long.runtime.tracker import SAM2LongTracker
from tests.capture_checks import HostWait, HostWaitChecker
from tests.test_gpu_path import _prompts
from tests.test_tracker import HW, _frames


def _captured_work_under(monkeypatch, checker_calls: list):
    """GraphCache.run runs what it would capture under the checker (the cache itself is
    off on the CPU: every call is eager)."""
    original = GraphCache.run

    def run(self, key, fn, inputs):
        def checked(**kw):
            checker_calls.append(key)
            with HostWaitChecker():
                return fn(**kw)
        return original(self, key, checked, inputs)

    monkeypatch.setattr(GraphCache, "run", run)


def test_the_captured_work_never_waits_for_the_device(micro_checkpoints, monkeypatch):
    """A video with two objects (one starting later), three pathways that branch: every
    image-encoder call and fixed-shape step runs under the checker and passes. The torch
    backend runs as on CUDA (every memory slot kept, no slot compaction, which needs a
    boolean index)."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend
    from tests.conftest import MICRO_CFG

    backend = TorchBackend(load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model, "cpu")
    backend.compact_memory = False  # as on CUDA
    calls = []
    _captured_work_under(monkeypatch, calls)
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), fixed_shapes=True)
    results = list(tracker.track(_frames(8), _prompts(), 8, HW))
    assert len(results) == 8
    assert calls.count("image") == 8 and (0,) in calls and (0, 1) in calls  # both active sets ran


def test_the_checker_catches_host_waits():
    """The checker itself: .item(), int(), bool(), nonzero, unique, boolean indexing (read
    and write), masked_select and tensor repeats each fail; the sync-free forms pass."""
    x = torch.arange(6.0)
    mask = x > 2
    waits = [lambda: x.sum().item(), lambda: int(x[0]), lambda: bool(x[1] > 0), lambda: x.nonzero(),
             lambda: torch.unique(x), lambda: x[mask], lambda: x.masked_select(mask),
             lambda: x.repeat_interleave(torch.tensor([1, 2, 1, 1, 1, 1])), lambda: x.clone().__setitem__(mask, 0.0)]
    for wait in waits:
        with pytest.raises(HostWait), HostWaitChecker():
            wait()
    with HostWaitChecker():  # what the tracker uses instead
        torch.where(mask, x, 0.0)
        x.repeat_interleave(2)
        x[torch.tensor([0, 2])]
        x.masked_fill(mask, 0.0)
        torch.argmax(x)


def test_an_item_in_the_step_is_caught(micro_checkpoints, monkeypatch):
    """A host wait slipped into the tracking step (a debugging .item()) fails the check."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend
    from sam2long.runtime import tracker as tracker_module
    from tests.conftest import MICRO_CFG

    backend = TorchBackend(load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model, "cpu")
    backend.compact_memory = False
    _captured_work_under(monkeypatch, [])
    select = tracker_module.select_candidates

    def select_with_a_peek(acc, ious, scores, uncertainty):
        print("best IoU", ious.max().item())  # the kind of line that breaks capture
        return select(acc, ious, scores, uncertainty)

    monkeypatch.setattr(tracker_module, "select_candidates", select_with_a_peek)
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), fixed_shapes=True)
    with pytest.raises(HostWait, match="_local_scalar_dense"):
        list(tracker.track(_frames(4), _prompts(), 4, HW))
