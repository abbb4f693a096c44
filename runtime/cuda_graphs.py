"""CUDA-graph capture of a per-frame function whose shapes are fixed per key.

The first call of a key runs eagerly (the warm-up: lazy initialisation in cuBLAS, cuDNN and
TensorRT happens there), the second is captured and then replayed, later calls only copy
their inputs into the captured ones and replay. Capture records the work without running
it, so state updated in place by the function (the pathway banks) changes only on replay.
A failed capture switches the cache off, with one warning, and the work runs eagerly.

Capture runs on the caller's current stream (the tracker's), where the inputs were written
and where the replays run, not on torch's internal capture stream; and every graph of the
tracker allocates from one memory pool, not a new pool per key. Sharing a pool is safe
here because each graph's outputs stay alive in its entry (no later capture reuses them)
and each replay's outputs are read before the next replay.

The backend learns which graph a call belongs to (`StageBackend.graph_scope`): the warm-up
and the capture of one key run in that key's scope, so a backend with per-call state that
a graph keeps (TensorRT execution contexts and their bound addresses) gives each graph its
own, made during the warm-up, outside any capture. When the cache closes, or capture
fails, the backend is told the scopes are gone (`release_graph_scope`).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
import weakref
from collections.abc import Callable

import torch

_WARM = object()
_cache_ids = itertools.count()


def blocking_event():
    """A CUDA event whose synchronize() sleeps the host thread until the work is done,
    instead of spinning a CPU core (the default) that the frame decoder and writer need."""
    return torch.cuda.Event(blocking=True)


class GraphCache:
    def __init__(self, enabled: bool, backend=None, pool=None):
        if enabled and not torch.cuda.is_available():
            raise ValueError("CUDA graphs need a CUDA device")
        self.enabled = enabled
        self.backend = backend
        self.pool = pool if pool is not None or not enabled else torch.cuda.graph_pool_handle()
        self._id = next(_cache_ids)
        self._entries: dict = {}
        self.captured = 0  # graphs captured so far (for reports and tests)
        # Scopes are released when the cache is closed or, failing that, collected (a
        # tracker that is simply dropped, as the demo does after each Track): the backend
        # then frees what it kept for them (TensorRT contexts and their working memory).
        self._scopes: list = []
        self._finalizer = weakref.finalize(self, _release_scopes, backend, self._scopes)
        self._finalizer.atexit = False  # at exit the backend goes too; CUDA may be gone already

    def scope(self, key):
        """The token naming key's graph to the backend (unique across caches)."""
        return (self._id, key)

    def _in_scope(self, key):
        if self.backend is None:
            return contextlib.nullcontext()
        return self.backend.graph_scope(self.scope(key))

    def run(self, key, fn: Callable, inputs: dict[str, torch.Tensor]):
        """fn(**inputs), through the graph captured for `key` when possible. Outputs of a
        replayed graph are the same tensors every time: read them before the next call."""
        if not self.enabled:
            return fn(**inputs)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _WARM
            self._scopes.append(self.scope(key))
            with self._in_scope(key):
                return fn(**inputs)
        if entry is _WARM:
            entry = self._capture(key, fn, inputs)
            if entry is None:
                return fn(**inputs)
        graph, static, outputs = entry
        for name, value in inputs.items():
            static[name].copy_(value, non_blocking=True)
        graph.replay()
        return outputs

    def _capture(self, key, fn, inputs):
        static = {name: value.clone() for name, value in inputs.items()}
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream()
        stream.synchronize()  # capture starts from a quiet stream
        try:
            with self._in_scope(key), torch.cuda.graph(graph, pool=self.pool, stream=stream):
                outputs = fn(**static)
        except RuntimeError as e:  # an op that cannot be captured: run eagerly from now on
            warnings.warn(f"CUDA graph capture failed ({e}); running eagerly", RuntimeWarning, stacklevel=3)
            self.close()
            self.enabled = False
            return None
        self._entries[key] = (graph, static, outputs)
        self.captured += 1
        return self._entries[key]

    def close(self):
        """Drop the graphs and tell the backend their scopes are gone."""
        self._scopes += [self.scope(key) for key in self._entries if self.scope(key) not in self._scopes]
        self._entries.clear()
        _release_scopes(self.backend, self._scopes)


def _release_scopes(backend, scopes: list):
    if backend is not None:
        for scope in scopes:
            backend.release_graph_scope(scope)
    scopes.clear()
