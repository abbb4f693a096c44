"""Put the precision into the ONNX graph, for TensorRT's strongly typed networks.

TensorRT 11 dropped the FP16/BF16 builder flags: a strongly typed network runs every layer
in the type the graph gives it. So a reduced-precision engine starts from a graph where the
heavy ops (convolutions, matrix products) take and give fp16/bf16, as torch autocast does,
while everything else (normalisation, softmax, reductions, elementwise glue) stays fp32,
and graph inputs and outputs keep fp32 for the runtime. Casts go around each heavy op;
a cast back to fp32 followed only by casts down again is short-circuited so chains of heavy
ops stay in low precision.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sam2long.engine.stages import PRECISIONS

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
# Ops whose float inputs and outputs go to low precision. bf16 Conv is only legal from
# opset 22, beyond what the exporter writes, so bf16 keeps convolutions in fp32.
LOW_PRECISION_OPS = {
    "fp16": frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"}),
    "bf16": frozenset({"MatMul", "Gemm"}),
}
TO_LOW, TO_FLOAT = "__to_low", "__low"  # name suffixes of the tensors this pass adds


def low_precision_initializer(init: TensorProto, precision: str) -> TensorProto:
    """An fp32 initializer rounded to fp16/bf16 (round to nearest even, as torch does)."""
    values = numpy_helper.to_array(init).astype(np.float32)
    if precision == "fp16":
        return numpy_helper.from_array(values.astype(np.float16), init.name)
    import torch  # numpy has no bfloat16; torch's rounding is the one the reference uses

    bits = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16).view(torch.int16)
    out = TensorProto(name=init.name, data_type=TensorProto.BFLOAT16, dims=list(values.shape))
    out.raw_data = bits.numpy().tobytes()
    return out


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of every fp32 tensor in the graph (inputs, initializers, intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    typed = [*graph.input, *graph.output, *graph.value_info]
    names = {v.name for v in typed if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    names |= {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    for node in graph.node:  # Constant nodes are not in value_info
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.data_type == TensorProto.FLOAT:
            names.add(node.output[0])
    return names


def cast_graph(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """A copy of `model` whose heavy ops run in `precision`; fp32 returns the model."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {PRECISIONS}")
    if precision == "fp32":
        return model
    low_type, low_ops = LOW_TYPES[precision], LOW_PRECISION_OPS[precision]
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    floats = _float_tensors(model)
    inits = {i.name: i for i in graph.initializer}
    users = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)
    graph_outputs = {o.name for o in graph.output}

    def only_heavy_users(name):
        return name not in graph_outputs and all(u.op_type in low_ops for u in users[name])

    new_nodes, cast_in = [], {}
    for node in graph.node:
        if node.op_type not in low_ops:
            new_nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if not name or name not in floats:
                continue
            if name in inits and only_heavy_users(name):
                if inits[name].data_type == TensorProto.FLOAT:
                    inits[name].CopyFrom(low_precision_initializer(inits[name], precision))
                continue
            if name not in cast_in:
                cast_in[name] = name + TO_LOW
                new_nodes.append(helper.make_node("Cast", [name], [cast_in[name]], to=low_type,
                                                  name=cast_in[name]))
            node.input[i] = cast_in[name]
        new_nodes.append(node)
        for i, name in enumerate(node.output):
            if name in floats:
                node.output[i] = name + TO_FLOAT
                new_nodes.append(helper.make_node("Cast", [node.output[i]], [name],
                                                  to=TensorProto.FLOAT, name=name + "__to_float"))
    graph.ClearField("node")
    graph.node.extend(_short_circuit(new_nodes, graph_outputs))
    graph.ClearField("value_info")  # types changed; inference recomputes what it needs
    onnx.checker.check_model(model, full_check=True)
    return model


def _short_circuit(nodes: list, graph_outputs: set[str]) -> list:
    """Cast(low->fp32) -> Cast(fp32->low) pairs become the low tensor itself."""
    produced_by = {out: n for n in nodes for out in n.output}
    replace = {}
    for n in nodes:
        if n.op_type == "Cast" and n.output[0].endswith(TO_LOW):
            src = produced_by.get(n.input[0])
            if src is not None and src.op_type == "Cast" and src.input[0].endswith(TO_FLOAT):
                replace[n.output[0]] = src.input[0]
    kept = [n for n in nodes if not (n.op_type == "Cast" and n.output[0] in replace)]
    for n in kept:
        for i, name in enumerate(n.input):
            if name in replace:
                n.input[i] = replace[name]
    # Casts to fp32 that nobody reads any more (their only readers were short-circuited).
    read = {name for n in kept for name in n.input}
    return [n for n in kept if not (n.op_type == "Cast" and n.input[0].endswith(TO_FLOAT)
                                    and n.output[0] not in read | graph_outputs)]
