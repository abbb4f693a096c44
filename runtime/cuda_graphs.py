"""CUDA-graph capture of a per-frame function whose shapes are fixed per key.

The first call of a key runs eagerly (the warm-up: lazy initialisation in cuBLAS, cuDNN and
TensorRT happens there), the second is captured and then replayed, later calls only copy
their inputs into the captured ones and replay. Capture records the work without running
it, so state updated in place by the function (the pathway banks) changes only on replay.
A failed capture switches the cache off, with one warning, and the work runs eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

_WARM = object()


class GraphCache:
    def __init__(self, enabled: bool):
        if enabled and not torch.cuda.is_available():
            raise ValueError("CUDA graphs need a CUDA device")
        self.enabled = enabled
        self._entries: dict = {}
        self.captured = 0  # graphs captured so far (for reports and tests)

    def run(self, key, fn: Callable, inputs: dict[str, torch.Tensor]):
        """fn(**inputs), through the graph captured for `key` when possible. Outputs of a
        replayed graph are the same tensors every time: read them before the next call."""
        if not self.enabled:
            return fn(**inputs)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _WARM
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
        torch.cuda.current_stream().synchronize()  # capture starts from a quiet stream
        try:
            with torch.cuda.graph(graph):
                outputs = fn(**static)
        except RuntimeError as e:  # an op that cannot be captured: run eagerly from now on
            warnings.warn(f"CUDA graph capture failed ({e}); running eagerly", RuntimeWarning, stacklevel=3)
            self.enabled = False
            self._entries.clear()
            return None
        self._entries[key] = (graph, static, outputs)
        self.captured += 1
        return self._entries[key]
