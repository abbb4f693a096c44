"""Tracker behaviour on a small random-weight model (image size 256): streaming, objects
that start later, object independence, prompts, bounded memory."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.prompts import ObjectPrompt, PromptError
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask

HW = (120, 160)


def _frames(n, consumed=None):
    for t in range(n):
        if consumed is not None:
            consumed.append(t)
        yield preprocess_frame(Image.fromarray(synthetic_frame(t)), 256)


def _track(backend, prompts, n, num_pathway=3, trace=None, consumed=None):
    tracker = SAM2LongTracker(backend, TrackerConfig(num_pathway, 0.1, 2.0))
    return list(tracker.track(_frames(n, consumed), prompts, n, HW, trace=trace))


def test_later_object_starts_at_its_own_frame_and_objects_are_independent(lively_backend):
    first = ObjectPrompt(1, 0, mask=synthetic_mask(0))
    later = ObjectPrompt(7, 5, mask=synthetic_mask(5) & (np.arange(160) < 60)[None, :])
    trace = {}
    both = _track(lively_backend, [first, later], 12, trace=trace)
    assert [r.frame_idx for r in both] == list(range(12))
    for r in both:
        assert r.obj_ids == ([1] if r.frame_idx < 5 else [1, 7])
    assert [row.frame_idx for row in trace[7]] == list(range(6, 12))
    assert [row.frame_idx for row in trace[1]] == list(range(1, 12))
    alone_first = _track(lively_backend, [first], 12)
    alone_later = _track(lively_backend, [later], 12)
    for joint, a, b in zip(both, alone_first, alone_later):
        np.testing.assert_allclose(joint.low_res_logits[0], a.low_res_logits[0], atol=1e-3)
        if joint.frame_idx >= 5:
            np.testing.assert_allclose(joint.low_res_logits[1], b.low_res_logits[0], atol=1e-3)
        else:
            assert b.obj_ids == [] and b.low_res_logits.shape[0] == 0


def test_memory_tree_is_exercised_and_results_stream(lively_backend):
    trace, consumed = {}, []
    tracker = SAM2LongTracker(lively_backend, TrackerConfig(3, 0.1, 2.0))
    stream = tracker.track(_frames(16, consumed), [ObjectPrompt(1, 0, mask=synthetic_mask(0))],
                           16, HW, trace=trace)
    first = next(stream)
    assert first.frame_idx == 0 and len(consumed) < 16  # emitted before the video is read
    rest = list(stream)
    assert [r.frame_idx for r in rest] == list(range(1, 16))
    acc = np.stack([row.acc for row in trace[1]])
    # Lively weights: the pathways really differ (not three copies of one tracker).
    assert np.ptp(acc[-1]) > 1e-3


@pytest.mark.parametrize("num_pathway", [1, 2, 8])
def test_pathway_counts(lively_backend, num_pathway):
    trace = {}
    out = _track(lively_backend, [ObjectPrompt(1, 0, mask=synthetic_mask(0))], 6, num_pathway, trace)
    assert len(out) == 6
    assert all(row.acc.shape == (num_pathway,) for row in trace[1])


def test_bad_prompts_are_clear_errors(lively_backend):
    with pytest.raises(PromptError, match="outside"):
        _track(lively_backend, [ObjectPrompt(1, 0, points=np.array([[500.0, 5.0]]))], 2)
    with pytest.raises(PromptError, match="empty"):
        _track(lively_backend, [ObjectPrompt(1, 0, mask=np.zeros(HW, bool))], 2)
    with pytest.raises(PromptError, match="given more than once"):
        m = synthetic_mask(0)
        _track(lively_backend, [ObjectPrompt(1, 0, mask=m), ObjectPrompt(1, 1, mask=m)], 2)


PEAK_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, tracemalloc
    sys.path.insert(0, {root!r})
    import torch
    torch.set_num_threads(1)
    from PIL import Image
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.frames import preprocess_frame
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.tracker import SAM2LongTracker
    from tests.conftest import synthetic_frame, synthetic_mask
    n = int(sys.argv[1])
    backend = TorchBackend(load_sam2_model({cfg!r}, sys.argv[2]).model, "cpu")
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0))
    frames = (preprocess_frame(Image.fromarray(synthetic_frame(t)), 256) for t in range(n))
    tracemalloc.start()  # Python objects and NumPy arrays (the host-side mask store)
    for result in tracker.track(frames, [ObjectPrompt(1, 0, mask=synthetic_mask(0))], n, (120, 160)):
        pass
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, tracemalloc.get_traced_memory()[1])
""")


def _peak_memory(num_frames, checkpoint):
    """(peak RSS KiB of the whole process, peak traced Python/NumPy bytes while tracking)."""
    script = PEAK_RSS_SCRIPT.format(root=str(ROOT), cfg=MICRO_CFG)
    out = subprocess.run([sys.executable, "-c", script, str(num_frames), str(checkpoint)],
                         check=True, capture_output=True, text=True)
    rss, traced = out.stdout.strip().splitlines()[-1].split()
    return int(rss), int(traced)


def test_memory_is_flat_in_video_length(micro_checkpoints):
    short_rss, short_traced = _peak_memory(20, micro_checkpoints["lively"])
    long_rss, long_traced = _peak_memory(200, micro_checkpoints["lively"])
    # Whole process: 200 frames within 3% (+8 MiB of allocator noise) of 20 frames.
    assert long_rss <= short_rss * 1.03 + 8 * 1024, (short_rss, long_rss)
    # Host-side state (pending masks, lineages, Python objects): within 1 MiB; one
    # 64x64 float32 mask kept per frame would already add 3 MiB over 180 frames.
    assert long_traced <= short_traced + 1024 * 1024, (short_traced, long_traced)


def test_cpu_tracker_hands_freed_heap_back_once_per_frame(lively_backend, monkeypatch):
    """glibc keeps freed heap pages of every backend's per-frame temporaries; on the CPU the
    tracker returns them at the start of each frame (runtime/host_memory.py), which keeps
    peak RSS flat. Frames before the first prompt compute nothing and trim nothing."""
    import platform

    from sam2long.runtime import host_memory

    if platform.libc_ver()[0] == "glibc":
        assert host_memory.MALLOC_TRIM is not None
    calls = []
    monkeypatch.setattr(host_memory, "MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    _track(lively_backend, [ObjectPrompt(1, 2, mask=synthetic_mask(2))], 5)
    assert calls == [0, 0, 0]
