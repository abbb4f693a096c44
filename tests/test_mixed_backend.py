"""A mixed backend (engine/mixed_backend.py): each stage from the library auto measured faster.

Every stage call goes to the backend its plan names, the tracked masks are the torch
reference's (as onnx's are: IoU >= 0.999), each side holds only its own stages, and
`--backend auto` builds one from timings that split the stages, on a first run and from
the cache."""

import numpy as np
import pytest
from PIL import Image

from sam2long.engine import auto_backend
from sam2long.engine.auto_backend import ChoiceCache, choose_cpu_backend
from sam2long.engine.mixed_backend import MixedBackend
from sam2long.engine.stages import STAGE_NAMES
from sam2long.runtime.frames import preprocess_frame
from sam2long.runtime.metrics import mask_iou
from tests.conftest import MICRO_CFG, synthetic_frame, synthetic_mask

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")

METHODS = {"image": "encode_image", "attention": "attend_memory", "decoder": "decode_masks",
           "memory": "encode_memory"}
PLANS = [
    {"image": "torch", "attention": "onnx", "decoder": "torch", "memory": "onnx"},  # tiny's, measured
    # with the first, every pair of stages runs apart in one of the two: a stage sent to
    # another stage's backend shows
    {"image": "onnx", "attention": "torch", "decoder": "torch", "memory": "onnx"},
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory, micro_checkpoints):
    from sam2long.export.build_engines import build

    return build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("eng")))


def _mixed(plan, engines, micro_checkpoints):
    from sam2long.engine.factory import build_backend

    ckpt = str(micro_checkpoints["lively"])
    torch_backend = build_backend("torch", MICRO_CFG, ckpt, "cpu")
    onnx = build_backend("onnx", MICRO_CFG, ckpt, "cpu", str(engines),
                         stages=tuple(STAGE_NAMES[s] for s in plan if plan[s] == "onnx"))
    return auto_backend.build_planned(plan, torch_backend, onnx)


def _spy(mixed):
    """{stage: [backend names that ran it]}, recorded on the inner backends."""
    calls = {stage: [] for stage in METHODS}
    for stage, method in METHODS.items():
        inner = mixed.plan[stage]
        original = getattr(inner, method)

        def called(*args, _stage=stage, _original=original, _name=inner.name, **kwargs):
            calls[_stage].append(_name)
            return _original(*args, **kwargs)
        setattr(inner, method, called)
    return calls


def _track(backend, num_frames=14):
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.postprocess import to_video_resolution
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.tracker import SAM2LongTracker

    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)), ObjectPrompt(2, 5, points=np.array([[30.0, 20.0]]))]
    frames = (preprocess_frame(Image.fromarray(synthetic_frame(t)), 256) for t in range(num_frames))
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0))
    return [to_video_resolution(r.low_res_logits, (120, 160)) > 0
            for r in tracker.track(frames, prompts, num_frames, (120, 160))]


@pytest.mark.parametrize("plan", PLANS, ids=["image-torch", "image-onnx"])
def test_each_stage_runs_where_planned_and_the_masks_are_torchs(plan, engines, micro_checkpoints,
                                                                lively_backend):
    mixed = _mixed(plan, engines, micro_checkpoints)
    assert isinstance(mixed, MixedBackend) and mixed.name == "mixed"
    assert mixed.describe() == f"mixed ({', '.join(f'{s} {plan[s]}' for s in STAGE_NAMES)})"
    calls = _spy(mixed)
    got = _track(mixed)
    for stage, names in calls.items():
        assert names and set(names) == {plan[stage]}, (stage, names)
    for t, (a, b) in enumerate(zip(got, _track(lively_backend))):
        for obj in range(a.shape[0]):
            assert mask_iou(a[obj], b[obj]) >= 0.999, (t, obj)


def test_each_side_holds_only_its_stages(engines, micro_checkpoints):
    plan = PLANS[0]
    mixed = _mixed(plan, engines, micro_checkpoints)
    torch_side, onnx_side = mixed.plan["image"], mixed.plan["attention"]
    assert sorted(onnx_side.sessions) == ["memory_attention", "memory_encoder"]
    assert torch_side.memory_attention is None and torch_side.memory_encoder is None
    assert torch_side.image_encoder is not None and torch_side.mask_decoder is not None
    # the ONNX Runtime side refuses a stage it did not open, by name
    with pytest.raises(RuntimeError, match="image_encoder.*opened only"):
        onnx_side._run_session("image_encoder", {}, 1)
    # sam2's post-processing switch follows the memory stage: absent when onnx runs it
    assert mixed.memory_encoder is None
    memory_in_torch = {"image": "onnx", "attention": "onnx", "decoder": "onnx", "memory": "torch"}
    assert _mixed(memory_in_torch, engines, micro_checkpoints).memory_encoder is not None


def test_stages_of_different_models_are_refused(engines, micro_checkpoints, lively_backend):
    from sam2long.engine.factory import build_backend

    onnx = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(engines))
    other = type("Other", (), {"name": "other", "geometry": None, "device": lively_backend.device})()
    with pytest.raises(ValueError, match="is not"):
        MixedBackend({"image": lively_backend, "attention": onnx, "decoder": other, "memory": onnx})
    with pytest.raises(ValueError, match="a backend for each stage"):
        MixedBackend({"image": lively_backend})


def test_auto_builds_the_split_first_run_and_from_the_cache(engines, micro_checkpoints, tmp_path):
    """Timings where torch wins the image encoder and the decoder, onnx the attention and the
    memory encoder: auto builds a mixed backend when it measures, and again from the cache,
    then opening only the graphs it runs."""
    def fake(backend):
        if backend.name == "torch":
            return {"image": 0.10, "attention": 0.40, "decoder": 0.02, "memory": 0.04}
        return {"image": 0.15, "attention": 0.20, "decoder": 0.03, "memory": 0.02}

    cache = ChoiceCache(tmp_path / "c.json")
    lively = str(micro_checkpoints["lively"])
    for when in ("measured now", "kept in"):
        choice = choose_cpu_backend(MICRO_CFG, lively, "cpu", str(engines), cache=cache, probe=fake,
                                    say=lambda line: None)
        assert choice.name == "mixed" and when in choice.reason, choice.reason
        assert choice.reason.startswith("mixed (image torch, attention onnx, decoder torch, memory onnx): ")
        assert "): 340 ms" in choice.reason  # 100 + 200 + 20 + 20: each stage's faster time
        assert sorted(choice.backend.plan["attention"].sessions) == ["memory_attention", "memory_encoder"]
    # sam2's post-processing (binarised prompt masks) needs torch's memory encoder: kept there
    kept = choose_cpu_backend(MICRO_CFG, lively, "cpu", str(engines), cache=cache, probe=fake,
                              torch_stages=("memory",))
    assert kept.backend.plan["memory"].name == "torch" and kept.backend.memory_encoder is not None
    assert sorted(kept.backend.plan["attention"].sessions) == ["memory_attention"]


def test_the_predictor_takes_auto_and_keeps_postprocessing(engines, micro_checkpoints, tmp_path, monkeypatch):
    """build_sam2long_video_predictor(backend="auto"): mode sam2's default post-processing
    keeps the memory encoder in torch, whatever the timings say."""
    from sam2long import build_sam2long_video_predictor

    def fake(backend):
        if backend.name == "torch":
            return {"image": 0.10, "attention": 0.40, "decoder": 0.02, "memory": 0.04}
        return {"image": 0.15, "attention": 0.20, "decoder": 0.03, "memory": 0.02}

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(auto_backend, "probe_stage_seconds", fake)
    lively = str(micro_checkpoints["lively"])
    predictor = build_sam2long_video_predictor(MICRO_CFG, lively, "cpu", backend="auto", mode="sam2",
                                               engine_dir=str(engines))
    assert predictor.backend.name == "mixed"
    assert predictor.backend.plan["memory"].name == "torch"
    assert predictor.backend.plan["attention"].name == "onnx"
    plain = build_sam2long_video_predictor(MICRO_CFG, lively, "cpu", backend="auto", mode="sam2",
                                           engine_dir=str(engines), apply_postprocessing=False)
    assert plain.backend.plan["memory"].name == "onnx"


def test_the_demo_keeps_the_memory_encoder_in_torch_under_auto(monkeypatch, lively_backend):
    """The demo's mode SAM 2 applies sam2's post-processing (torch's memory encoder binarises
    clicked masks), so under --backend auto it asks for that stage in torch."""
    from sam2long.tools import cli, gradio_app

    seen = {}

    def record(backend, cfg, ckpt, device, engine_dir, precision, build_graphs=True, torch_stages=()):
        seen.update(backend=backend, torch_stages=torch_stages)
        return lively_backend
    monkeypatch.setattr(cli, "build_chosen_backend", record)
    gradio_app.create_demo(gradio_app.build_parser().parse_args(["--random_weights", "--device", "cpu"]))
    assert seen == {"backend": "auto", "torch_stages": ("memory",)}
