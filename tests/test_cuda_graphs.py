"""The CUDA-graph cache and the host wait of a frame, on the CPU with torch.cuda's graph,
stream and event calls recorded by stand-ins: capture runs on the caller's stream into one
shared memory pool, each key's warm-up and capture run in that key's backend scope, a
failed capture falls back to eager and releases the scopes, and the frame's one host wait
sleeps instead of spinning a core."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import sam2long.runtime.cuda_graphs as cuda_graphs
from sam2long.runtime.cuda_graphs import GraphCache


class _Stream:
    def __init__(self, name):
        self.name, self.synced = name, 0

    def synchronize(self):
        self.synced += 1


class _Graph:
    def __init__(self):
        self.replays = 0

    def replay(self):
        self.replays += 1


class _Recorder:
    """torch.cuda stand-ins and a backend that records its graph scopes."""

    def __init__(self, monkeypatch, fail_capture=False):
        self.stream = _Stream("tracker stream")
        self.captures, self.scopes, self.released, self.pools = [], [], [], []
        self.fail_capture = fail_capture
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.stream)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", _Graph)
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: self.pools.append(object()) or self.pools[-1])
        monkeypatch.setattr(torch.cuda, "graph", self.graph)

    @contextlib.contextmanager
    def graph(self, cuda_graph, pool=None, stream=None, **kwargs):
        self.captures.append({"graph": cuda_graph, "pool": pool, "stream": stream, **kwargs})
        self.scopes.append(("capture", self.current))
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        yield

    # the backend side
    current = None

    @contextlib.contextmanager
    def graph_scope(self, scope):
        outer, self.current = self.current, scope
        try:
            yield
        finally:
            self.current = outer

    def release_graph_scope(self, scope):
        self.released.append(scope)


def test_capture_on_the_callers_stream_with_one_pool_for_all_keys(monkeypatch):
    """torch.cuda.graph's defaults are its own side stream and a new pool per graph: the
    cache passes the caller's current stream and one pool."""
    rec = _Recorder(monkeypatch)
    cache = GraphCache(True)
    x = torch.ones(3)
    for key in ("a", "b"):
        for _ in range(3):
            cache.run(key, lambda x: x * 2, {"x": x})
    assert [c["stream"] for c in rec.captures] == [rec.stream, rec.stream]
    assert len(rec.pools) == 1 and [c["pool"] for c in rec.captures] == [rec.pools[0]] * 2


def test_warm_up_and_capture_run_in_the_keys_scope(monkeypatch):
    """Warm-up eager in the key's scope, capture in the same scope on the caller's current
    stream with the cache's pool (one for every key, or the tracker's), replays after."""
    rec = _Recorder(monkeypatch)
    cache = GraphCache(True, backend=rec)
    assert len(rec.pools) == 1
    calls = []

    def fn(x):
        calls.append(rec.current)
        return x * 2

    x = torch.ones(3)
    for key in ("a", "b"):
        for _ in range(3):
            out = cache.run(key, fn, {"x": x})
        assert torch.equal(out, x * 2)
    assert calls == [cache.scope("a")] * 2 + [cache.scope("b")] * 2  # warm-up and capture, in scope
    assert [c["stream"] for c in rec.captures] == [rec.stream, rec.stream]
    assert [c["pool"] for c in rec.captures] == [rec.pools[0]] * 2
    assert [g.replays for g in (c["graph"] for c in rec.captures)] == [2, 2]
    assert cache.captured == 2 and len(rec.pools) == 1

    shared = GraphCache(True, backend=rec, pool=cache.pool)  # the tracker passes its pool
    shared.run("a", fn, {"x": x})
    shared.run("a", fn, {"x": x})
    assert rec.captures[-1]["pool"] is cache.pool and shared.scope("a") != cache.scope("a")
    cache.close()
    assert rec.released == [cache.scope("a"), cache.scope("b")]


def test_a_failed_capture_runs_eagerly_and_releases_the_scopes(monkeypatch):
    rec = _Recorder(monkeypatch, fail_capture=True)
    cache = GraphCache(True, backend=rec)
    x = torch.ones(2)
    cache.run("a", lambda x: x + 1, {"x": x})
    with pytest.warns(RuntimeWarning, match="capture failed"):
        out = cache.run("a", lambda x: x + 1, {"x": x})
    assert torch.equal(out, x + 1) and not cache.enabled
    assert rec.released == [cache.scope("a")]
    assert torch.equal(cache.run("a", lambda x: x + 1, {"x": x}), x + 1)  # eager from now on


def test_the_tracker_shares_one_pool_and_tells_the_backend(monkeypatch, lively_backend):
    """The tracker's image cache and every video's cache use the tracker's pool and its
    backend, and a new video releases the last one's scopes."""
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.tracker import SAM2LongTracker

    rec = _Recorder(monkeypatch)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: rec.stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    backend = type("CudaBackend", (), {"geometry": lively_backend.geometry, "device": torch.device("cuda"),
                                        "graph_scope": rec.graph_scope,
                                        "release_graph_scope": rec.release_graph_scope,
                                        "reserve_batch": lambda self, rows: None})()
    tracker = SAM2LongTracker(backend, TrackerConfig(), cuda_graphs=True)
    assert tracker._image_graphs.pool is tracker._graph_pool is rec.pools[0] and len(rec.pools) == 1
    assert tracker._image_graphs.backend is backend
    monkeypatch.setattr("sam2long.runtime.tracker.PathwayBank", lambda *a, **k: None)
    monkeypatch.setattr(torch, "zeros", lambda *a, **k: None)
    first = tracker._new_session([], 3, None).graphs
    first._entries["k"] = "a graph"
    second = tracker._new_session([], 3, None).graphs
    assert first.pool is second.pool is tracker._graph_pool and first.backend is backend
    assert rec.released == [first.scope("k")] and second is not first


def test_the_frame_wait_sleeps_instead_of_spinning(monkeypatch):
    """The one host wait per frame uses a blocking event: synchronize() on a default
    event spins a CPU core (the decoder and writer threads need it)."""
    from sam2long.runtime.tracker import SAM2LongTracker, _Step

    made = []

    class Event:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def record(self):
            pass

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, "Event", Event)
    tracker = SAM2LongTracker.__new__(SAM2LongTracker)
    masks = torch.arange(8.0).reshape(2, 2, 2)
    ints = torch.zeros(3, 1, 3, dtype=torch.int64)
    tracker._pinned = {("masks", masks.shape): (torch.empty_like(masks), torch.empty_like(ints))}
    step = _Step(masks, ints[0], ints[1], ints[2], None, None, None, None)
    got_masks, _ = tracker._to_host(step)
    np.testing.assert_array_equal(got_masks, masks.numpy())
    assert made == [{"blocking": True}]
    assert isinstance(cuda_graphs.blocking_event(), Event) and made[-1] == {"blocking": True}
