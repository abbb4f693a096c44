"""The GPU path, round three (issue 25): each defect a user with a GPU would hit, checked on
the CPU with stand-ins (a faked device count, the fake `tensorrt`, recorded streams)."""

from __future__ import annotations

import pytest
import torch

from sam2long.engine.errors import ConfigError


# -- 1. one GPU per process under torchrun and srun --------------------------------------------
@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


TORCHRUN = {"RANK": "6", "WORLD_SIZE": "8", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1"}
SRUN = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "3",
        "SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "4"}


def test_each_rank_takes_its_own_gpu(four_gpus, capsys):
    from sam2long.engine.factory import resolve_device

    assert resolve_device("auto", TORCHRUN) == torch.device("cuda", 2)
    assert resolve_device("cuda", TORCHRUN) == torch.device("cuda", 2)
    assert resolve_device("cuda:2", TORCHRUN) == torch.device("cuda", 2)
    assert "cuda:2 (torchrun LOCAL_RANK=2 of 4" in capsys.readouterr().out
    assert resolve_device("auto", SRUN) == torch.device("cuda", 3)
    assert "srun SLURM_LOCALID=3" in capsys.readouterr().out
    # A batch script inherits SLURM_LOCALID without being a step's task: no rank, cuda as before.
    assert resolve_device("auto", {k: v for k, v in SRUN.items() if k != "SLURM_STEP_ID"}).index is None
    assert resolve_device("cpu", TORCHRUN) == torch.device("cpu")


def test_a_clashing_device_or_too_many_ranks_are_refused(four_gpus, monkeypatch):
    from sam2long.engine.factory import resolve_device

    with pytest.raises(ConfigError, match="--device cuda:0 clashes with the launcher.*cuda:2"):
        resolve_device("cuda:0", TORCHRUN)
    with pytest.raises(ConfigError, match="LOCAL_RANK=5, but this node has 4 visible CUDA devices"):
        resolve_device("auto", dict(TORCHRUN, LOCAL_RANK="5", LOCAL_WORLD_SIZE="8"))
    # srun --gpus-per-task: each task sees only its own GPU, as cuda:0.
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto", SRUN) == torch.device("cuda", 0)


# -- the fake TensorRT's engines (tests/test_trt_offline.py) -----------------------------------
from dataclasses import replace  # noqa: E402

from tests.conftest import MICRO_CFG  # noqa: E402
from tests.fake_tensorrt import API, SCRATCH_BASE, SCRATCH_PER_ROW  # noqa: E402
from tests.test_trt_offline import _backend, _build, any_trt, cpu_stream, fake_trt, graphs, onnx_graphs  # noqa: E402,F401


def _build_rows(graphs, max_batch):
    """Engines whose profiles take at most `max_batch` rows."""
    from sam2long.engine.graph_backend import load_geometry
    from sam2long.engine.manifest import Manifest
    from sam2long.export.trt_build import build_trt_engines

    return build_trt_engines(graphs, replace(Manifest.load(graphs), max_batch=max_batch), load_geometry(graphs),
                             "fp32", 2, False)


def _click_prompts(clicks: int):
    """Five objects: four masks and one with a box and clicks-2 points (a box is two clicks)."""
    import numpy as np

    from sam2long.runtime.prompts import ObjectPrompt
    from tests.conftest import synthetic_mask

    points = np.stack([np.linspace(30, 120, clicks - 2), np.linspace(20, 90, clicks - 2)], 1)
    return [ObjectPrompt(i + 1, 0, mask=synthetic_mask(i)) for i in range(4)] + [
        ObjectPrompt(9, 1, points=points, labels=np.ones(clicks - 2, dtype=np.int64),
                     box=np.array([10.0, 10.0, 140.0, 100.0]))]


# -- 4. any number of objects on any engine; prompts beyond the profile refused first ---------
def test_rows_beyond_the_profile_run_as_engine_sized_calls(graphs, fake_trt, cpu_stream, onnx_graphs,
                                                          micro_checkpoints):
    """2 objects x 3 pathways (6 rows) on engines built for 4 rows gives the ONNX backend's
    masks; every shape the runtime asked for lies inside its profile (the fake refuses any
    other, as TensorRT does)."""
    from sam2long.engine.factory import build_backend
    from tests.test_gpu_path import _assert_same_tracks, _run

    backend = _backend(fake_trt, graphs, _build_rows(graphs, 4))
    assert backend.max_batch == 4
    ref = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(onnx_graphs))
    _assert_same_tracks(_run(ref, n=6, fixed_shapes=True), _run(backend, n=6, fixed_shapes=True), atol=1e-4)
    assert fake_trt.shapes_set and all(ok for _, _, ok in fake_trt.shapes_set)
    assert max(shape[0] for _, shape, _ in fake_trt.shapes_set) == 4


def test_every_shape_the_runtime_asks_for_is_inside_its_profile(graphs, fake_trt, cpu_stream):
    """Five objects x 3 pathways (15 rows) on engines of 4 rows, one object prompted with a
    box and 14 clicks (16, the profile's most): every call the tracker makes, on both row
    layouts, is inside the profile; 17 clicks are refused before any engine runs."""
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.prompts import PromptError
    from sam2long.runtime.tracker import SAM2LongTracker
    from tests.test_tracker import HW, _frames

    backend = _backend(fake_trt, graphs, _build_rows(graphs, 4))
    for fixed in (True, False):
        tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0), fixed_shapes=fixed)
        results = list(tracker.track(_frames(4), _click_prompts(16), 4, HW))
        assert [r.obj_ids for r in results][-1] == [1, 2, 3, 4, 9]
    shapes = fake_trt.shapes_set
    assert all(ok for _, _, ok in shapes), [s for s in shapes if not s[2]]
    assert {shape[1] for name, shape, _ in shapes if name == "point_coords"} >= {1, 16}
    fake_trt.executed.clear()
    tracker = SAM2LongTracker(backend, TrackerConfig(3, 0.1, 2.0))
    with pytest.raises(PromptError, match="object 9: 17 clicks .*at most 16"):
        list(tracker.track(_frames(4), _click_prompts(17), 4, HW))
    assert fake_trt.executed == []

    class Video:  # the pipeline refuses them before decoding a frame
        info = type("Info", (), {"height": HW[0], "width": HW[1], "num_frames": 4})()
        frame_names = [f"{i:05d}" for i in range(4)]

        def frames(self):
            raise AssertionError("a frame was decoded")

    from sam2long.runtime.pipeline import track_frames

    with pytest.raises(PromptError, match="17 clicks"):
        next(track_frames(tracker, Video(), _click_prompts(17)))


# -- 5. working memory for the rows run, where TensorRT can ---------------------------------
def test_working_memory_follows_the_rows_where_the_version_can(graphs, any_trt, cpu_stream):
    """Engines are built with RUNTIME_ACTIVATION_RESIZE_10_10 where the version has it, and
    the shared working memory is then sized for 3 rows, not the profile's maximum; a
    version without it (10.1) keeps the profile maximum, as TensorRT may."""
    backend = _backend(any_trt, graphs, _build(graphs))
    version = next(v for v in API if API[v]["tensorrt_version"] == any_trt.__version__)
    has = "RUNTIME_ACTIVATION_RESIZE_10_10" in API[version]["enums"]["PreviewFeature"]
    assert all(("RUNTIME_ACTIVATION_RESIZE_10_10" in b["preview"]) == has for b in any_trt.builds)
    backend.reserve_batch(3)
    rows = 3 if has else backend.max_batch
    assert backend.scratch.numel() == SCRATCH_BASE + SCRATCH_PER_ROW * rows


# -- 2. ONNX Runtime's fused attention on GPUs, and memory flat in the rows -------------------
def _attention_head_sizes(graph_path):
    """(q, k, v) head sizes of every MultiHeadAttention node, from a run of the graph with
    its inputs exposed as outputs (dynamic dims resolve only at run time)."""
    import onnx
    import onnxruntime as ort

    from sam2long.engine.graph_backend import load_geometry
    from tests.test_memory_attention import _random_memory

    model = onnx.load(str(graph_path))
    nodes = [n for n in model.graph.node if n.op_type == "MultiHeadAttention"]
    names = sorted({i for n in nodes for i in n.input[:3]})
    for name in names:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    geo = load_geometry(graph_path.parent)
    memory = _random_memory(geo, 2, torch.Generator().manual_seed(0), weighted=True)
    feeds = {"feat": torch.randn(1, geo.hidden_dim, *geo.feat_hw), **vars(memory)}
    shapes = dict(zip(names, (o.shape for o in session.run(names, {k: v.numpy() for k, v in feeds.items()}))))
    heads = lambda n: next(a.i for a in n.attribute if a.name == "num_heads")  # noqa: E731
    return [tuple(shapes[i][-1] // heads(n) for i in n.input[:3]) for n in nodes]


def test_every_fused_attention_has_head_sizes_divisible_by_8(onnx_graphs):
    """The cross-attention's bias channel made its query/key head size C+1 (257 at every
    SAM 2.1 size): ONNX Runtime's CUDA memory-efficient attention then refuses it and fp32
    runs unfused. Every MultiHeadAttention node of the graph ONNX Runtime runs now has head
    sizes divisible by 8, the cross-attentions included."""
    sizes = _attention_head_sizes(onnx_graphs / "memory_attention.onnx")
    assert len(sizes) >= 2 and any(q != v for q, _, v in sizes), sizes  # the cross-attention is there
    assert all(q == k and q % 8 == 0 and v % 8 == 0 for q, k, v in sizes), sizes


SAM21_1024 = dict(image_size=1024, feat_hw=(64, 64), hidden_dim=256, mem_dim=64, num_maskmem=7,
                  max_obj_ptrs=16, hr0_channels=32, hr1_channels=64)


@pytest.mark.parametrize("rows", [1, 3, 12, 30])
def test_memory_attention_calls_stay_under_the_bound_on_every_device(rows):
    """The ONNX backend's memory-attention calls on a GPU (meta stands in) hold at most
    ATTENTION_SCORE_BYTES of scores each, at 1024 px (the attention's shapes are the same for
    every SAM 2.1 size: 64 x 64 tokens, C 256, Cm 64, 7 frames, 16 pointers) and any row
    count: 30 rows in one call were 27 GiB of unfused scores."""
    from sam2long.engine import onnx_backend as onnx_module
    from sam2long.engine.onnx_backend import OnnxBackend
    from sam2long.engine.stages import STAGE_SPECS, MemoryInputs, ModelGeometry, TORCH_DTYPES, resolve_dims

    geo = ModelGeometry(**SAM21_1024)
    backend = OnnxBackend.__new__(OnnxBackend)
    backend.device, backend.geometry, backend.max_batch, backend.profiled = torch.device("meta"), geo, 12, False
    backend.slot_dynamic_stages = frozenset({"memory_attention"})
    calls = []

    def run(stage, feeds, batch):
        calls.append(batch)
        return [torch.zeros(batch, geo.hidden_dim, *geo.feat_hw, device="meta")]

    backend._run = run
    spec = STAGE_SPECS["memory_attention"].inputs
    memory = MemoryInputs(*(torch.zeros(resolve_dims(t, geo, rows), dtype=TORCH_DTYPES[t.dtype], device="meta")
                            for t in spec[1:]))
    out = backend.attend_memory(torch.zeros(1, geo.hidden_dim, *geo.feat_hw, device="meta"), memory)
    assert out.shape[0] == rows and sum(calls) == rows
    assert max(calls) * geo.attention_score_bytes() <= onnx_module.ATTENTION_SCORE_BYTES, calls


# -- 6. a tracker's TensorRT contexts end with it ---------------------------------------------
def test_contexts_and_their_memory_end_with_their_tracker(graphs, fake_trt, monkeypatch):
    """The demo makes a tracker (and its CUDA graph caches) per Track and drops it. Each
    cache's graph scopes held an execution context and its working memory until the backend
    ended: one more per Track. Now a dropped cache releases its scopes and the backend frees
    their contexts at once: the count stays flat over many Tracks on one backend."""
    from sam2long.runtime.cuda_graphs import GraphCache
    from tests.test_cuda_graphs import _Recorder

    rec = _Recorder(monkeypatch)  # torch.cuda's graph calls recorded on the CPU
    rec.stream.cuda_stream = 0
    monkeypatch.setattr("sam2long.engine.trt_backend.capturing", lambda: False)
    backend = _backend(fake_trt, graphs, _build(graphs))
    geo = backend.geometry
    inputs = dict(feat=torch.zeros(1, geo.hidden_dim, *geo.feat_hw),
                  masks=torch.zeros(3, 1, geo.low_res, geo.low_res), obj_score=torch.zeros(3))
    alive = []
    for _ in range(5):  # one Track each: warm-up, capture, replay, then the tracker is dropped
        cache = GraphCache(True, backend)
        for _ in range(3):
            cache.run("step", lambda **kw: backend.encode_memory(**kw), inputs)
        alive.append(len(backend.contexts))
        del cache
    assert alive == [1] * 5 and backend.contexts == {}
    backend.encode_memory(**inputs)  # an eager call after them: its own context, one scratch
    assert len(backend.contexts) == 1


# -- 7. TensorRT work on the backend's device, whatever the current one ---------------------
def test_contexts_are_made_and_run_on_the_backends_device(graphs, fake_trt, cpu_stream, monkeypatch):
    """A demo preview runs outside the tracker's stream, with cuda:0 current: on a backend
    for cuda:1, contexts must still be made, sized and run with cuda:1 current (TensorRT
    uses the current device). torch.cuda.device is a recorder here, CUDA tensors CPU ones."""
    from sam2long.engine.stages import STAGE_SPECS, TORCH_DTYPES, resolve_dims

    backend = _backend(fake_trt, graphs, _build(graphs))
    current = {"index": 0}

    class device:  # torch.cuda.device stand-in
        def __init__(self, dev):
            self.index = torch.device(dev).index

        def __enter__(self):
            self.outer, current["index"] = current["index"], self.index

        def __exit__(self, *exc):
            current["index"] = self.outer

    seen = []
    engine_cls = type(backend.engines["memory_encoder"])
    create = engine_cls.create_execution_context
    monkeypatch.setattr(engine_cls, "create_execution_context",
                        lambda self, strategy=None: seen.append(("create", current["index"])) or create(self, strategy))
    ctx_cls = type(create(backend.engines["memory_encoder"]))
    execute = ctx_cls.execute_async_v3
    monkeypatch.setattr(ctx_cls, "execute_async_v3",
                        lambda self, stream: seen.append(("run", current["index"])) or execute(self, stream))
    real_empty = torch.empty

    def empty(*args, device=None, **kwargs):
        cuda = device is not None and torch.device(device).type == "cuda"
        return real_empty(*args, device="cpu" if cuda else device, **kwargs)

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch, "empty", empty)
    backend.device = torch.device("cuda", 1)
    backend.reserve_batch(3)
    geo = backend.geometry
    feeds = {t.name: real_empty(resolve_dims(t, geo, 3), dtype=TORCH_DTYPES[t.dtype]).zero_()
             for t in STAGE_SPECS["memory_encoder"].inputs}
    backend._run("memory_encoder", feeds, 3)
    assert {kind for kind, _ in seen} == {"create", "run"}
    assert all(index == 1 for _, index in seen), seen


# -- 8. ONNX Runtime's inputs are ready before its stream starts ---------------------------
def test_onnx_gpu_inputs_are_copied_before_the_stream_wait(monkeypatch, lively_backend):
    """A strided feed is made dense by a copy queued on the caller's stream: it must be
    queued before the wait for that stream, or ONNX Runtime's own stream may read it before
    it is written. Syncs and copies are recorded in order (meta stands in for CUDA)."""
    from sam2long.engine.onnx_backend import OnnxBackend
    from sam2long.engine.stages import STAGE_SPECS, resolve_dims

    events = []

    class Stream:
        def synchronize(self):
            events.append("sync")

    class Binding:
        def bind_input(self, name, *args):
            pass

        bind_output = bind_input

    class Session:
        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, binding):
            events.append("run")

    real = torch.Tensor.contiguous

    def contiguous(self, *args, **kwargs):
        if not self.is_contiguous():
            events.append("copy")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    backend = OnnxBackend.__new__(OnnxBackend)
    backend.device, backend.geometry = torch.device("meta"), lively_backend.geometry
    backend.sessions, backend.profiled, backend.max_batch = {"memory_encoder": Session()}, False, 4
    feeds = {t.name: torch.zeros(resolve_dims(t, backend.geometry, 2), dtype=getattr(torch, t.dtype), device="meta")
             for t in STAGE_SPECS["memory_encoder"].inputs}
    feeds["masks"] = feeds["masks"].transpose(2, 3).contiguous().transpose(2, 3)  # strided, same shape
    assert not feeds["masks"].is_contiguous()
    events.clear()
    backend._run("memory_encoder", feeds, 2)
    assert events == ["copy", "sync", "run"], events


# -- 3. ONNX Runtime's TensorRT provider: whole graphs, every input profiled, errors mapped ----
def _tensorrt_subgraph_inputs(model, ops: dict) -> set[str]:
    """ONNX Runtime's partition, simulated with onnx-tensorrt's operator table: nodes the
    parser takes go to TensorRT, the others (ONNX Runtime's contrib ops) stay outside; a
    TensorRT subgraph's inputs are the graph inputs and the outputs of outside nodes that
    its nodes read."""
    def tensorrt(node):
        return node.domain in ("", "ai.onnx") and ops.get(node.op_type, {}).get("supported", False)

    outside = {i.name for i in model.graph.input}
    for node in model.graph.node:
        if not tensorrt(node):
            outside |= set(node.output)
    return {name for node in model.graph.node if tensorrt(node) for name in node.input if name in outside}


def test_the_tensorrt_provider_gets_graphs_it_takes_whole(onnx_graphs):
    """Every stage graph the TensorRT provider is given is TensorRT's whole: its TensorRT
    subgraph's inputs are the graph's inputs, and every dynamic one has a profile. The fused
    attention graph (what it was given) splits, with unprofiled subgraph inputs."""
    import onnx

    from sam2long.engine.graph_backend import load_geometry
    from sam2long.engine.manifest import STAGES, Manifest
    from sam2long.engine.onnx_backend import graph_file
    from sam2long.engine.profiles import stage_profile
    from tests.trt_graph_check import load_ops_table

    manifest, geo = Manifest.load(onnx_graphs), load_geometry(onnx_graphs)
    tables = load_ops_table()
    for label, table in tables.items():
        for stage in STAGES:
            model = onnx.load(str(onnx_graphs / graph_file(manifest, stage, tensorrt=True)), load_external_data=False)
            graph_inputs = {i.name: [d.dim_value if d.HasField("dim_value") else None
                                     for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
            inputs = _tensorrt_subgraph_inputs(model, table["ops"])
            assert inputs <= set(graph_inputs), (label, stage, sorted(inputs - set(graph_inputs)))
            dynamic = {name for name in inputs if None in graph_inputs[name]}
            assert dynamic <= set(stage_profile(stage, geo, manifest.max_batch)), (label, stage)
        fused = onnx.load(str(onnx_graphs / manifest.files["memory_attention"]), load_external_data=False)
        assert _tensorrt_subgraph_inputs(fused, table["ops"]) - {i.name for i in fused.graph.input}, label


def test_onnx_runtime_failures_are_one_line_errors(lively_backend):
    """An ONNX Runtime exception from a stage run (its TensorRT provider asking for a shape,
    a CUDA failure) is our error type with ONNX Runtime's first line, not a traceback."""
    from sam2long.engine.errors import SAM2LongError
    from sam2long.engine.onnx_backend import OnnxBackend
    from sam2long.engine.stages import STAGE_SPECS, resolve_dims

    Fail = type("Fail", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})

    class Session:
        def run(self, names, feeds):
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : TensorRT EP failed to create engine from subgraph\nmore")

    backend = OnnxBackend.__new__(OnnxBackend)
    backend.device, backend.geometry = torch.device("cpu"), lively_backend.geometry
    backend.sessions, backend.profiled, backend.max_batch = {"memory_encoder": Session()}, False, 4
    feeds = {t.name: torch.zeros(resolve_dims(t, backend.geometry, 2), dtype=getattr(torch, t.dtype))
             for t in STAGE_SPECS["memory_encoder"].inputs}
    with pytest.raises(SAM2LongError, match="ONNX Runtime failed to run stage memory_encoder .*TensorRT EP failed") as e:
        backend._run("memory_encoder", feeds, 2)
    assert "\n" not in str(e.value)


# -- 9. checks that missed ------------------------------------------------------------------
def test_the_host_wait_checker_sees_kernels_that_wait_inside():
    """masked_fill with a 0-dim tensor value reads it back inside the kernel, and
    index_put_(accumulate=True) waits to sort its indices: both fail the checker; their
    sync-free forms pass."""
    from tests.capture_checks import HostWait, HostWaitChecker

    x = torch.arange(6.0)
    mask, value, index = x > 2, torch.tensor(-1.0), torch.tensor([0, 2, 2])
    waits = [lambda: x.masked_fill(mask, value), lambda: x.clone().masked_fill_(mask, value),
             lambda: x.clone().index_put_((index,), torch.ones(3), accumulate=True),
             lambda: torch.index_put(x, (index,), torch.ones(3), True)]
    for wait in waits:
        with pytest.raises(HostWait), HostWaitChecker():
            wait()
    with HostWaitChecker():
        x.masked_fill(mask, -1.0)
        torch.where(mask, value, x)
        x.clone().index_put_((index,), torch.ones(3))
        x.clone().scatter_add_(0, index, torch.ones(3))


def test_unfolded_graphs_are_caught_directly(micro_checkpoints, tmp_path, monkeypatch):
    """Without constant folding the exported graphs keep Constant nodes, shapes of static
    tensors and shape arithmetic on them: `unfolded` names each (it was caught only by the
    base+ encoder's node count); the folded export has none of them."""
    import onnx

    from sam2long.engine.model_loading import load_sam2_model
    from sam2long.engine.torch_stages import model_geometry
    from sam2long.export import onnx_fold
    from sam2long.export.build_engines import export_stage
    from sam2long.export.wrappers import example_inputs, stage_modules
    from tests.trt_graph_check import unfolded

    model = load_sam2_model(MICRO_CFG, micro_checkpoints["lively"]).model
    geo = model_geometry(model)
    module, inputs = stage_modules(model)["mask_decoder"], example_inputs(geo)["mask_decoder"]
    export_stage("mask_decoder", module, inputs, tmp_path / "folded.onnx", geo)
    assert unfolded(onnx.load(str(tmp_path / "folded.onnx"))) == []
    monkeypatch.setattr(onnx_fold, "fold_constants", lambda graph, max_rounds=4: graph)
    export_stage("mask_decoder", module, inputs, tmp_path / "unfolded.onnx", geo)
    problems = unfolded(onnx.load(str(tmp_path / "unfolded.onnx")))
    kinds = {p.split(": ", 1)[1].split(" ")[0] + " " + p.split(": ", 1)[1].split(" ")[1] for p in problems}
    assert {"a Constant", "the shape", "shape arithmetic"} <= kinds, kinds


def test_every_exported_graph_is_folded(onnx_graphs):
    """No Constant node, no shape of a static tensor, no shape arithmetic on constants and
    no resize of a constant in any graph the build writes."""
    import onnx

    from tests.trt_graph_check import unfolded

    for path in sorted(onnx_graphs.glob("*.onnx")):
        assert unfolded(onnx.load(str(path), load_external_data=False)) == [], path.name
