"""ONNX Runtime's CUDA providers run on their own stream: a GPU call of the ONNX backend
must first wait for the caller's stream (where the tracker wrote the inputs), and only then
run. Checked on the CPU with the GPU branch driven by stand-ins (`meta` for the device)."""

from __future__ import annotations

import torch

from sam2long.engine.stages import STAGE_SPECS, resolve_dims


def test_gpu_calls_wait_for_the_callers_stream_before_running(monkeypatch, lively_backend):
    from sam2long.engine.onnx_backend import OnnxBackend

    events = []

    class Stream:
        def synchronize(self):
            events.append("caller stream synchronized")

    class Binding:
        def bind_input(self, name, *args):
            events.append(f"bind {name}")

        def bind_output(self, name, *args):
            events.append(f"bind {name}")

    class Session:
        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, binding):
            events.append("run")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    backend = OnnxBackend.__new__(OnnxBackend)
    backend.device, backend.geometry = torch.device("meta"), lively_backend.geometry
    backend.sessions, backend.profiled, backend.max_batch = {"memory_encoder": Session()}, False, 4
    feeds = {t.name: torch.zeros(resolve_dims(t, backend.geometry, 2), dtype=getattr(torch, t.dtype), device="meta")
             for t in STAGE_SPECS["memory_encoder"].inputs}
    outputs = backend._run("memory_encoder", feeds, 2)
    assert events[0] == "caller stream synchronized" and events[-1] == "run"
    assert events.count("caller stream synchronized") == 1
    assert [tuple(o.shape) for o in outputs] == [resolve_dims(STAGE_SPECS["memory_encoder"].outputs[0],
                                                              backend.geometry, 2)]
