"""Graphs TensorRT can take: every exported graph, after each precision pass, uses only ops
and types onnx-tensorrt supports (its own matrix, for the oldest and newest TensorRT the
README claims), with build-time constants where it needs them, and no `If`, `Loop`,
`NonZero` or `IsNaN` (tests/trt_graph_check.py). Checked on the micro model and on the
full-size SAM 2.1 base+ at 1024 px with random weights (the op set a user's engines get).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sam2long.engine.manifest import Manifest, STAGES
from sam2long.engine.stages import PRECISIONS
from sam2long.export.onnx_precision import cast_graph
from tests.test_onnx_backend import engines  # noqa: F401 (module fixture: the micro graphs)
from tests.trt_graph_check import graph_problems, load_ops_table

BASE_PLUS = "configs/sam2.1/sam2.1_hiera_b+.yaml"


@pytest.fixture(scope="module")
def base_plus_graphs(tmp_path_factory):
    """SAM 2.1 base+ (1024 px) graphs from seeded random weights: about a minute and a half
    on two cores, once per test session."""
    from sam2long.export.build_engines import build
    from sam2long.tools.make_random_checkpoint import write_checkpoint

    folder = tmp_path_factory.mktemp("base_plus")
    checkpoint = write_checkpoint(folder / "random.pt", BASE_PLUS, seed=0)
    out = build(BASE_PLUS, str(checkpoint), str(folder / "eng"))
    checkpoint.unlink()
    return out


def _assert_takes(folder, stage):
    model = onnx.load(str(folder / Manifest.load(folder).trt_source(stage)))
    for precision in PRECISIONS:
        problems = graph_problems(cast_graph(model, precision))
        assert not problems, f"{stage} {precision}:\n" + "\n".join(problems)


@pytest.mark.parametrize("stage", STAGES)
def test_micro_graphs_are_what_tensorrt_takes(engines, stage):  # noqa: F811
    _assert_takes(engines, stage)


@pytest.mark.parametrize("stage", STAGES)
def test_full_size_graphs_are_what_tensorrt_takes(base_plus_graphs, stage):
    _assert_takes(base_plus_graphs, stage)


def test_full_size_encoder_is_folded(base_plus_graphs):
    """The base+ image encoder folds to about a thousand nodes, with no shape arithmetic
    left (its shapes are all static) and the trunk's positional embedding a constant."""
    graph = onnx.load(str(base_plus_graphs / "image_encoder.onnx"), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert len(graph.node) < 1100 and not ops & {"Shape", "Constant", "If", "Gather"}, (len(graph.node), ops)
    resize = [n for n in graph.node if n.op_type == "Resize"]  # the FPN's nearest upsampling only
    assert all(helper.get_attribute_value(a) == b"nearest" for n in resize for a in n.attribute if a.name == "mode")


def test_the_checker_finds_what_tensorrt_refuses():
    """The checker itself: a conditional, a NaN test, a cubic Resize, computed reduction
    axes, a double input, a cast to double and an opset outside the range are each
    reported, for both TensorRT versions of the table."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("IsNaN", ["x"], ["nan"]),
        helper.make_node("If", ["cond"], ["branch"],
                         then_branch=helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "t", [],
                                                       [helper.make_tensor_value_info("a", f, [2, 3])]),
                         else_branch=helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "e", [],
                                                       [helper.make_tensor_value_info("b", f, [2, 3])])),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["axes"]),
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"]),
        helper.make_node("Resize", ["x4", "", "scales"], ["big"], mode="cubic"),
        helper.make_node("Cast", ["mean"], ["as_double"], to=TensorProto.DOUBLE),
        helper.make_node("Add", ["d", "d"], ["d2"]),
    ]
    graph = helper.make_graph(
        nodes, "bad",
        [helper.make_tensor_value_info("x", f, [2, 3]), helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x4", f, [1, 1, 2, 3]), helper.make_tensor_value_info("d", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info(n, t, None) for n, t in
         (("nan", TensorProto.BOOL), ("branch", f), ("big", f), ("as_double", TensorProto.DOUBLE), ("d2", TensorProto.DOUBLE))],
        initializer=[onnx.numpy_helper.from_array(np.array([0], np.int64), "zero"),
                     onnx.numpy_helper.from_array(np.array([1], np.int64), "one"),
                     onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    problems = graph_problems(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    for version in load_ops_table():
        for expected in ("IsNaN nan: the boolean attention mask", "If branch: a conditional",
                         "ReduceMean mean: input `axes` (axes) must be a build-time constant",
                         "Resize big: mode cubic", "Cast as_double: casts to DOUBLE", "Add d2: input d is DOUBLE",
                         "graph I/O d is DOUBLE"):
            assert f"TensorRT {version}: {expected}" in "\n".join(problems), (version, expected, problems)
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [helper.make_tensor_value_info("x", f, [2])],
                                                [helper.make_tensor_value_info("y", f, [2])]),
                              opset_imports=[helper.make_opsetid("", 23)])
    assert any("opset 23 outside 9..20" in p for p in graph_problems(model))
