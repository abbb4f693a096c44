"""What onnx-tensorrt's parser takes, checked on an ONNX graph without TensorRT.

The facts come from onnx-tensorrt's own support matrix (docs/operators.md), extracted per
TensorRT version into tests/data/tensorrt/onnx_tensorrt_ops.json (see the README there).
`graph_problems` lists, for every version asked:
- ops the parser does not support, and those that must not be in our graphs at all:
  `If` (a conditional unless its condition is an initializer; CUDA graphs exclude
  conditionals), `Loop`, `NonZero` (data-dependent shapes) and `IsNaN` (what a boolean
  attention mask exports as; it keeps TensorRT from fusing attention);
- inputs of a type the op does not take (after shape inference), Cast targets included,
  and graph inputs / outputs of a type TensorRT cannot bind;
- inputs the parser needs as build-time constants (reduction and squeeze `axes` ...) that
  are computed instead;
- Resize modes it lacks (cubic, antialiasing);
- an opset outside the parser's range.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OPS_TABLE = Path(__file__).parent / "data" / "tensorrt" / "onnx_tensorrt_ops.json"
FORBIDDEN = {"If": "a conditional (CUDA graphs exclude them)", "Loop": "a loop",
             "NonZero": "data-dependent shapes", "IsNaN": "the boolean attention mask's export"}
BINDABLE = {"FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "BOOL", "UINT8"}  # TensorRT I/O types


def load_ops_table() -> dict:
    return json.loads(OPS_TABLE.read_text())["versions"]


def _type_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type)


def _tensor_types(model: onnx.ModelProto) -> tuple[dict[str, int], set[str]]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    constants = {i.name for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants.add(node.output[0])
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = value.t.data_type
    return types, constants


def _input_index(op_type: str, opset: int, name: str) -> int | None:
    schema = onnx.defs.get_schema(op_type, opset)
    names = [i.name for i in schema.inputs]
    return names.index(name) if name in names else None


def _typed_inputs(op_type: str, opset: int, count: int) -> list[bool]:
    """Which of a node's inputs have a type parameter (the op's data); an input whose
    type the op fixes (`sizes` of Resize: tensor(int64)) is the parser's to take."""
    formal = onnx.defs.get_schema(op_type, opset).inputs
    return [not formal[min(i, len(formal) - 1)].type_str.startswith("tensor(") for i in range(count)]


def graph_problems(model: onnx.ModelProto, versions: dict | None = None) -> list[str]:
    """Every reason onnx-tensorrt of the given versions ({label: table entry}, default:
    all in the table) would refuse `model` or take it in a form we do not want."""
    versions = versions or load_ops_table()
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    types, constants = _tensor_types(model)
    problems = []
    for label, table in versions.items():
        ops = table["ops"]
        low, high = table["opsets"]
        if not low <= opset <= high:
            problems.append(f"TensorRT {label}: opset {opset} outside {low}..{high}")
        for v in (*model.graph.input, *model.graph.output):
            if _type_name(v.type.tensor_type.elem_type) not in BINDABLE:
                problems.append(f"TensorRT {label}: graph I/O {v.name} is "
                                f"{_type_name(v.type.tensor_type.elem_type)}")
        for node in model.graph.node:
            where = f"TensorRT {label}: {node.op_type} {node.name or node.output[0]}"
            if node.op_type in FORBIDDEN:
                problems.append(f"{where}: {FORBIDDEN[node.op_type]}")
            entry = ops.get(node.op_type)
            if entry is None or not entry["supported"]:
                problems.append(f"{where}: not supported by the parser")
                continue
            for name, typed in zip(node.input, _typed_inputs(node.op_type, opset, len(node.input))):
                if typed and name and name in types and _type_name(types[name]) not in entry["types"]:
                    problems.append(f"{where}: input {name} is {_type_name(types[name])}, "
                                    f"the parser takes {entry['types']}")
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Cast" and _type_name(attrs["to"]) not in entry["types"]:
                problems.append(f"{where}: casts to {_type_name(attrs['to'])}")
            for input_name in entry.get("constant_inputs", []):
                index = _input_index(node.op_type, opset, input_name)
                if index is not None and index < len(node.input) and node.input[index] \
                        and node.input[index] not in constants:
                    problems.append(f"{where}: input `{input_name}` ({node.input[index]}) must be a "
                                    "build-time constant")
            if node.op_type == "Resize":
                decode = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
                mode = decode.get("mode", "nearest")
                if mode not in entry["modes"]:
                    problems.append(f"{where}: mode {mode}")
                coord = decode.get("coordinate_transformation_mode", "half_pixel")
                if coord not in entry["coordinate_transformation_modes"]:
                    problems.append(f"{where}: coordinate_transformation_mode {coord}")
                if mode == "nearest" and decode.get("nearest_mode", "round_prefer_floor") not in entry["nearest_modes"]:
                    problems.append(f"{where}: nearest_mode {decode.get('nearest_mode')}")
                if decode.get("antialias", 0) and not entry["antialias"]:
                    problems.append(f"{where}: antialias")
    return problems


def unfolded(model: onnx.ModelProto) -> list[str]:
    """What constant folding (export/onnx_fold.py) leaves nothing of, found directly: a
    Constant node, a Shape of a tensor whose shape is static, shape arithmetic (an int64
    result) computed only from constants, and a Resize of a constant (the trunk's
    positional embedding, resized on every frame unless folded)."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              if v.type.tensor_type.HasField("shape") else None
              for v in (*graph.input, *graph.output, *graph.value_info)}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    constant = {i.name for i in graph.initializer}
    problems = []
    for node in graph.node:
        where = f"{node.op_type} {node.name or node.output[0]}"
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant":
            problems.append(f"{where}: a Constant node")
            constant |= set(node.output)
            continue
        if node.op_type == "Shape" and shapes.get(node.input[0]) is not None and None not in shapes[node.input[0]]:
            problems.append(f"{where}: the shape of {node.input[0]}, which is static {shapes[node.input[0]]}")
            constant |= set(node.output)
            continue
        if node.op_type == "Resize" and node.input[0] in constant:
            problems.append(f"{where}: a resize of the constant {node.input[0]}")
        if inputs and all(i in constant for i in inputs):
            if any(types.get(o) == TensorProto.INT64 for o in node.output):
                problems.append(f"{where}: shape arithmetic on constants")
            constant |= set(node.output)
    return problems
