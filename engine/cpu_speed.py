"""Which CPU backend is faster on this machine, measured: the same fp32 matrix product in
torch and in ONNX Runtime. The stages' time is dominated by matrix products, and the two
libraries' kernels differ by up to 2x between CPUs (torch's BLAS can take a slower path on
some vendors' processors), so `--backend auto` asks the machine instead of guessing."""

from __future__ import annotations

import time

import numpy as np

SIDE = 1536
REPEATS = 3


def _best(run) -> float:
    run()  # warm-up: thread pools, first-touch allocations
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def onnx_over_torch_speed() -> float:
    """How many times faster ONNX Runtime multiplies two fp32 SIDE x SIDE matrices than
    torch on this machine (about a tenth of a second to measure)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((SIDE, SIDE), dtype=np.float32)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [SIDE, SIDE]) for n in "ab"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", inputs,
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [SIDE, SIDE])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, 10)  # what every supported onnxruntime reads
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ort_seconds = _best(lambda: session.run(None, {"a": a, "b": a}))
    ta = torch.from_numpy(a)
    torch_seconds = _best(lambda: ta @ ta)
    return torch_seconds / ort_seconds
