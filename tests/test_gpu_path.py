"""The GPU runtime path: fixed-shape frames (every pathway a row, one host wait), reduced
precision and CUDA graphs. Fixed shapes and autocast are checked here on the CPU against
the reference path; what needs CUDA is marked and skips with the reason."""

import numpy as np
import pytest
import torch

from sam2long.runtime.config import TrackerConfig
from sam2long.runtime.metrics import mask_iou
from sam2long.runtime.prompts import ObjectPrompt
from sam2long.runtime.tracker import SAM2LongTracker
from tests.conftest import MICRO_CFG, synthetic_mask
from tests.test_onnx_backend import engines, onnx_backend  # noqa: F401 (module fixtures)
from tests.test_tracker import HW, _frames

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _prompts():
    return [ObjectPrompt(1, 0, mask=synthetic_mask(0)),
            ObjectPrompt(4, 3, mask=synthetic_mask(3) & (np.arange(160) < 60)[None, :])]


def _run(backend, n=14, trace=None, **kwargs):
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), **kwargs)
    return list(tracker.track(_frames(n), _prompts(), n, HW, trace=trace))


def _assert_same_tracks(a, b, atol, min_iou=None, mean_iou=None):
    """Same frames and objects; logits within `atol`, or every mask's IoU >= `min_iou`
    and their mean >= `mean_iou`."""
    assert [r.frame_idx for r in a] == [r.frame_idx for r in b]
    ious = []
    for x, y in zip(a, b):
        assert x.obj_ids == y.obj_ids
        if min_iou is None:
            np.testing.assert_allclose(x.low_res_logits, y.low_res_logits, atol=atol)
        else:
            ious += [mask_iou(lx > 0, ly > 0) for lx, ly in zip(x.low_res_logits, y.low_res_logits)]
    if ious:
        assert min(ious) >= min_iou, ious
        assert np.mean(ious) >= (mean_iou or min_iou), ious


def test_fixed_shape_frames_equal_the_dedupe_path(lively_backend):
    """Every pathway as its own row (the GPU layout) gives the reference path's masks and
    the same selection trace, including an object that starts later."""
    trace_ref, trace_fixed = {}, {}
    ref = _run(lively_backend, trace=trace_ref)
    fixed = _run(lively_backend, trace=trace_fixed, fixed_shapes=True)
    _assert_same_tracks(ref, fixed, atol=1e-3)
    for obj in trace_ref:
        for r, f in zip(trace_ref[obj], trace_fixed[obj]):
            np.testing.assert_allclose(r.acc, f.acc, atol=1e-4)
            np.testing.assert_allclose(r.ious, f.ious, atol=1e-4)
    # The tree really branched (otherwise the two layouts could not differ).
    assert any(np.unique(np.round(row.acc, 4)).size > 1 for row in trace_ref[1])


def test_fixed_shapes_keep_every_memory_slot_when_not_compacting(micro_checkpoints):
    """The CUDA torch backend keeps all memory slots (masked) instead of dropping the empty
    ones; on the CPU the same choice must give the same masks."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend

    backend = TorchBackend(load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model, "cpu")
    ref = _run(backend, n=10)
    backend.compact_memory = False
    _assert_same_tracks(ref, _run(backend, n=10, fixed_shapes=True), atol=1e-3)


# Random weights give low-res logits around +-0.1, so bf16 rounding flips pixels that a real
# model would put far from the threshold: the gate here is mean IoU 0.99 and worst 0.97 on
# the 64 x 64 low-res masks. The per-frame 0.99 gate runs on the parity fixture on a GPU.
BF16_MIN_IOU, BF16_MEAN_IOU = 0.97, 0.99


def test_bf16_autocast_stays_close_to_fp32(micro_checkpoints):
    """--precision bf16 on the torch backend (autocast, as the original on CUDA) stays
    close to fp32, and is not bit-identical (autocast is really on)."""
    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_backend import TorchBackend

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    fp32 = _run(TorchBackend(model, "cpu"), n=8)
    bf16_backend = TorchBackend(model, "cpu", precision="bf16")
    bf16 = _run(bf16_backend, n=8)
    _assert_same_tracks(fp32, bf16, atol=None, min_iou=BF16_MIN_IOU, mean_iou=BF16_MEAN_IOU)
    assert any(not np.array_equal(a.low_res_logits, b.low_res_logits) for a, b in zip(fp32, bf16))
    with pytest.raises(ValueError, match="precision"):
        TorchBackend(model, "cpu", precision="int8")


def test_cuda_graphs_are_refused_without_cuda(lively_backend):
    with pytest.raises(ValueError, match="CUDA"):
        SAM2LongTracker(lively_backend, TrackerConfig(), cuda_graphs=True)


# -- CUDA ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cuda_model(micro_checkpoints):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none on this machine)")
    from sam2long.engine.model_loading import load_sam2_model

    return load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model


@needs_cuda
@pytest.mark.parametrize("precision,min_iou,mean_iou", [("fp32", 0.999, 0.999), ("bf16", BF16_MIN_IOU, BF16_MEAN_IOU)])
def test_cuda_torch_eager_and_graphs_match_cpu_fp32(cuda_model, lively_backend, precision, min_iou, mean_iou):
    from sam2long.engine.torch_backend import TorchBackend

    ref = _run(lively_backend)
    backend = TorchBackend(cuda_model, "cuda", precision=precision)
    eager = _run(backend)
    _assert_same_tracks(ref, eager, atol=None, min_iou=min_iou, mean_iou=mean_iou)
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), cuda_graphs=True)
    for _ in range(2):  # a second video through the same tracker: its own banks, recaptured
        graphed = list(tracker.track(_frames(14), _prompts(), 14, HW))
        assert tracker._image_graphs.captured == 1
        _assert_same_tracks(eager, graphed, atol=None, min_iou=0.999)


def test_graph_backends_run_the_fixed_shape_layout(onnx_backend, lively_backend):  # noqa: F811
    """The layout the TensorRT backend gets on a GPU (every pathway a row, every memory
    slot kept) through the shared graph-backend code, here on ONNX Runtime's CPU provider:
    the same masks as the torch reference path."""
    _assert_same_tracks(_run(lively_backend, n=10), _run(onnx_backend, n=10, fixed_shapes=True),
                        atol=None, min_iou=0.999)
