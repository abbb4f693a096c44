"""The TensorRT code paths on the CPU, against a fake `tensorrt` module per TensorRT version.

TensorRT and CUDA are not on the machines these tests usually run on, so a fake module is
put in `sys.modules`, generated from the API table extracted from TensorRT's own binding
sources (tests/fake_tensorrt.py): in each version only that version's names exist, with
the real enum values. The build and load paths run against every version the README claims
(10.1 or newer, 10.x and 11.x); the fake's execution contexts run the graphs with ONNX
Runtime, so the TensorRT backend's feeds, bindings and outputs are checked against the
ONNX backend. Checked here: the engine build (folder key, manifest, strongly typed flag,
profiles, shared timing cache, reuse and --force, fp16 cast graphs), TensorRT's errors in
full, the CLI's early exits, the manifest checks (damaged files included), the engine
loading, one context per CUDA graph scope, refused addresses, the working memory's size
and the version gate. What needs real TensorRT and a GPU (engines against the torch
backend) is at the end and skips here with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sam2long.engine.graph_backend import load_geometry
from sam2long.engine.manifest import (STAGES, EngineMismatchError, Manifest, TrtManifest, check_trt_manifest,
                             trt_engine_dir, trt_engine_key)
from sam2long.engine.profiles import stage_profile
from sam2long.engine.stages import FeedError
from tests.conftest import MICRO_CFG
from tests.fake_tensorrt import API, SUPPORTED, SCRATCH_BASE, SCRATCH_PER_ROW, FrozenContextError, make_fake_trt

pytest.importorskip("onnx", reason="onnx is installed by tools/setup_env.sh")
pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")

VERSION = "10.13"  # the version of the tests that do not depend on it
GPU, CC = "NVIDIA H100 80GB HBM3", "9.0"


def _install(monkeypatch, version: str):
    trt = make_fake_trt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("sam2long.engine.trt_backend.gpu_identity", lambda device=None: (GPU, CC))
    monkeypatch.setattr("sam2long.export.trt_build.gpu_identity", lambda device=None: (GPU, CC))
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake as `tensorrt` (TensorRT 10.13), on a machine that reports an H100."""
    return _install(monkeypatch, VERSION)


@pytest.fixture(params=SUPPORTED)
def any_trt(request, monkeypatch):
    """The fake of each supported TensorRT version in turn."""
    return _install(monkeypatch, request.param)


@pytest.fixture(scope="module")
def onnx_graphs(tmp_path_factory, micro_checkpoints) -> Path:
    from sam2long.export.build_engines import build

    return build(MICRO_CFG, str(micro_checkpoints["lively"]), str(tmp_path_factory.mktemp("onnx")))


@pytest.fixture
def graphs(onnx_graphs, tmp_path) -> Path:
    """This test's own engine folder: links to the module's ONNX graphs, no trt/ yet."""
    out = tmp_path / "eng"
    out.mkdir()
    for f in onnx_graphs.iterdir():
        if f.is_file():
            os.symlink(f, out / f.name)
    return out


def _build(graphs: Path, precision="fp32", opt_batch=2, force=False) -> Path:
    from sam2long.export.trt_build import build_trt_engines

    return build_trt_engines(graphs, Manifest.load(graphs), load_geometry(graphs), precision, opt_batch, force)


def _key(trt, precision="fp32"):
    return trt_engine_key(GPU, CC, trt.__version__, precision)


# -- building ------------------------------------------------------------------------------


def test_build_writes_engines_manifest_profiles_and_shares_the_timing_cache(graphs, any_trt):
    """Four engines and a manifest (GPU, capability, TensorRT version, precision, the ONNX
    model's hashes, every engine's size and hash) under trt/<key>/; strongly typed networks
    (the flag's real bit in each version: 1 << 1 on 10.x, 1 << 0 on 11.x); each profile is
    stage_profile and covers exactly the graph's dynamic inputs, opt batch = opt_batch; the
    timing cache one build saves is the one the next build starts from."""
    trt = any_trt
    folder = _build(graphs, "fp32", opt_batch=2)
    assert folder == trt_engine_dir(graphs, _key(trt))
    assert sorted(p.name for p in folder.glob("*.engine")) == sorted(f"{s}.engine" for s in STAGES)
    onnx_manifest, manifest = Manifest.load(graphs), TrtManifest.load(folder)
    assert (manifest.gpu_name, manifest.compute_capability, manifest.tensorrt_version, manifest.precision) \
        == (GPU, CC, trt.__version__, "fp32")
    assert (manifest.config_sha256, manifest.checkpoint_sha256, manifest.max_batch, manifest.opt_batch) \
        == (onnx_manifest.config_sha256, onnx_manifest.checkpoint_sha256, onnx_manifest.max_batch, 2)
    assert sorted(manifest.file_records) == sorted(manifest.files.values())

    geo, builds = load_geometry(graphs), trt.builds
    strongly_typed = API[next(v for v in API if API[v]["tensorrt_version"] == trt.__version__)][
        "enums"]["NetworkDefinitionCreationFlag"]["STRONGLY_TYPED"]
    assert len(builds) == 4
    sources = [graphs / Manifest.load(graphs).trt_source(s) for s in STAGES]
    assert [b["source"] for b in builds] == sources and sources[1].name == "memory_attention.trt.onnx"  # fp32
    for stage, b in zip(STAGES, builds):
        assert b["flags"] == 1 << strongly_typed, stage
        assert b["pools"][trt.MemoryPoolType.WORKSPACE] > 0 and b["ignore_mismatch"] is False
        assert b["tf32"] is False, stage  # fp32 engines really compute in fp32
        assert (folder / f"{stage}.engine").read_bytes() == b["engine"], stage
        graph_inputs = {t["name"]: t["shape"] for t in b["io"] if t["mode"] == "INPUT"}
        dynamic = {name for name, shape in graph_inputs.items() if -1 in shape}
        want = stage_profile(stage, geo, onnx_manifest.max_batch, 2)
        if not dynamic:
            assert b["profiles"] == [] and want == {}, stage
            continue
        assert b["profiles"] == [want] and set(want) == dynamic, stage
        for name, (lo, opt, hi) in want.items():
            assert (lo[0], opt[0], hi[0]) == (1, 2, onnx_manifest.max_batch), (stage, name)
            for i, dim in enumerate(graph_inputs[name]):  # the graph's fixed dims are kept
                assert dim == -1 or lo[i] == opt[i] == hi[i] == dim, (stage, name, i)

    assert builds[0]["cache_in"] == b""
    for before, after in zip(builds, builds[1:]):
        assert after["cache_in"] == before["cache_out"]
    assert (folder / "timing.cache").read_bytes() == builds[-1]["cache_out"]


def test_rerun_reuses_force_rebuilds_and_keeps_the_timing_cache(graphs, fake_trt, capsys):
    """A rerun with the same inputs builds nothing; force=True and another opt_batch
    rebuild all four, starting from the timing cache saved before; a damaged engine is
    rebuilt, not reused."""
    folder = _build(graphs)
    stamp = (folder / "mask_decoder.engine").stat().st_mtime_ns
    assert _build(graphs) == folder and len(fake_trt.builds) == 4
    assert "up to date" in capsys.readouterr().out
    assert (folder / "mask_decoder.engine").stat().st_mtime_ns == stamp
    saved = (folder / "timing.cache").read_bytes()
    _build(graphs, force=True)
    assert len(fake_trt.builds) == 8 and fake_trt.builds[4]["cache_in"] == saved
    _build(graphs, opt_batch=3)
    assert len(fake_trt.builds) == 12 and TrtManifest.load(folder).opt_batch == 3
    engine = folder / "memory_encoder.engine"
    engine.write_bytes(engine.read_bytes()[:-5])  # truncated
    _build(graphs, opt_batch=3)
    assert len(fake_trt.builds) == 16 and "memory_encoder.engine is damaged" in capsys.readouterr().out


def test_fp16_builds_from_cast_graphs(graphs, fake_trt):
    """fp16 parses <stage>.fp16.onnx written in the engine folder (heavy ops in fp16, the
    graph's I/O still fp32), in its own folder beside the fp32 engines."""
    import onnx

    folder = _build(graphs, "fp16")
    assert folder.name.endswith("_fp16") and TrtManifest.load(folder).precision == "fp16"
    assert [b["source"] for b in fake_trt.builds] == [folder / f"{s}.fp16.onnx" for s in STAGES]
    for b in fake_trt.builds:
        assert b["source"].is_file()
        assert {t["dtype"] for t in b["io"]} <= {"FLOAT", "INT32", "INT64", "BOOL"}, b["source"].name
    model = onnx.load(str(folder / "mask_decoder.fp16.onnx"))
    assert any(n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16 for n in model.graph.node)
    assert _build(graphs, "fp32") != folder and len(fake_trt.builds) == 8


def test_failed_builds_show_tensorrt_errors_and_leave_no_manifest(graphs, fake_trt):
    """Every parser error is in the TrtBuildError; a build returning None is an error too;
    after either, no trt_manifest.json is left and the next run builds again."""
    from sam2long.export.trt_build import TrtBuildError

    folder = _build(graphs)
    fake_trt.parse_errors = ["Unsupported operator GridSample3D", "Invalid weights for Conv_17"]
    with pytest.raises(TrtBuildError) as caught:
        _build(graphs, force=True)
    assert "Unsupported operator GridSample3D" in str(caught.value)
    assert "Invalid weights for Conv_17" in str(caught.value)
    assert "image_encoder.onnx" in str(caught.value)
    assert not (folder / "trt_manifest.json").exists()

    fake_trt.parse_errors, fake_trt.fail_build = [], True
    with pytest.raises(TrtBuildError, match="failed to build an engine from .*image_encoder.onnx"):
        _build(graphs)  # no manifest: not reused, so it builds (and fails)
    assert not (folder / "trt_manifest.json").exists()
    fake_trt.fail_build = False
    built = len(fake_trt.builds)
    _build(graphs)
    assert len(fake_trt.builds) == built + 4 and (folder / "trt_manifest.json").is_file()


# -- the command line ----------------------------------------------------------------------


def _cli(ckpt, out, *extra):
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(ckpt), "--out_dir", str(out), *extra]


def test_cli_stops_before_exporting_without_tensorrt_or_gpu(micro_checkpoints, tmp_path, monkeypatch, capsys):
    """--targets trt without TensorRT, with TensorRT 10.0, or without a GPU exits 2 with a
    clear message and exports nothing; --precision fp16 without --targets trt exits 2."""
    from sam2long.export.build_engines import main

    ckpt, out = micro_checkpoints["lively"], tmp_path / "out"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert main(_cli(ckpt, out, "--targets", "onnx", "trt")) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "pip install tensorrt" in err
    assert not list(out.glob("*.onnx"))  # nothing exported

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.0"))
    assert main(_cli(ckpt, out, "--targets", "trt")) == 2
    err = capsys.readouterr().err
    assert "TensorRT 10.0.1.6 is too old: 10.1 or newer" in err and "set_device_memory" in err

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt(VERSION))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(_cli(ckpt, out, "--targets", "trt")) == 2
    assert "TensorRT needs a CUDA GPU" in capsys.readouterr().err
    assert not list(out.glob("*.onnx"))  # nothing exported

    assert main(_cli(ckpt, out, "--precision", "fp16")) == 2
    assert "--targets trt" in capsys.readouterr().err


def test_cli_builds_engines_and_reports_build_errors(graphs, fake_trt, micro_checkpoints, capsys):
    """main --targets trt reuses the graphs, builds fp16 engines with --opt_batch, and a
    TensorRT parser error is exit code 2 with the error on stderr."""
    from sam2long.export.build_engines import main

    manifest = Manifest.load(graphs)
    args = _cli(micro_checkpoints["lively"], graphs, "--targets", "onnx", "trt", "--precision", "fp16",
                "--max_batch", str(manifest.max_batch))
    assert main(args + ["--opt_batch", "4"]) == 0
    assert "up to date" in capsys.readouterr().out  # the ONNX graphs
    folder = trt_engine_dir(graphs, _key(fake_trt, "fp16"))
    assert TrtManifest.load(folder).opt_batch == 4 and len(fake_trt.builds) == 4
    fake_trt.parse_errors = ["node Foo: unsupported"]
    fp16 = args.index("fp16")
    assert main(args[:fp16] + ["bf16"] + args[fp16 + 1:]) == 2  # (not --force: that would export again)
    assert "node Foo: unsupported" in capsys.readouterr().err


# -- the manifest check --------------------------------------------------------------------


def _check(engine_dir, onnx_manifest, gpu=GPU, cc=CC, version=None, precision="fp32"):
    version = version or API[VERSION]["tensorrt_version"]
    return check_trt_manifest(engine_dir, onnx_manifest, gpu, cc, version, precision, MICRO_CFG, "ckpt.pt")


def test_check_trt_manifest(graphs, fake_trt):
    """The check finds this GPU's engines; a missing set names GPU and version, lists the
    sets there are and how to rebuild; a manifest for another GPU / version, another
    model, with an engine missing, truncated or pointing outside its folder is refused,
    naming the file and the rebuild command."""
    folder, onnx_manifest = _build(graphs), Manifest.load(graphs)
    assert _check(graphs, onnx_manifest) == (folder, TrtManifest.load(folder))

    with pytest.raises(EngineMismatchError) as caught:
        _check(graphs, onnx_manifest, gpu="NVIDIA A100-SXM4-80GB", cc="8.0", version="10.14.1.48")
    msg = str(caught.value)
    assert "NVIDIA A100-SXM4-80GB" in msg and "sm80" in msg and "TensorRT 10.14.1.48" in msg
    assert folder.name in msg and "--targets trt" in msg and "build_engines.py" in msg

    version = fake_trt.__version__
    # A manifest saying H100 / 10.13 found where the A100 / 10.14 engines belong.
    for gpu, cc, other_version in (("NVIDIA A100-SXM4-80GB", "8.0", version), (GPU, CC, "10.14.1.48")):
        other = trt_engine_dir(graphs, trt_engine_key(gpu, cc, other_version, "fp32"))
        other.mkdir()
        TrtManifest.load(folder).save(other)
        with pytest.raises(EngineMismatchError, match="(?s)were built for .*--targets trt"):
            _check(graphs, onnx_manifest, gpu=gpu, cc=cc, version=other_version)

    with pytest.raises(EngineMismatchError, match="another model than the ONNX graphs"):
        _check(graphs, replace(onnx_manifest, checkpoint_sha256="0" * 64))
    engine = folder / "mask_decoder.engine"
    whole = engine.read_bytes()
    engine.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(EngineMismatchError, match="(?s)mask_decoder.engine is damaged.*--targets trt.*--force"):
        _check(graphs, onnx_manifest)
    engine.write_bytes(whole)
    manifest = TrtManifest.load(folder)
    for outside in ("../memory_encoder.engine", str(folder / "memory_encoder.engine")):
        replace(manifest, files={**manifest.files, "memory_encoder": outside}).save(folder)
        with pytest.raises(EngineMismatchError, match="outside its folder"):
            _check(graphs, onnx_manifest)
    manifest.save(folder)
    (folder / "memory_encoder.engine").unlink()
    with pytest.raises(EngineMismatchError, match="lacks the engines of memory_encoder"):
        _check(graphs, onnx_manifest)


# -- loading and running engines -------------------------------------------------------------


@pytest.fixture
def cpu_stream(monkeypatch):
    """torch.cuda.current_stream on the CPU: a stand-in with a handle (TrtBackend._run)."""
    class Stream:
        cuda_stream = 0

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())


def _backend(trt, graphs, folder):
    """A TrtBackend on the CPU (its __init__ needs a CUDA device; _setup is the rest)."""
    from sam2long.engine.trt_backend import TrtBackend

    backend = TrtBackend.__new__(TrtBackend)
    backend._setup(trt, graphs, folder, TrtManifest.load(folder), torch.device("cpu"))
    return backend


def test_load_reads_engine_io(graphs, any_trt):
    """Built engines load in every supported version: engine dtypes checked against the
    stage spec, the dynamic inputs known; no working memory until shapes are run."""
    folder = _build(graphs)
    backend = _backend(any_trt, graphs, folder)
    assert backend.dynamic["image_encoder"] == set()
    assert backend.dynamic["memory_attention"] == {"mem_feats", "mem_valid", "mem_tpos", "mem_weight", "ptrs",
                                                  "ptr_valid", "ptr_pos", "ptr_weight"}
    assert backend.dynamic["mask_decoder"] == {"pix_feat", "point_coords", "point_labels", "mask_prompt",
                                               "mask_valid"}
    assert backend.scratch is None and backend.contexts == {}


def test_engines_run_like_the_onnx_backend(graphs, any_trt, cpu_stream, onnx_graphs, micro_checkpoints):
    """Every stage through the TensorRT backend's bindings (the fake runs the graph on the
    bound addresses with ONNX Runtime) gives the ONNX backend's outputs, in every supported
    version, with batches of 1 and 3, clicks and a mask prompt."""
    from sam2long.engine.factory import build_backend
    from tests.test_memory_attention import _random_memory

    backend = _backend(any_trt, graphs, _build(graphs))
    ref = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(onnx_graphs))
    geo = backend.geometry
    gen = torch.Generator().manual_seed(5)
    image = torch.randn(1, 3, geo.image_size, geo.image_size, generator=gen)
    feats, want = backend.encode_image(image), ref.encode_image(image)
    for name in ("feat", "hr0", "hr1"):
        torch.testing.assert_close(getattr(feats, name), getattr(want, name))
    for batch in (1, 3):
        mem = _random_memory(geo, batch, gen, weighted=True)
        pix = backend.attend_memory(want.feat, mem)
        torch.testing.assert_close(pix, ref.attend_memory(want.feat, mem))
        coords = torch.rand(batch, 2, 2, generator=gen) * geo.image_size
        labels = torch.tensor([[1, 0]] * batch)
        mask = (torch.rand(batch, 1, geo.image_size, geo.image_size, generator=gen) > 0.5).float()
        for kwargs in ({}, {"point_coords": coords, "point_labels": labels}, {"mask_input": mask}):
            got, exp = backend.decode_masks(pix, want, **kwargs), ref.decode_masks(pix, want, **kwargs)
            for name in vars(exp):
                torch.testing.assert_close(getattr(got, name), getattr(exp, name), msg=f"{name} {list(kwargs)}")
        masks = torch.randn(batch, 1, geo.low_res, geo.low_res, generator=gen)
        score = torch.randn(batch, generator=gen)
        torch.testing.assert_close(backend.encode_memory(want.feat, masks, score),
                                   ref.encode_memory(want.feat, masks, score))
    assert all(kind == "eager" for kind, _ in any_trt.executed)


def test_calls_are_checked_against_the_stage_spec(graphs, fake_trt, cpu_stream):
    """An engine call whose feed has another dtype, shape or name is a FeedError naming the
    stage and tensor: nothing is converted on the way to the engine."""
    backend = _backend(fake_trt, graphs, _build(graphs))
    geo = backend.geometry
    feat = torch.zeros(1, geo.hidden_dim, *geo.feat_hw)
    masks, score = torch.zeros(2, 1, geo.low_res, geo.low_res), torch.zeros(2)
    backend.encode_memory(feat, masks, score)
    with pytest.raises(FeedError, match="stage memory_encoder: input obj_score is torch.float64"):
        backend.encode_memory(feat, masks, score.double())
    with pytest.raises(FeedError, match="stage memory_encoder: input obj_score has shape \\(3,\\)"):
        backend.encode_memory(feat, masks, torch.zeros(3))
    with pytest.raises(FeedError, match="feeds"):
        backend._call("memory_encoder", {"feat": feat, "obj_score": score, "masks": masks})


def test_each_captured_graph_has_its_own_contexts(graphs, fake_trt, cpu_stream, monkeypatch):
    """A call in a graph scope gets a context of that scope, made in the eager warm-up; the
    capture then uses it (and may not make one); after the capture, eager calls of the same
    stage and shapes (a prompt frame of the same batch) and another scope's calls never
    touch it. The fake freezes a context once captured: rebinding it fails the test."""
    backend = _backend(fake_trt, graphs, _build(graphs))
    geo = backend.geometry
    feat = torch.zeros(1, geo.hidden_dim, *geo.feat_hw)
    masks, score = torch.zeros(3, 1, geo.low_res, geo.low_res), torch.zeros(3)
    capturing = {"on": False}
    monkeypatch.setattr("sam2long.engine.trt_backend.capturing", lambda: capturing["on"])
    fake_trt.capturing = lambda: capturing["on"]

    with backend.graph_scope("graph A"):  # the warm-up, eager
        backend.encode_memory(feat, masks, score)
    capturing["on"] = True
    with backend.graph_scope("graph A"):  # the capture: the warm-up's context, no new one
        backend.encode_memory(feat, masks, score)
    with pytest.raises(RuntimeError, match="cannot be made during a CUDA graph capture"):
        with backend.graph_scope("graph B"):  # no warm-up: refused, the cache runs eagerly
            backend.encode_memory(feat, masks, score)
    capturing["on"] = False
    captured = [ctx for kind, ctx in fake_trt.executed if kind == "captured"]
    assert len(captured) == 1 and captured[0]._frozen
    backend.encode_memory(feat, masks, score)  # eager, same shapes: its own context
    with backend.graph_scope("graph B"):
        backend.encode_memory(feat, masks, score)
    eager = [ctx for kind, ctx in fake_trt.executed if kind == "eager"]
    assert captured[0] not in eager[1:] and len(set(map(id, eager[1:]))) == 2

    backend.release_graph_scope("graph A")
    backend.encode_memory(feat, masks[:1], score[:1])  # contexts of released scopes go when safe
    assert all(key[0] != "graph A" for key in backend.contexts)


def test_old_context_keying_rebinds_a_captured_context(graphs, fake_trt, cpu_stream, monkeypatch):
    """The review's defect 2, shown on the fake: with contexts keyed by stage and shapes
    only (no scope), the eager call after a capture rebinds the captured context."""
    backend = _backend(fake_trt, graphs, _build(graphs))
    monkeypatch.setattr(type(backend), "graph_scope", lambda self, scope: __import__("contextlib").nullcontext())
    geo = backend.geometry
    feat = torch.zeros(1, geo.hidden_dim, *geo.feat_hw)
    masks, score = torch.zeros(3, 1, geo.low_res, geo.low_res), torch.zeros(3)
    backend.encode_memory(feat, masks, score)
    fake_trt.capturing = lambda: True
    backend.encode_memory(feat, masks, score)
    fake_trt.capturing = lambda: False
    with pytest.raises(FrozenContextError):
        backend.encode_memory(feat, masks, score)


def test_refused_addresses_are_errors(graphs, fake_trt, cpu_stream, monkeypatch):
    """set_tensor_address returning False (a name the engine lacks, a misaligned pointer)
    is an error naming the stage and tensor, not a run on stale addresses."""
    backend = _backend(fake_trt, graphs, _build(graphs))
    geo = backend.geometry
    ctx_class = type(backend.engines["memory_encoder"].create_execution_context(
        fake_trt.ExecutionContextAllocationStrategy.USER_MANAGED))
    monkeypatch.setattr(ctx_class, "set_tensor_address", lambda self, name, memory: name != "masks")
    with pytest.raises(RuntimeError, match="stage memory_encoder: TensorRT refused the address of masks"):
        backend.encode_memory(torch.zeros(1, geo.hidden_dim, *geo.feat_hw),
                              torch.zeros(2, 1, geo.low_res, geo.low_res), torch.zeros(2))


def test_working_memory_is_sized_for_the_rows_run(graphs, fake_trt, cpu_stream):
    """The shared scratch is sized from the shapes really run (the tracker's objects x
    pathways through reserve_batch), not from the profile's --max_batch; a bigger shape
    later gets a bigger buffer while the contexts made before keep theirs."""
    backend = _backend(fake_trt, graphs, _build(graphs))
    assert backend.max_batch >= 6
    backend.reserve_batch(3)
    from sam2long.engine.profiles import MAX_CLICKS

    assert backend.scratch.numel() == SCRATCH_BASE + SCRATCH_PER_ROW * 3 < SCRATCH_BASE + SCRATCH_PER_ROW * MAX_CLICKS
    first = backend.scratch
    geo = backend.geometry
    feat = torch.zeros(1, geo.hidden_dim, *geo.feat_hw)
    backend.encode_memory(feat, torch.zeros(3, 1, geo.low_res, geo.low_res), torch.zeros(3))
    assert backend.scratch is first
    backend.encode_memory(feat, torch.zeros(6, 1, geo.low_res, geo.low_res), torch.zeros(6))  # a bigger batch
    assert backend.scratch.numel() == SCRATCH_BASE + SCRATCH_PER_ROW * 6
    kept = {id(scratch) for _, scratch in backend.contexts.values()}
    assert kept == {id(first), id(backend.scratch)}


def test_tracker_on_the_trt_backend_matches_onnx(graphs, fake_trt, cpu_stream, onnx_graphs, micro_checkpoints):
    """The GPU layout (every pathway a row) through the TensorRT backend's code gives the
    ONNX backend's masks: reserve_batch, contexts per shape and the bindings of a video."""
    from sam2long.engine.factory import build_backend
    from tests.test_gpu_path import _assert_same_tracks, _run

    backend = _backend(fake_trt, graphs, _build(graphs))
    ref = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(onnx_graphs))
    _assert_same_tracks(_run(ref, n=8, fixed_shapes=True), _run(backend, n=8, fixed_shapes=True), atol=1e-4)
    assert backend.scratch.numel() == SCRATCH_BASE + SCRATCH_PER_ROW * 6  # 2 objects x 3 pathways


def test_load_refuses_unloadable_or_foreign_engines(graphs, fake_trt, tmp_path):
    """An engine the runtime cannot deserialize, one whose I/O names are not the stage's,
    or whose dtypes are not the spec's, is an EngineMismatchError that says to rebuild."""
    folder = _build(graphs)
    backend = _backend(fake_trt, graphs, folder)
    backend.engines = {}
    damaged = tmp_path / "damaged.engine"
    damaged.write_bytes(b"\x00plan for another GPU")
    with pytest.raises(EngineMismatchError, match=f"(?s)could not load .*{fake_trt.__version__}.*--targets trt --force"):
        backend._load_stage("memory_encoder", damaged)
    blob = json.loads((folder / "memory_encoder.engine").read_bytes())
    for t in blob["io"]:
        t["name"] = {"mem_feat": "memory"}.get(t["name"], t["name"])
    renamed = tmp_path / "renamed.engine"
    renamed.write_bytes(json.dumps(blob).encode())
    with pytest.raises(EngineMismatchError, match="(?s)stage memory_encoder.*memory.*rebuild"):
        backend._load_stage("memory_encoder", renamed)
    blob = json.loads((folder / "memory_encoder.engine").read_bytes())
    for t in blob["io"]:
        t["dtype"] = {"obj_score": "HALF"}.get(t["name"], t["dtype"])
    retyped = tmp_path / "retyped.engine"
    retyped.write_bytes(json.dumps(blob).encode())
    with pytest.raises(EngineMismatchError, match="engine tensor obj_score is torch.float16"):
        backend._load_stage("memory_encoder", retyped)
    with pytest.raises(EngineMismatchError, match="stage mask_decoder"):  # an engine of another stage
        backend._load_stage("mask_decoder", folder / "memory_encoder.engine")
    assert backend.engines == {}


def _memory_with_slots(geo, rows, frames, pointers, gen):
    """Random memory (tests/test_memory_attention.py) with `frames` frame slots and
    `pointers` pointer slots: more than the model's M and K with several prompt frames."""
    from tests.test_memory_attention import _random_memory

    mem = _random_memory(replace(geo, num_maskmem=frames, max_obj_ptrs=pointers), rows, gen, weighted=False)
    mem.mem_tpos %= geo.num_maskmem  # temporal positions index the model's table
    return mem


def test_memory_attention_takes_extra_prompt_frames_up_to_the_profile(graphs, fake_trt, cpu_stream, onnx_graphs,
                                                                     micro_checkpoints, lively_backend):
    """The memory attention's profile: frame slots M..M+EXTRA_SLOTS and pointer slots
    K..K+EXTRA_SLOTS, tuned (opt) for M and K, the batch tracker's one shape, and recorded in
    the engines' manifest. Memories of up to that many slots (SAM 2 with several prompt frames
    per object) give the torch backend's numbers on TensorRT (the fake) and ONNX Runtime; one
    slot more is a ProfileError naming the limits before any engine runs. ONNX Runtime on the
    CPU takes any number."""
    from sam2long.engine.factory import build_backend
    from sam2long.engine.graph_backend import ProfileError
    from sam2long.engine.profiles import EXTRA_SLOTS

    folder = _build(graphs)
    backend = _backend(fake_trt, graphs, folder)
    onnx = build_backend("onnx", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", str(onnx_graphs))
    geo = backend.geometry
    M, K = geo.num_maskmem, geo.max_obj_ptrs
    profile = next(b["profiles"][0] for b in fake_trt.builds if b["source"].name == "memory_attention.trt.onnx")
    for name, (lo, opt, hi) in profile.items():
        if name in ("mem_feats", "mem_valid", "mem_tpos", "mem_weight"):
            assert (lo[1], opt[1], hi[1]) == (M, M, M + EXTRA_SLOTS), name
        else:
            assert (lo[1], opt[1], hi[1]) == (K, K, K + EXTRA_SLOTS), name
    assert TrtManifest.load(folder).slot_limits == {"M": M + EXTRA_SLOTS, "K": K + EXTRA_SLOTS}

    gen = torch.Generator().manual_seed(11)
    feat = torch.randn(1, geo.hidden_dim, *geo.feat_hw, generator=gen)
    for frames, pointers in ((M + EXTRA_SLOTS, K + EXTRA_SLOTS), (M + 3, K + 1)):
        mem = _memory_with_slots(geo, 2, frames, pointers, gen)
        want = lively_backend.attend_memory(feat, mem)
        torch.testing.assert_close(backend.attend_memory(feat, mem), want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(onnx.attend_memory(feat, mem), want, atol=1e-4, rtol=1e-4)
    runs = len(fake_trt.executed)
    for frames, pointers in ((M + EXTRA_SLOTS + 1, K), (M, K + EXTRA_SLOTS + 1)):
        mem = _memory_with_slots(geo, 1, frames, pointers, gen)
        with pytest.raises(ProfileError, match=(
                f"a memory of {frames} frames and {pointers} object pointers: the trt engines' memory attention "
                f"takes at most {M + EXTRA_SLOTS} frames and {K + EXTRA_SLOTS} pointers")):
            backend.attend_memory(feat, mem)
        torch.testing.assert_close(onnx.attend_memory(feat, mem), lively_backend.attend_memory(feat, mem),
                                   atol=1e-4, rtol=1e-4)
    assert len(fake_trt.executed) == runs


def test_graphs_and_engines_of_an_older_format_are_refused_or_rebuilt(graphs, fake_trt, micro_checkpoints,
                                                                      capsys):
    """Graphs built before graph format 2 took the model's M frames only (TensorRT's fixed;
    ONNX Runtime's rotated the keys of M frames, so more gave wrong masks, no error): their
    manifests (no graph_format, no slot_limits) are refused with the rebuild command, the
    build does not reuse them, and an engine with fixed slots does not load."""
    from sam2long.engine.manifest import GRAPH_FORMAT, MANIFEST_NAME, TRT_MANIFEST_NAME, check_manifest
    from sam2long.engine.model_loading import resolve_config_path
    from sam2long.engine.onnx_backend import OnnxBackend
    from sam2long.export.build_engines import _reusable

    folder = _build(graphs)
    manifest, trt_manifest = Manifest.load(graphs), TrtManifest.load(folder)
    assert (manifest.graph_format, trt_manifest.graph_format) == (GRAPH_FORMAT, GRAPH_FORMAT)
    old = json.loads((graphs / MANIFEST_NAME).read_text())
    del old["graph_format"]
    (graphs / MANIFEST_NAME).unlink()  # a link to the module's graphs: not written through
    (graphs / MANIFEST_NAME).write_text(json.dumps(old))
    checkpoint = micro_checkpoints["lively"]
    with pytest.raises(EngineMismatchError, match=(
            f"built by an older version of export/build_engines.py \\(graph format 1, this version takes "
            f"{GRAPH_FORMAT}.*rebuild them with: python export/build_engines.py .*--force")):
        check_manifest(graphs, resolve_config_path(MICRO_CFG), checkpoint, "fp32", MICRO_CFG, str(checkpoint))
    assert not _reusable(graphs, manifest, False, "rebuild")
    with pytest.raises(EngineMismatchError, match="graph format 1"):
        OnnxBackend(graphs, Manifest.load(graphs))
    from sam2long.export.trt_build import build_trt_engines

    with pytest.raises(EngineMismatchError, match="graph format 1"):  # no engines from old graphs
        build_trt_engines(graphs, Manifest.load(graphs), load_geometry(graphs), "fp32")
    manifest.save(graphs)

    old = json.loads((folder / TRT_MANIFEST_NAME).read_text())
    del old["graph_format"], old["slot_limits"]
    (folder / TRT_MANIFEST_NAME).write_text(json.dumps(old))
    with pytest.raises(EngineMismatchError, match="(?s)graph format 1.*--targets trt.*--force"):
        _check(graphs, manifest)
    capsys.readouterr()
    assert _build(graphs) == folder and "up to date" not in capsys.readouterr().out  # rebuilt
    assert TrtManifest.load(folder) == trt_manifest

    backend = _backend(fake_trt, graphs, folder)
    blob = json.loads((folder / "memory_attention.engine").read_bytes())
    for t in blob["io"]:
        if t["name"] in ("mem_feats", "ptrs"):
            t["shape"][1] = {"mem_feats": manifest.num_maskmem, "ptrs": manifest.max_obj_ptrs}[t["name"]]
    fixed = graphs / "fixed.engine"
    fixed.write_bytes(json.dumps(blob).encode())
    with pytest.raises(EngineMismatchError, match="fixed memory slots.*--targets trt --force"):
        backend._load_stage("memory_attention", fixed)


def test_backend_needs_tensorrt_10_1_and_cuda(graphs, fake_trt, micro_checkpoints, monkeypatch):
    """TrtBackend on the CPU and --backend trt on the CPU are TensorRTUnavailable; without
    tensorrt the error says `pip install tensorrt`; TensorRT 10.0 is refused, saying why;
    with a supported one the factory picks this GPU's engines (and names the sets there
    are when the precision has none)."""
    import sam2long.engine.trt_backend as trt_backend
    from sam2long.engine.factory import build_backend

    folder = _build(graphs)
    ckpt = str(micro_checkpoints["lively"])
    with pytest.raises(trt_backend.TensorRTUnavailable, match="runs on a CUDA device, not cpu"):
        trt_backend.TrtBackend(graphs, folder, TrtManifest.load(folder), device="cpu")
    with pytest.raises(trt_backend.TensorRTUnavailable, match="CUDA GPU, not on cpu"):
        build_backend("trt", MICRO_CFG, ckpt, "cpu", str(graphs))

    monkeypatch.setattr("sam2long.engine.factory.resolve_device", lambda device: torch.device("cuda"))
    made = []
    monkeypatch.setattr(trt_backend, "TrtBackend", lambda *args: made.append(args) or "backend")
    assert build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs)) == "backend"
    assert made == [(str(graphs), folder, TrtManifest.load(folder), torch.device("cuda"))]
    with pytest.raises(EngineMismatchError, match=f"(?s)fp16 in .*engines there are for: {folder.name}"):
        build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs), precision="fp16")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.0"))
    with pytest.raises(trt_backend.TensorRTUnavailable, match="10.0.1.6 is too old.*set_device_memory"):
        build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(trt_backend.TensorRTUnavailable, match="pip install tensorrt"):
        build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs))


# -- real TensorRT on a GPU ----------------------------------------------------------------

HAVE_TRT_GPU = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.mark.skipif(not HAVE_TRT_GPU, reason="needs TensorRT and a CUDA GPU (neither is on this machine)")
class TestRealEngines:
    """Real fp32 and fp16 engines for the micro model against the torch backend on CUDA
    (fp32: max abs error <= 1e-3 of the output's scale; fp16: <= 2e-2)."""

    @pytest.fixture(scope="class")
    def engine_dir(self, tmp_path_factory, micro_checkpoints):
        from sam2long.export.build_engines import build

        out = tmp_path_factory.mktemp("real_trt")
        for precision in ("fp32", "fp16"):
            build(MICRO_CFG, str(micro_checkpoints["lively"]), str(out), precision, targets=("onnx", "trt"))
        return out

    @staticmethod
    def _close(got, want, tol, what):
        got, want = got.float().cpu(), want.float().cpu()
        assert got.shape == want.shape, what
        scale = float(want.abs().max()) or 1.0
        err = float((got - want).abs().max())
        assert err <= tol * scale, f"{what}: max abs error {err:.3g} vs scale {scale:.3g}"

    @pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 2e-2)])
    def test_stages_match_torch(self, engine_dir, micro_checkpoints, monkeypatch, precision, tol):
        from sam2long.engine.factory import build_backend
        from tests.test_memory_attention import _random_memory

        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # an exact reference
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        ckpt, dev = str(micro_checkpoints["lively"]), torch.device("cuda")
        ref = build_backend("torch", MICRO_CFG, ckpt, "cuda")
        trt = build_backend("trt", MICRO_CFG, ckpt, "cuda", str(engine_dir), precision)
        assert trt.name == "trt" and trt.manifest.precision == precision
        geo = trt.geometry
        gen = torch.Generator().manual_seed(7)
        image = torch.randn(1, 3, geo.image_size, geo.image_size, generator=gen).to(dev)
        got, want = trt.encode_image(image), ref.encode_image(image)
        for name in ("feat", "hr0", "hr1"):
            self._close(getattr(got, name), getattr(want, name), tol, f"image_encoder {name}")
        for batch in (1, 3, 5):
            mem = _random_memory(geo, batch, gen, weighted=True)
            mem = type(mem)(**{k: v.to(dev) for k, v in vars(mem).items()})
            self._close(trt.attend_memory(want.feat, mem), ref.attend_memory(want.feat, mem), tol,
                        f"memory_attention batch {batch}")
            pix = torch.randn(batch, geo.hidden_dim, *geo.feat_hw, generator=gen).to(dev)
            coords = (torch.rand(batch, 3, 2, generator=gen) * geo.image_size).to(dev)
            labels = torch.tensor([[1, 0, 2]] * batch, dtype=torch.int32, device=dev)
            mask = (torch.rand(batch, 1, geo.image_size, geo.image_size, generator=gen) > 0.5).float().to(dev)
            for kwargs in ({}, {"point_coords": coords, "point_labels": labels}, {"mask_input": mask}):
                d_got, d_want = trt.decode_masks(pix, want, **kwargs), ref.decode_masks(pix, want, **kwargs)
                for name in vars(d_want):
                    self._close(getattr(d_got, name), getattr(d_want, name), tol,
                                f"mask_decoder {name} {list(kwargs)} batch {batch}")
            masks = (torch.randn(batch, 1, geo.low_res, geo.low_res, generator=gen) * 5).to(dev)
            score = torch.randn(batch, generator=gen).to(dev)
            self._close(trt.encode_memory(want.feat, masks, score), ref.encode_memory(want.feat, masks, score),
                        tol, f"memory_encoder batch {batch}")
        torch.cuda.synchronize()

    def test_tracker_with_cuda_graphs_matches_eager(self, engine_dir, micro_checkpoints):
        """The TensorRT backend under the tracker's CUDA graphs (a context per captured
        graph) gives the eager run's masks, for two videos through one tracker."""
        from sam2long.engine.factory import build_backend
        from sam2long.runtime.config import TrackerConfig
        from sam2long.runtime.tracker import SAM2LongTracker
        from tests.test_gpu_path import _assert_same_tracks, _prompts
        from tests.test_tracker import HW, _frames

        trt = build_backend("trt", MICRO_CFG, str(micro_checkpoints["lively"]), "cuda", str(engine_dir), "fp32")
        eager = list(SAM2LongTracker(trt, TrackerConfig(3, 0.1, 2.0)).track(_frames(14), _prompts(), 14, HW))
        tracker = SAM2LongTracker(trt, TrackerConfig(3, 0.1, 2.0), cuda_graphs=True)
        for _ in range(2):
            graphed = list(tracker.track(_frames(14), _prompts(), 14, HW))
            assert tracker._image_graphs.captured == 1
            _assert_same_tracks(eager, graphed, atol=None, min_iou=0.999)
