"""The fp16/bf16 graphs TensorRT's strongly typed build starts from (export/onnx_precision.py),
and the shape profiles it is given (engine/profiles.py), checked on the CPU."""

import collections

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from sam2long.engine.manifest import Manifest, STAGES
from sam2long.engine.profiles import MAX_CLICKS, stage_profile
from sam2long.export.onnx_precision import LOW_PRECISION_OPS, LOW_TYPES, cast_graph, low_precision_initializer
from sam2long.export.wrappers import example_inputs
from tests.test_onnx_backend import engines  # noqa: F401 (module fixture: the micro graphs)

FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Sqrt", "Pow", "Erf", "Sin", "Cos")


def _types(model):
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    typed = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    typed.update({i.name: i.data_type for i in graph.initializer})
    return typed


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cast_graph_puts_heavy_ops_in_low_precision_and_keeps_the_rest_fp32(engines, precision):  # noqa: F811
    low = LOW_TYPES[precision]
    for stage in STAGES:
        model = cast_graph(onnx.load(str(engines / Manifest.load(engines).trt_source(stage))), precision)
        types = _types(model)
        assert all(v.type.tensor_type.elem_type != low for v in (*model.graph.input, *model.graph.output)), stage
        heavy = [n for n in model.graph.node if n.op_type in LOW_PRECISION_OPS[precision]]
        assert heavy, stage
        for node in heavy:  # every float operand of a heavy op is low precision
            for name in node.input:
                if name and types.get(name) in (TensorProto.FLOAT, low):
                    assert types[name] == low, (stage, node.name, name)
        for node in model.graph.node:  # normalisation, softmax, reductions: fp32 in and out
            if node.op_type in FP32_OPS:
                assert all(types.get(n) != low for n in (*node.input, *node.output) if n), (stage, node.name)
        counts = collections.Counter(n.op_type for n in model.graph.node)
        assert counts["Cast"] > 0


def test_cast_graph_short_circuits_round_trips(engines):  # noqa: F811
    """A heavy op feeding another heavy op passes its low-precision tensor straight on."""
    model = cast_graph(onnx.load(str(engines / "image_encoder.onnx")), "fp16")
    produced = {out: n for n in model.graph.node for out in n.output}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.attribute[0].i == TensorProto.FLOAT16:
            src = produced.get(node.input[0])
            assert not (src is not None and src.op_type == "Cast" and src.attribute[0].i == TensorProto.FLOAT)


def test_fp16_graphs_run_close_to_fp32_in_onnx_runtime(engines):  # noqa: F811
    """ONNX Runtime (CPU) runs the fp16 graphs: within 1% of the fp32 graph's output scale,
    and really changed (the casts are live)."""
    import onnxruntime as ort

    from sam2long.engine.graph_backend import load_geometry

    inputs = example_inputs(load_geometry(engines))
    for stage in STAGES:
        fp32 = onnx.load(str(engines / Manifest.load(engines).trt_source(stage)))
        feeds = {k: v.numpy() for k, v in inputs[stage].items()}
        want = ort.InferenceSession(fp32.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        fp16 = cast_graph(fp32, "fp16").SerializeToString()
        got = ort.InferenceSession(fp16, providers=["CPUExecutionProvider"]).run(None, feeds)
        for w, g in zip(want, got):
            assert g.dtype == np.float32
            scale = np.abs(w).max() + 1e-6
            assert np.abs(w - g).max() / scale < 1e-2, stage
        assert any(not np.array_equal(w, g) for w, g in zip(want, got)), stage


def test_bf16_initializers_round_like_torch():
    values = np.array([1.0, 1 + 2 ** -9, 3.14159, -65504.0, 1e-8], dtype=np.float32)
    init = low_precision_initializer(onnx.numpy_helper.from_array(values, "w"), "bf16")
    assert init.data_type == TensorProto.BFLOAT16
    bits = np.frombuffer(init.raw_data, dtype=np.int16)
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
    np.testing.assert_array_equal(bits, expected)
    with pytest.raises(ValueError, match="precision"):
        cast_graph(onnx.ModelProto(), "int8")


def test_profiles_cover_the_dynamic_inputs_with_opt_at_the_common_size(engines):  # noqa: F811
    from sam2long.engine.graph_backend import load_geometry, stage_io_names

    geo = load_geometry(engines)
    for stage in STAGES:
        graph = onnx.load(str(engines / Manifest.load(engines).trt_source(stage)), load_external_data=False).graph
        dynamic = {i.name for i in graph.input
                   if any(d.dim_param or not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)}
        profile = stage_profile(stage, geo, max_batch=12, opt_batch=3)
        assert set(profile) == dynamic, stage
        assert set(profile) <= set(stage_io_names(stage)[0])
        for name, (lo, opt, hi) in profile.items():
            assert lo[0] == 1 and opt[0] == 3 and hi[0] == 12, (stage, name)
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi)), (stage, name)
    clicks = stage_profile("mask_decoder", geo, 4)["point_coords"]
    assert [s[1] for s in clicks] == [1, 1, MAX_CLICKS]
    assert stage_profile("memory_attention", geo, max_batch=2, opt_batch=3)["mem_feats"][1][0] == 2
    with pytest.raises(ValueError):
        stage_profile("memory_attention", geo, max_batch=0)
