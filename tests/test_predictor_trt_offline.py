"""Plain SAM 2 mode through the TensorRT backend's code on the CPU (the offline fake of
tests/test_trt_offline.py, whose contexts run the graphs with ONNX Runtime): fixed memory
and pointer slots, bindings per shape; the same session as on torch and ONNX Runtime gives
sam2's masks."""

from __future__ import annotations

import pytest

from sam2long.runtime.interactive import PostProcessing
from tests.conftest import MICRO_CFG
from tests.test_predictor_sam2_parity import compare_sessions, sam2_reference, video_dir  # noqa: F401
from tests.test_trt_offline import _backend, _build, cpu_stream, fake_trt, graphs, onnx_graphs  # noqa: F401

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")


def test_plain_mode_through_the_tensorrt_backend_equals_sam2(graphs, fake_trt, cpu_stream,  # noqa: F811
                                                            micro_checkpoints, video_dir):  # noqa: F811
    from sam2long.predictor import SAM2LongVideoPredictor, _model_rules

    backend = _backend(fake_trt, graphs, _build(graphs))
    predictor = SAM2LongVideoPredictor(backend, _model_rules(MICRO_CFG), mode="sam2", post=PostProcessing())
    checked = compare_sessions(sam2_reference(micro_checkpoints["lively"], False), predictor, video_dir,
                               several_prompt_frames=False)
    assert checked > 15
