"""Timing helpers: the best of a few calls, and the same fp32 matrix product in torch and in
ONNX Runtime (the benchmarks' FLOP floor). `--backend auto` does not decide by the matrix
product (it times the model's own stages: engine/auto_backend.py)."""

from __future__ import annotations

import time

import numpy as np

SIDE = 1536
REPEATS = 3


def best_seconds(run, repeats: int = REPEATS, warmup: bool = True) -> float:
    """The fastest of `repeats` timed calls of `run`, after one untimed warm-up (skip it with
    warmup=False where the caller has warmed up already)."""
    if warmup:
        run()  # thread pools, first-touch allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_seconds(side: int = SIDE, repeats: int = REPEATS) -> dict[str, float]:
    """Seconds for one fp32 side x side matrix product: {"torch": ..., "onnx": ...}."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [side, side]) for n in "ab"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", inputs,
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [side, side])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = min(model.ir_version, 10)  # what every supported onnxruntime reads
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ta = torch.from_numpy(a)
    return {"torch": best_seconds(lambda: ta @ ta, repeats),
            "onnx": best_seconds(lambda: session.run(None, {"a": a, "b": a}), repeats)}
