"""Fold what is constant in an exported graph, so TensorRT gets the graph it can take.

The exporter leaves shape arithmetic on static shapes (Shape -> Gather -> Concat ...),
Constant nodes, and ops on constants in the graph. Most of it TensorRT folds itself, but
not all: onnx-tensorrt inlines an `If` only when its condition is an initializer (otherwise
it builds a conditional, which CUDA graphs exclude), and it wants the `axes` of reductions,
squeezes and slices as initializers. This pass walks the graph once in order, keeping each
tensor's type and shape (ONNX's per-node shape inference, with the values of small known
tensors), and evaluates every node whose inputs are all known (initializers, Constant nodes,
shapes of static tensors, static dims of dynamic ones) with ONNX's reference evaluator; its
outputs become initializers. Then it drops what no output needs and keeps one initializer
per distinct value (the exporter repeats a constant at every use). The graph computes the
same numbers; it only gets smaller.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

# Nodes never folded: random ops (a new draw per run).
NOT_FOLDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}
SLACK_BYTES = 1 << 20  # a folded output may be this much bigger than its inputs (broadcasts)
DATA_ELEMENTS = 4096  # known tensors up to this size feed shape inference (shape arithmetic)


def fold_constants(model: onnx.ModelProto, max_rounds: int = 4) -> onnx.ModelProto:
    """A copy of `model` with every constant computation replaced by its value."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for _ in range(max_rounds):
        before = len(model.graph.node)
        model = _fold_once(model)
        if len(model.graph.node) == before:
            break
    onnx.checker.check_model(model)
    return model


def _subgraph_inputs(node) -> set[str]:
    """Names a node's subgraphs read from the enclosing graph."""
    names = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            local = {i.name for i in (*g.input, *g.initializer)} | {o for n in g.node for o in n.output}
            for n in g.node:
                names |= {i for i in n.input if i and i not in local}
                names |= _subgraph_inputs(n) - local
    return names


class _Types:
    """Element type and shape (dims, None where unknown) of the tensors seen so far."""

    def __init__(self, graph):
        self.elem: dict[str, int] = {}
        self.dims: dict[str, list[int | None]] = {}
        for v in graph.input:
            self.set_proto(v.name, v.type)

    def set_proto(self, name, type_proto):
        t = type_proto.tensor_type
        if t.elem_type:
            self.elem[name] = t.elem_type
        if t.HasField("shape"):
            self.dims[name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]

    def set_value(self, name, value: np.ndarray):
        self.elem[name] = helper.np_dtype_to_tensor_dtype(value.dtype)
        self.dims[name] = list(value.shape)

    def proto(self, name):
        if name not in self.elem:
            return None
        return helper.make_tensor_type_proto(self.elem[name], self.dims.get(name))


def _fold_once(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    types = _Types(graph)
    for name, value in known.items():
        types.set_value(name, value)
    partial: dict[str, list[int | None]] = {}  # Shape outputs with some dims unknown
    kept = []
    for node in graph.node:
        outs = _evaluate(node, known, partial, types.dims, opsets)
        if outs is not None:
            for name, value in zip(node.output, outs):
                if isinstance(value, list):
                    partial[name] = value
                else:
                    known[name] = value
                    types.set_value(name, value)
            if not any(isinstance(v, list) for v in outs):
                continue  # folded
        kept.append(node)
        _infer(node, known, types, model.opset_import, opsets)
    # What the remaining nodes (and their subgraphs) read, walking back from the outputs.
    produced = {o: n for n in kept for o in n.output}
    needed, stack = set(), [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = produced.get(name)
        if node is not None:
            stack += [i for i in node.input if i] + sorted(_subgraph_inputs(node))
    nodes = [n for n in kept if any(o in needed for o in n.output)]
    graph_inputs = {i.name for i in graph.input}
    values = {name: np.asarray(known[name]) for name in sorted(needed)
              if name in known and name not in produced and name not in graph_inputs}
    # One initializer per distinct value: the exporter repeats a constant at every use.
    first, rename = {}, {}
    read_by_subgraphs = {name for n in nodes for name in _subgraph_inputs(n)}
    for name, value in values.items():
        if name in read_by_subgraphs:  # subgraphs keep the names they read
            rename[name] = name
            continue
        key = (value.dtype.str, value.shape, hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest())
        rename[name] = first.setdefault(key, name)
    for node in nodes:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    initializers = [numpy_helper.from_array(values[name], name) for name in sorted(set(rename.values()))]
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.ClearField("value_info")
    return model


def _infer(node, known, types: _Types, opset_import, opsets):
    """Record the output types and shapes of a node left in the graph."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain)
    except Exception:
        return
    reads = [i for i in node.input if i] + sorted(_subgraph_inputs(node))
    input_types = {i: types.proto(i) for i in reads if types.proto(i) is not None}
    if any(i not in input_types for i in node.input if i):
        return
    data = {i: numpy_helper.from_array(np.asarray(known[i]), i) for i in node.input
            if i in known and np.asarray(known[i]).size <= DATA_ELEMENTS}
    try:
        outputs = onnx.shape_inference.infer_node_outputs(schema, node, input_types, data,
                                                          opset_imports=list(opset_import))
    except Exception:  # what the per-node inference cannot say stays unknown
        return
    for name, type_proto in outputs.items():
        types.set_proto(name, type_proto)


def _shape_slice(node, dims: list[int | None]) -> list[int | None]:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(dims)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (s + rank if s < 0 else s for s in (start, end))
    return dims[max(0, min(start, rank)):max(0, min(end, rank))]


def _evaluate(node, known, partial, dims, opsets):
    """The node's output values when it can be folded, else None. A value is an array, or
    for shape arithmetic a list of dims with None where only run time knows."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NOT_FOLDED:
        return None
    if node.op_type == "Constant" and node.attribute[0].name == "value":  # already a value
        return [numpy_helper.to_array(node.attribute[0].t)]
    if node.op_type == "Shape":
        shape = dims.get(node.input[0])
        if shape is None:
            return None
        shape = _shape_slice(node, shape)
        return [np.array(shape, dtype=np.int64) if None not in shape else shape]
    if node.op_type == "Size":
        shape = dims.get(node.input[0])
        return None if shape is None or None in shape else [np.array(int(np.prod(shape)), dtype=np.int64)]
    if node.op_type == "Gather" and node.input[0] in partial and node.input[1] in known:
        index = known[node.input[1]]
        if index.ndim == 0:  # one dim of a partly known shape
            dim = partial[node.input[0]][int(index)]
            return None if dim is None else [np.array(dim, dtype=np.int64)]
        return None
    inputs = [i for i in node.input if i]
    outer = _subgraph_inputs(node)
    if not all(i in known for i in (*inputs, *outer)):
        return None
    feeds = {i: known[i] for i in (*inputs, *outer)}
    try:
        graph = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(known[i].dtype), known[i].shape)
             for i in feeds],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
        values = ReferenceEvaluator(proto).run(None, feeds)
    except Exception:  # an op the evaluator lacks: leave it to run time
        return None
    values = [np.asarray(v) for v in values]
    budget = sum(known[i].nbytes for i in inputs) + SLACK_BYTES
    if sum(v.nbytes for v in values) > budget:
        return None  # a broadcast to a big constant: cheaper computed than stored
    return values
