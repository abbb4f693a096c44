"""Freed heap memory handed back to the OS once per frame (glibc only; elsewhere a no-op).

On the CPU every backend's per-frame temporaries (torch's tensors, ONNX Runtime's
buffers, the NumPy arrays between graphs) are a few MiB to a few hundred MiB each, freed
with free(). glibc keeps such freed pages, which fragment over the first frames, so peak
resident memory creeps up with video length though nothing is leaking. The tracker calls
`return_freed_heap` at the start of each frame, when the last frame's temporaries are gone
(benchmarks/RESULTS.md, "Peak memory by video length", has the traces and the cost).
"""

from __future__ import annotations

import ctypes


def _glibc_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl, Windows): nothing to do
        return None


MALLOC_TRIM = _glibc_malloc_trim()


def return_freed_heap():
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
