"""The TensorRT code paths on the CPU, against a small fake `tensorrt` module.

TensorRT and CUDA are not on the machines these tests usually run on, so a fake module
(the 10.x / 11.x Python API, just enough of it) is put in `sys.modules`. It reads the ONNX
graph it is asked to parse, records what the builder was asked (network flags, profile
shapes, timing-cache bytes in and out), and "serializes" an engine as JSON listing the
graph's I/O so the runtime side can deserialize it again. Checked here: the engine build
(folder key, manifest, strongly typed flag, profiles, shared timing cache, reuse and
--force, fp16 cast graphs), TensorRT's errors in full, the CLI's early exits, the
manifest checks, and the engine loading in TrtBackend. What needs real TensorRT and a
GPU (engines against the torch backend) is at the end and skips here with the reason.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import os
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.graph_backend import load_geometry
from engine.manifest import (STAGES, EngineMismatchError, Manifest, TrtManifest, check_trt_manifest,
                             trt_engine_dir, trt_engine_key)
from engine.profiles import stage_profile
from tests.conftest import MICRO_CFG

pytest.importorskip("onnx", reason="onnx is installed by tools/setup_env.sh")

VERSION = "10.13.0.35"
GPU, CC = "NVIDIA H100 80GB HBM3", "9.0"
# ONNX TensorProto element types -> TensorRT DataType member names.
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL", 3: "INT8", 2: "UINT8", 16: "BF16"}


def make_fake_trt(version: str = VERSION, strongly_typed_flag: bool = True) -> types.ModuleType:
    """A stand-in for `import tensorrt`. `trt.builds` gets one dict per
    build_serialized_network call; set `trt.parse_errors` / `trt.fail_build` to fail."""
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.builds, trt.parse_errors, trt.fail_build = [], [], False
    flags = {"EXPLICIT_BATCH": 0, **({"STRONGLY_TYPED": 1} if strongly_typed_flag else {})}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"])
    trt.BuilderFlag = enum.Enum("BuilderFlag", ["TF32", "REFIT", "SPARSE_WEIGHTS"])
    trt.TensorIOMode = enum.Enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.DataType = enum.Enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "BF16", "INT64"])
    trt.ExecutionContextAllocationStrategy = enum.Enum(
        "ExecutionContextAllocationStrategy", ["STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED"])

    class Logger:
        WARNING, ERROR = "WARNING", "ERROR"

        def __init__(self, min_severity=None):
            self.min_severity = min_severity

    class Network:
        def __init__(self, flags):
            self.flags, self.source, self.io = flags, None, []

    class ParserError:
        def __init__(self, desc):
            self._desc = desc

        def desc(self):
            return self._desc

        def __str__(self):
            return f"In node -1 (importModel): {self._desc}"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, model):
            self.network.source = Path(model)
            if trt.parse_errors:
                self.errors = [ParserError(e) for e in trt.parse_errors]
                return False
            graph = onnx.load(model, load_external_data=False).graph
            for mode, values in (("INPUT", graph.input), ("OUTPUT", graph.output)):
                for v in values:
                    t = v.type.tensor_type
                    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                    self.network.io.append({"name": v.name, "mode": mode,
                                            "dtype": ONNX_TO_TRT[t.elem_type], "shape": shape})
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's names)
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class Config:
        def __init__(self):
            self.pools, self.cache, self.ignore_mismatch, self.profiles = {}, None, None, []
            self.flags = {trt.BuilderFlag.TF32}  # TensorRT's default

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool, pool_size):
            self.pools[pool] = pool_size

        def create_timing_cache(self, serialized_timing_cache):
            return TimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache, self.ignore_mismatch = cache, ignore_mismatch
            return True

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def get_timing_cache(self):
            return self.cache

    def fake_tf32(config):
        return trt.BuilderFlag.TF32 in config.flags

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            cache_in = config.cache.data
            config.cache.data = cache_in + f"<timings of {network.source.name}>".encode()  # the build learns
            engine = None if trt.fail_build else json.dumps({"io": network.io}).encode()
            trt.builds.append(dict(flags=network.flags, source=network.source, io=network.io,
                                   profiles=[p.shapes for p in config.profiles], pools=config.pools,
                                   cache_in=cache_in, cache_out=config.cache.data,
                                   ignore_mismatch=config.ignore_mismatch, engine=engine,
                                   tf32=fake_tf32(config)))
            return engine

    class ExecutionContext:
        def __init__(self, engine, strategy):
            self.engine, self.strategy, self.memory, self.shapes = engine, strategy, None, {}

        def set_device_memory(self, memory, size):
            self.memory = (memory, size)

        def set_input_shape(self, name, shape):
            # Inside the profile: the batch (first dim) may be 1..max_batch, the rest fixed.
            graph_shape = self.engine.get_tensor_shape(name)
            ok = len(shape) == len(graph_shape) and all(g in (-1, d) for g, d in zip(graph_shape, shape))
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

    class Engine:
        device_memory_size_v2 = 12345

        def __init__(self, io):
            self._io = {t["name"]: t for t in io}

        @property
        def num_io_tensors(self):
            return len(self._io)

        def get_tensor_name(self, index):
            return list(self._io)[index]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode[self._io[name]["mode"]]

        def get_tensor_dtype(self, name):
            return trt.DataType[self._io[name]["dtype"]]

        def get_tensor_shape(self, name):
            return tuple(self._io[name]["shape"])

        def create_execution_context(self, strategy=trt.ExecutionContextAllocationStrategy.STATIC):
            return ExecutionContext(self, strategy)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            try:  # a real runtime returns None for another GPU / version or a damaged file
                return Engine(json.loads(bytes(serialized_engine))["io"])
            except (ValueError, KeyError):
                return None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    """The fake as `tensorrt`, on a machine that reports an H100."""
    trt = make_fake_trt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("engine.trt_backend.gpu_identity", lambda device=None: (GPU, CC))
    monkeypatch.setattr("export.trt_build.gpu_identity", lambda device=None: (GPU, CC))
    return trt


@pytest.fixture(scope="module")
def onnx_graphs(tmp_path_factory, micro_checkpoints) -> Path:
    from export.build_engines import build

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
    from export.trt_build import build_trt_engines

    return build_trt_engines(graphs, Manifest.load(graphs), load_geometry(graphs), precision, opt_batch, force)


# -- building ------------------------------------------------------------------------------


def test_build_writes_engines_manifest_profiles_and_shares_the_timing_cache(graphs, fake_trt):
    """Four engines and a manifest (GPU, capability, TensorRT version, precision, the ONNX
    model's hashes) under trt/<key>/; strongly typed networks; each profile is
    stage_profile and covers exactly the graph's dynamic inputs, opt batch = opt_batch;
    the timing cache one build saves is the one the next build starts from."""
    folder = _build(graphs, "fp32", opt_batch=2)
    assert folder == graphs / "trt" / "nvidia-h100-80gb-hbm3_sm90_trt10.13.0.35_fp32"
    assert folder == trt_engine_dir(graphs, trt_engine_key(GPU, CC, VERSION, "fp32"))
    assert sorted(p.name for p in folder.glob("*.engine")) == sorted(f"{s}.engine" for s in STAGES)
    onnx_manifest, manifest = Manifest.load(graphs), TrtManifest.load(folder)
    assert (manifest.gpu_name, manifest.compute_capability, manifest.tensorrt_version, manifest.precision) \
        == (GPU, CC, VERSION, "fp32")
    assert (manifest.config_sha256, manifest.checkpoint_sha256, manifest.max_batch, manifest.opt_batch) \
        == (onnx_manifest.config_sha256, onnx_manifest.checkpoint_sha256, onnx_manifest.max_batch, 2)

    geo, builds = load_geometry(graphs), fake_trt.builds
    assert len(builds) == 4
    assert [b["source"] for b in builds] == [graphs / f"{s}.onnx" for s in STAGES]  # fp32: the graphs
    for stage, b in zip(STAGES, builds):
        assert b["flags"] & (1 << int(fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)), stage
        assert b["pools"][fake_trt.MemoryPoolType.WORKSPACE] > 0 and b["ignore_mismatch"] is False
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
    rebuild all four, starting from the timing cache saved before."""
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


def test_strongly_typed_network_across_versions():
    """Without the STRONGLY_TYPED flag: TensorRT 11 (always strongly typed) gets flags 0,
    a 10.x is refused with a clear error."""
    from export.trt_build import TrtBuildError, strongly_typed_network

    trt = make_fake_trt("11.0.0.9", strongly_typed_flag=False)
    assert strongly_typed_network(trt, trt.Builder(None)).flags == 0
    trt = make_fake_trt("10.3.0.26", strongly_typed_flag=False)
    with pytest.raises(TrtBuildError, match="10.3.0.26 has no strongly typed networks"):
        strongly_typed_network(trt, trt.Builder(None))


def test_failed_builds_show_tensorrt_errors_and_leave_no_manifest(graphs, fake_trt):
    """Every parser error is in the TrtBuildError; a build returning None is an error too;
    after either, no trt_manifest.json is left and the next run builds again."""
    from export.trt_build import TrtBuildError

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
    """--targets trt without TensorRT (or without a GPU) exits 2 with a clear message and
    exports nothing; --precision fp16 without --targets trt exits 2."""
    from export.build_engines import main

    ckpt, out = micro_checkpoints["lively"], tmp_path / "out"
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    assert main(_cli(ckpt, out, "--targets", "onnx", "trt")) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "pip install tensorrt" in err
    assert not list(out.glob("*.onnx"))  # nothing exported

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(_cli(ckpt, out, "--targets", "trt")) == 2
    assert "TensorRT needs a CUDA GPU" in capsys.readouterr().err
    assert not list(out.glob("*.onnx"))  # nothing exported

    assert main(_cli(ckpt, out, "--precision", "fp16")) == 2
    assert "--targets trt" in capsys.readouterr().err


def test_cli_builds_engines_and_reports_build_errors(graphs, fake_trt, micro_checkpoints, capsys):
    """main --targets trt reuses the graphs, builds fp16 engines with --opt_batch, and a
    TensorRT parser error is exit code 2 with the error on stderr."""
    from export.build_engines import main

    args = _cli(micro_checkpoints["lively"], graphs, "--targets", "onnx", "trt", "--precision", "fp16")
    assert main(args + ["--opt_batch", "4"]) == 0
    assert "up to date" in capsys.readouterr().out  # the ONNX graphs
    folder = trt_engine_dir(graphs, trt_engine_key(GPU, CC, VERSION, "fp16"))
    assert TrtManifest.load(folder).opt_batch == 4 and len(fake_trt.builds) == 4
    fake_trt.parse_errors = ["node Foo: unsupported"]
    assert main(args[:-1] + ["bf16"]) == 2  # (not --force: that would export the graphs again)
    assert "node Foo: unsupported" in capsys.readouterr().err


# -- the manifest check --------------------------------------------------------------------


def _check(engine_dir, onnx_manifest, gpu=GPU, cc=CC, version=VERSION, precision="fp32"):
    return check_trt_manifest(engine_dir, onnx_manifest, gpu, cc, version, precision, MICRO_CFG, "ckpt.pt")


def test_check_trt_manifest(graphs, fake_trt):
    """The check finds this GPU's engines; a missing set names GPU and version, lists the
    sets there are and how to rebuild; a manifest for another GPU / version, another
    model or with an engine missing is refused."""
    folder, onnx_manifest = _build(graphs), Manifest.load(graphs)
    assert _check(graphs, onnx_manifest) == (folder, TrtManifest.load(folder))

    with pytest.raises(EngineMismatchError) as caught:
        _check(graphs, onnx_manifest, gpu="NVIDIA A100-SXM4-80GB", cc="8.0", version="10.14.1.48")
    msg = str(caught.value)
    assert "NVIDIA A100-SXM4-80GB" in msg and "sm80" in msg and "TensorRT 10.14.1.48" in msg
    assert folder.name in msg and "--targets trt" in msg and "build_engines.py" in msg

    # A manifest saying H100 / 10.13 found where the A100 / 10.14 engines belong.
    for gpu, cc, version in (("NVIDIA A100-SXM4-80GB", "8.0", VERSION), (GPU, CC, "10.14.1.48")):
        other = trt_engine_dir(graphs, trt_engine_key(gpu, cc, version, "fp32"))
        other.mkdir()
        TrtManifest.load(folder).save(other)
        with pytest.raises(EngineMismatchError, match="(?s)were built for .*--targets trt"):
            _check(graphs, onnx_manifest, gpu=gpu, cc=cc, version=version)

    with pytest.raises(EngineMismatchError, match="another model than the ONNX graphs"):
        _check(graphs, replace(onnx_manifest, checkpoint_sha256="0" * 64))
    (folder / "memory_encoder.engine").unlink()
    with pytest.raises(EngineMismatchError, match="lacks the engines of memory_encoder"):
        _check(graphs, onnx_manifest)


# -- loading engines -----------------------------------------------------------------------


def _bare_backend(trt, manifest):
    """A TrtBackend with what _load_stage needs (its __init__ needs a CUDA device)."""
    from engine.trt_backend import TrtBackend

    backend = TrtBackend.__new__(TrtBackend)
    backend.trt, backend.manifest = trt, manifest
    backend.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    backend.engines, backend.contexts, backend.io = {}, {}, {}
    return backend


def test_load_stage_reads_engine_io(graphs, fake_trt):
    """Built engines load: torch dtypes and dynamic flags per input, output dtypes, the
    scratch size from device_memory_size_v2; a USER_MANAGED context per engine and input
    shape, on the shared scratch, with its shapes set once."""
    folder = _build(graphs)
    backend = _bare_backend(fake_trt, TrtManifest.load(folder))
    for stage in STAGES:
        backend._load_stage(stage, folder / f"{stage}.engine")
    inputs, outputs = backend.io["memory_attention"]
    assert inputs["feat"] == (torch.float32, False) and inputs["mem_feats"] == (torch.float32, True)
    assert inputs["mem_valid"] == (torch.bool, True) and inputs["mem_tpos"] == (torch.int64, True)
    assert outputs == {"pix_feat": torch.float32}
    inputs, outputs = backend.io["mask_decoder"]
    assert inputs["point_labels"] == (torch.int32, True) and inputs["hr0"] == (torch.float32, False)
    assert set(outputs) == {"masks", "ious", "obj_score", "obj_ptrs", "single_mask", "single_iou", "single_ptr"}
    assert backend.io["image_encoder"][0] == {"image": (torch.float32, False)}
    assert backend._scratch_size(backend.engines["image_encoder"]) == 12345

    backend.scratch = torch.empty(backend._scratch_size(backend.engines["memory_encoder"]), dtype=torch.uint8)
    shapes = {"feat": (1, 256, 16, 16), "masks": (3, 1, 64, 64), "obj_score": (3,)}
    ctx = backend._context("memory_encoder", shapes)
    assert ctx.strategy == fake_trt.ExecutionContextAllocationStrategy.USER_MANAGED
    assert ctx.memory == (backend.scratch.data_ptr(), 12345)
    assert ctx.shapes == {"masks": (3, 1, 64, 64), "obj_score": (3,)}  # only the dynamic inputs
    assert backend._context("memory_encoder", dict(shapes)) is ctx
    other = backend._context("memory_encoder", {**shapes, "masks": (1, 1, 64, 64), "obj_score": (1,)})
    assert other is not ctx and ctx.shapes["masks"] == (3, 1, 64, 64)  # the first context is untouched
    with pytest.raises(ValueError, match="optimization profile"):
        backend._context("memory_encoder", {**shapes, "masks": (3, 2, 64, 64)})


def test_load_stage_refuses_unloadable_or_foreign_engines(graphs, fake_trt, tmp_path):
    """An engine the runtime cannot deserialize, or one whose I/O names are not the
    stage's, is an EngineMismatchError that says to rebuild."""
    folder = _build(graphs)
    backend = _bare_backend(fake_trt, TrtManifest.load(folder))
    damaged = tmp_path / "damaged.engine"
    damaged.write_bytes(b"\x00plan for another GPU")
    with pytest.raises(EngineMismatchError, match=f"(?s)could not load .*{VERSION}.*--targets trt --force"):
        backend._load_stage("memory_encoder", damaged)
    io = json.loads((folder / "memory_encoder.engine").read_bytes())["io"]
    for t in io:
        t["name"] = {"mem_feat": "memory"}.get(t["name"], t["name"])
    renamed = tmp_path / "renamed.engine"
    renamed.write_bytes(json.dumps({"io": io}).encode())
    with pytest.raises(EngineMismatchError, match="(?s)stage memory_encoder.*memory.*rebuild"):
        backend._load_stage("memory_encoder", renamed)
    with pytest.raises(EngineMismatchError, match="stage mask_decoder"):  # an engine of another stage
        backend._load_stage("mask_decoder", folder / "memory_encoder.engine")
    assert backend.engines == {}


def test_backend_needs_tensorrt_and_cuda(graphs, fake_trt, micro_checkpoints, monkeypatch):
    """TrtBackend on the CPU and --backend trt on the CPU are TensorRTUnavailable; without
    tensorrt the error says `pip install tensorrt`; with it, the factory picks this GPU's
    engines (and names the sets there are when the precision has none)."""
    import engine.trt_backend as trt_backend
    from engine.factory import build_backend

    folder = _build(graphs)
    ckpt = str(micro_checkpoints["lively"])
    with pytest.raises(trt_backend.TensorRTUnavailable, match="runs on a CUDA device, not cpu"):
        trt_backend.TrtBackend(graphs, folder, TrtManifest.load(folder), device="cpu")
    with pytest.raises(trt_backend.TensorRTUnavailable, match="CUDA GPU, not on cpu"):
        build_backend("trt", MICRO_CFG, ckpt, "cpu", str(graphs))

    monkeypatch.setattr("engine.factory.resolve_device", lambda device: torch.device("cuda"))
    made = []
    monkeypatch.setattr(trt_backend, "TrtBackend", lambda *args: made.append(args) or "backend")
    assert build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs)) == "backend"
    assert made == [(str(graphs), folder, TrtManifest.load(folder), torch.device("cuda"))]
    with pytest.raises(EngineMismatchError, match=f"(?s)fp16 in .*engines there are for: {folder.name}"):
        build_backend("trt", MICRO_CFG, ckpt, "cuda", str(graphs), precision="fp16")
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
        from export.build_engines import build

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
        from engine.factory import build_backend
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
