"""ONNX export and the ONNX Runtime backend (CPU) against the PyTorch backend.

Per stage on fresh random inputs and real frames (max abs error <= 1e-4 of the output's
scale, batches of several sizes, partly empty memory equal to SAM 2's variable-length
call), end to end through the tools, and the manifest checks.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.engine.manifest import EngineMismatchError
from sam2long.runtime.metrics import mask_iou
from sam2long.runtime.frames import preprocess_frame
from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")


@pytest.fixture(scope="module")
def engines(tmp_path_factory, micro_checkpoints):
    from sam2long.export.build_engines import build

    return build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("eng")))


@pytest.fixture(scope="module")
def onnx_backend(engines, micro_checkpoints):
    from sam2long.engine.factory import build_backend

    return build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(engines))


def _close(got, want, what):
    scale = float(want.abs().max()) or 1.0
    err = float((got - want).abs().max())
    assert err <= 1e-4 * scale, f"{what}: max abs error {err:.3g} vs scale {scale:.3g}"


def test_image_encoder_random_and_real_frames(onnx_backend, lively_backend):
    import av

    images = [torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    # Real frames that ship with the repository (not ../shared, absent on a plain clone): the
    # sample clip's JPEGs and frames of its H.264 video, with their compression noise.
    frames = [Image.open(ROOT / f"samples/shapes/JPEGImages/shapes/{t:05d}.jpg") for t in (0, 5, 17)]
    with av.open(str(ROOT / "samples/shapes.mp4")) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in (3, 11):
                frames.append(frame.to_image())
    assert len(frames) == 5
    # and two frames of a real video (the parity data's bedroom clip)
    from tests.conftest import PARITY_DATA

    frames += [Image.open(path) for path in sorted((PARITY_DATA / "frames16").glob("*.jpg"))[:2]]
    images += [preprocess_frame(frame, 256) for frame in frames]
    for image in images:
        got, want = onnx_backend.encode_image(image), lively_backend.encode_image(image)
        for name in ("feat", "hr0", "hr1"):
            _close(getattr(got, name), getattr(want, name), name)


@pytest.mark.parametrize("batch", [1, 3, 6])
def test_memory_attention_partly_empty_equals_variable_length(onnx_backend, lively_backend,
                                                              micro_checkpoints, batch):
    from sam2long.engine.model_loading import load_sam2_model
    from tests.test_memory_attention import _random_memory, _sam2_variable_length

    geo = onnx_backend.geometry
    gen = torch.Generator().manual_seed(100 + batch)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    mem = _random_memory(geo, batch, gen, weighted=True)
    got = onnx_backend.attend_memory(feat, mem)
    _close(got, lively_backend.attend_memory(feat, mem), "vs torch backend")
    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    with torch.inference_mode():
        for row in range(batch):
            _close(got[row], _sam2_variable_length(model, feat, mem, row)[0], f"row {row} vs SAM 2")


@pytest.mark.parametrize("batch", [1, 4])
def test_decoder_and_memory_encoder(onnx_backend, lively_backend, batch):
    geo = onnx_backend.geometry
    gen = torch.Generator().manual_seed(200 + batch)
    image = lively_backend.encode_image(torch.randn(1, 3, 256, 256, generator=gen))
    pix = torch.randn(batch, geo.hidden_dim, *geo.feat_hw, generator=gen)
    clicks = (torch.rand(batch, 3, 2, generator=gen) * 256, torch.tensor([[1, 0, 2]] * batch, dtype=torch.int32))
    mask = (torch.rand(batch, 1, 256, 256, generator=gen) > 0.5).float()
    for kwargs in ({}, {"point_coords": clicks[0], "point_labels": clicks[1]}, {"mask_input": mask}):
        got, want = onnx_backend.decode_masks(pix, image, **kwargs), lively_backend.decode_masks(pix, image, **kwargs)
        for name in vars(want):
            _close(getattr(got, name), getattr(want, name), f"{name} {list(kwargs)}")
    masks = torch.randn(batch, 1, geo.low_res, geo.low_res, generator=gen) * 5
    score = torch.randn(batch, generator=gen)
    _close(onnx_backend.encode_memory(image.feat, masks, score),
           lively_backend.encode_memory(image.feat, masks, score), "memory encoder")


def test_end_to_end_longer_video_matches_torch(onnx_backend, lively_backend):
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.postprocess import to_video_resolution
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.tracker import SAM2LongTracker

    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)),
               ObjectPrompt(2, 9, points=np.array([[30.0, 20.0]]))]

    def run(backend):
        frames = (preprocess_frame(Image.fromarray(synthetic_frame(t)), 256) for t in range(40))
        tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0))
        return [to_video_resolution(r.low_res_logits, (120, 160)) > 0
                for r in tracker.track(frames, prompts, 40, (120, 160))]

    for t, (a, b) in enumerate(zip(run(onnx_backend), run(lively_backend))):
        for obj in range(a.shape[0]):
            iou = mask_iou(a[obj], b[obj])
            assert iou >= 0.999, (t, obj, iou)


def test_onnx_backend_reproduces_torch_on_parity_fixture(parity_dir, tmp_path):
    from sam2long.export.build_engines import build
    from tests.test_parity_fixture import make_sav_dataset
    from sam2long.tools import vos_inference

    cfg, ckpt = str(parity_dir / "micro_sam2.1.yaml"), str(parity_dir / "micro_lively_seed0.pt")
    build(cfg, ckpt, str(tmp_path / "eng"))
    make_sav_dataset(tmp_path, parity_dir / "frames", np.load(parity_dir / "prompts.npz"))
    outputs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        assert vos_inference.main([
            "--backend", backend, "--engine_dir", str(tmp_path / "eng"), "--device", "cpu",
            "--per_obj_png_file", "--sam2_cfg", cfg, "--sam2_checkpoint", ckpt,
            "--base_video_dir", str(tmp_path / "JPEGImages"),
            "--input_mask_dir", str(tmp_path / "Annotations"), "--output_mask_dir", str(out)]) == 0
        outputs[backend] = sorted((out / "bedroom" / "001").glob("*.png"))
    assert len(outputs["onnx"]) == 8
    for a, b in zip(outputs["torch"], outputs["onnx"]):
        assert mask_iou(np.array(Image.open(a)) > 0, np.array(Image.open(b)) > 0) >= 0.999, a.name


def test_manifest_checks_and_rebuilds(engines, micro_checkpoints, tmp_path, capsys):
    from sam2long.engine.factory import build_backend
    from sam2long.export.build_engines import main as build_main

    with pytest.raises(EngineMismatchError, match="(?s)another model.*checkpoint_sha256.*build_engines.py"):
        build_backend("onnx", MICRO_CFG, str(micro_checkpoints["plain"]), "cpu", str(engines))
    with pytest.raises(EngineMismatchError, match="no engines in"):
        build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(tmp_path))
    with pytest.raises(ValueError, match="needs --engine_dir"):
        build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", None)
    args = ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["lively"]),
            "--out_dir", str(engines)]
    stamp = (engines / "mask_decoder.onnx").stat().st_mtime_ns
    assert build_main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert (engines / "mask_decoder.onnx").stat().st_mtime_ns == stamp
    assert build_main(args + ["--force"]) == 0
    assert (engines / "mask_decoder.onnx").stat().st_mtime_ns != stamp
    assert build_main(["--sam2_checkpoint", str(tmp_path / "none.pt"), "--out_dir", str(tmp_path)]) == 2
    (engines / "memory_encoder.onnx").rename(tmp_path / "moved.onnx")
    try:
        with pytest.raises(EngineMismatchError, match="lacks the graphs of memory_encoder"):
            build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(engines))
    finally:
        (tmp_path / "moved.onnx").rename(engines / "memory_encoder.onnx")


def test_tensorrt_ep_profiles_cover_every_dynamic_input(onnx_backend):
    import onnxruntime as ort

    from sam2long.engine.manifest import STAGES
    from sam2long.engine.profiles import ort_trt_profile_options

    for stage in STAGES:
        profiles = ort_trt_profile_options(stage, onnx_backend.geometry, max_batch=12)
        session = onnx_backend.sessions[stage]
        dynamic = {i.name for i in session.get_inputs() if any(not isinstance(d, int) for d in i.shape)}
        if not dynamic:
            assert profiles == {}, stage
            continue
        for kind in ("min", "opt", "max"):
            named = {item.split(":")[0] for item in profiles[f"trt_profile_{kind}_shapes"].split(",")}
            assert named == dynamic, (stage, kind)
        assert ":12x" in profiles["trt_profile_max_shapes"] and ":3x" in profiles["trt_profile_opt_shapes"], stage
    assert "CPUExecutionProvider" in ort.get_available_providers()


def test_large_graphs_keep_weights_in_a_side_file(tmp_path, micro_checkpoints, monkeypatch):
    import onnx

    import sam2long.export.build_engines as build_engines

    monkeypatch.setattr(build_engines, "EXTERNAL_DATA_BYTES", 1)  # treat every graph as large
    out = build_engines.build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path / "eng"))
    assert (out / "mask_decoder.onnx.data").is_file()
    onnx.checker.check_model(str(out / "mask_decoder.onnx"))
    from sam2long.engine.factory import build_backend

    backend = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(out))
    assert backend.encode_image(torch.zeros(1, 3, 256, 256)).feat.shape[0] == 1


def test_onnx_runtime_runs_fused_attention_over_the_used_slots(engines, onnx_backend, lively_backend,
                                                               monkeypatch):
    """ONNX Runtime's memory attention is its fused MultiHeadAttention (the masks ride in an
    extra key channel: no mask input, no score matrix in the graph) over dynamic slots: the
    backend leaves out slots empty in every row and splits rows to bound the scores'
    memory, with the same numbers; TensorRT builds from the standard-op graph."""
    import onnx

    import sam2long.engine.onnx_backend as onnx_module
    from sam2long.engine.manifest import Manifest
    from tests.test_memory_attention import _random_memory

    manifest = Manifest.load(engines)
    fused = onnx.load(str(engines / manifest.files["memory_attention"]))
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("MultiHeadAttention") == 2 * len(lively_backend.memory_attention.attention.layers)
    assert "Softmax" not in ops
    shape = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in fused.graph.input}
    assert shape["mem_feats"][:2] == ["B", "M"] and shape["ptrs"][:2] == ["B", "K"]
    standard = onnx.load(str(engines / manifest.trt_source("memory_attention")))
    assert "MultiHeadAttention" not in {n.op_type for n in standard.graph.node}

    geo = onnx_backend.geometry
    gen = torch.Generator().manual_seed(7)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    mem = _random_memory(geo, 5, gen, weighted=True)
    mem.mem_valid[:, -1] = False  # a slot no row uses: left out
    want = lively_backend.attend_memory(feat, mem)
    calls = []
    real_run = onnx_backend._run

    def counting(stage, feeds, batch):
        calls.append((stage, tuple(feeds["mem_feats"].shape) if stage == "memory_attention" else None))
        return real_run(stage, feeds, batch)

    monkeypatch.setattr(onnx_backend, "_run", counting)
    monkeypatch.setattr(onnx_module, "ATTENTION_SCORE_BYTES", 1)  # one row per call
    _close(onnx_backend.attend_memory(feat, mem), want, "one row per call")
    # Each row with the frame slots it holds (rows differ here), none it lacks.
    assert sorted(c[1][:2] for c in calls) == sorted((1, int(n)) for n in mem.mem_valid.sum(1))


def test_onnx_runtime_attends_rows_apart_when_their_frame_slots_differ(onnx_backend, lively_backend,
                                                                        monkeypatch):
    """Pathways holding different numbers of good frames go in separate calls, each without
    the slots its rows lack (a masked slot costs the fused kernel as much as a real one)."""
    from tests.test_memory_attention import _pathway_memory

    geo = onnx_backend.geometry
    gen = torch.Generator().manual_seed(13)
    mem = _pathway_memory(geo, gen)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    with torch.inference_mode():
        want = lively_backend.memory_attention(feat, *vars(mem).values())
    calls = []
    real_run = onnx_backend._run

    def counting(stage, feeds, batch):
        calls.append(feeds["mem_valid"].clone())
        return real_run(stage, feeds, batch)

    monkeypatch.setattr(onnx_backend, "_run", counting)
    _close(onnx_backend.attend_memory(feat, mem), want, "rows apart")
    assert sorted(c.shape for c in calls) == sorted([torch.Size([2, 4]), torch.Size([1, 2]), torch.Size([1, 3])])
    assert all(bool(c.all()) for c in calls)


def test_fused_cross_attention_reads_the_narrow_memory(engines, onnx_backend, lively_backend):
    """The graphs' cross-attention attends to the memory's own channels (mem_dim) and applies
    the value projection afterwards (a quarter of the value products at SAM 2's 64 against
    256); self-attention keeps its projected values. Same numbers as torch's order."""
    import onnx

    from sam2long.engine.manifest import GRAPH_FORMAT, Manifest

    manifest = Manifest.load(engines)
    assert manifest.graph_format == GRAPH_FORMAT
    model = onnx.shape_inference.infer_shapes(onnx.load(str(engines / manifest.files["memory_attention"])),
                                              data_prop=True)
    widths = {v.name: v.type.tensor_type.shape.dim[-1].dim_value
              for v in model.graph.value_info if v.type.tensor_type.shape.dim}
    geo = onnx_backend.geometry
    value_widths = sorted(widths[n.input[2]] for n in model.graph.node if n.op_type == "MultiHeadAttention")
    layers = len(lively_backend.memory_attention.attention.layers)
    assert value_widths == [geo.mem_dim] * layers + [geo.hidden_dim] * layers



def test_cpu_session_options_hold_memory_down():
    """CPU sessions share one arena, plan no memory pattern (a second run's one big block
    beside the first run's chunks doubled the arena: tiny 1975 against 1362 MiB peak) and do
    not spin between calls (torch's ops run on the same cores next)."""
    import onnxruntime as ort

    from sam2long.engine.onnx_backend import session_options

    for stage in ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder"):
        options = session_options(ort, torch.device("cpu"), stage)
        assert options.enable_mem_pattern is False
        assert options.get_session_config_entry("session.use_env_allocators") == "1"
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
