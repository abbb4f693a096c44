"""Every `tensorrt` name the project uses exists in every TensorRT version the README claims.

The table is extracted from TensorRT's own Python binding sources, per release branch
(tests/data/tensorrt/tensorrt_api.json; tests/data/tensorrt/README.md says how it was
made, from which commits). The fake module of tests/fake_tensorrt.py is generated from it
and records each name the code touches; the build, load and run paths below run on it, and
what they touched must be exactly USED, whose every name is then looked up in every
supported version's table. A name the project starts to use fails here until it is added
to USED, and then fails for each claimed version that lacks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fake_tensorrt import API, SUPPORTED, make_fake_trt

pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/setup_env.sh")

DATA = Path(__file__).parent / "data" / "tensorrt"

# (class or enum, name) the project uses; "tensorrt" is the module itself.
USED = {
    ("tensorrt", n) for n in ("Builder", "BuilderFlag", "DataType", "ExecutionContextAllocationStrategy", "Logger",
                              "MemoryPoolType", "NetworkDefinitionCreationFlag", "OnnxParser", "Runtime",
                              "TensorIOMode")
} | {
    ("Logger", "WARNING"),
    ("Builder", "create_network"), ("Builder", "create_builder_config"), ("Builder", "create_optimization_profile"),
    ("Builder", "build_serialized_network"),
    ("OnnxParser", "parse_from_file"), ("OnnxParser", "num_errors"), ("OnnxParser", "get_error"),
    ("IBuilderConfig", "set_memory_pool_limit"), ("IBuilderConfig", "clear_flag"),
    ("IBuilderConfig", "create_timing_cache"), ("IBuilderConfig", "set_timing_cache"),
    ("IBuilderConfig", "get_timing_cache"), ("IBuilderConfig", "add_optimization_profile"),
    ("ITimingCache", "serialize"), ("IOptimizationProfile", "set_shape"),
    ("Runtime", "deserialize_cuda_engine"),
    ("ICudaEngine", "num_io_tensors"), ("ICudaEngine", "get_tensor_name"), ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_dtype"), ("ICudaEngine", "get_tensor_shape"),
    ("ICudaEngine", "create_execution_context"),
    ("IExecutionContext", "set_input_shape"), ("IExecutionContext", "update_device_memory_size_for_shapes"),
    ("IExecutionContext", "set_device_memory"), ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "get_tensor_shape"), ("IExecutionContext", "execute_async_v3"),
    ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"), ("MemoryPoolType", "WORKSPACE"), ("BuilderFlag", "TF32"),
    ("TensorIOMode", "INPUT"), ("TensorIOMode", "OUTPUT"), ("ExecutionContextAllocationStrategy", "USER_MANAGED"),
    ("tensorrt", "PreviewFeature"), ("IBuilderConfig", "set_preview_feature"),
} | {("DataType", n) for n in ("FLOAT", "HALF", "INT32", "INT64", "BOOL", "INT8", "UINT8", "BF16")}
# Used where the version has them (looked up with getattr and a default), so not required
# of every version: the working memory's resize preview feature (10.10 and newer).
OPTIONAL = {("PreviewFeature", "RUNTIME_ACTIVATION_RESIZE_10_10")}


def _exists(api: dict, owner: str, name: str) -> bool:
    if owner == "tensorrt":
        return name in api["classes"] or name in api["enums"] or name in api["module"]
    if owner in api["enums"]:
        return name in api["enums"][owner]
    def names(cls):
        entry = api["classes"][cls]
        return set(entry["attrs"]) | set(entry["enums"]) | {n for b in entry["bases"] for n in names(b)}
    return owner in api["classes"] and name in names(owner)


def test_the_code_uses_exactly_the_listed_names(tmp_path, micro_checkpoints, monkeypatch):
    """Build fp32 and fp16 engines, load them and run a short fixed-shape video through
    the TensorRT backend on the fake: the names touched are USED."""
    from sam2long.engine.manifest import Manifest
    from sam2long.export.build_engines import build
    from tests.conftest import MICRO_CFG
    from tests.test_gpu_path import _run
    from tests.test_trt_offline import _backend

    trt = make_fake_trt(SUPPORTED[-1])
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("sam2long.engine.trt_backend.gpu_identity", lambda device=None: ("GPU", "9.0"))
    monkeypatch.setattr("sam2long.export.trt_build.gpu_identity", lambda device=None: ("GPU", "9.0"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("S", (), {"cuda_stream": 0})())
    out = tmp_path / "eng"
    build(MICRO_CFG, str(micro_checkpoints["lively"]), str(out))
    from sam2long.export.trt_build import build_trt_engines
    from sam2long.engine.graph_backend import load_geometry

    for precision in ("fp16", "fp32"):
        folder = build_trt_engines(out, Manifest.load(out), load_geometry(out), precision)
    trt.parse_errors = ["node X: unsupported"]  # the parser's error path
    with pytest.raises(Exception, match="node X"):
        build_trt_engines(out, Manifest.load(out), load_geometry(out), "bf16")
    _run(_backend(trt, out, folder), n=5, fixed_shapes=True)
    listed = USED | OPTIONAL
    assert trt.used == listed, (f"used but not listed: {sorted(trt.used - listed)}; "
                                f"listed but not used: {sorted(listed - trt.used)}")


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_used_name_exists_in_every_supported_version(version):
    missing = sorted(f"{owner}.{name}" for owner, name in USED if not _exists(API[version], owner, name))
    assert not missing, f"TensorRT {API[version]['tensorrt_version']} lacks {missing}"


def test_tensorrt_10_0_lacks_what_the_shared_working_memory_needs():
    """The review's defect 4 is real: 10.0 has neither set_device_memory(ptr, size) nor
    device_memory_size_v2 (both from 10.1), so import_tensorrt refuses 10.0."""
    missing = sorted(f"{owner}.{name}" for owner, name in USED if not _exists(API["10.0"], owner, name))
    assert missing == ["IExecutionContext.set_device_memory"]
    assert "device_memory_size_v2" not in API["10.0"]["classes"]["ICudaEngine"]["attrs"]
    assert "device_memory_size_v2" in API["10.1"]["classes"]["ICudaEngine"]["attrs"]
    assert "10.0" not in SUPPORTED and "10.1" in SUPPORTED


def test_enum_values_are_the_real_ones():
    """The review's defect 13: 11.x keeps STRONGLY_TYPED as a deprecated 0 and has no
    EXPLICIT_BATCH; 10.x has EXPLICIT_BATCH 0 and STRONGLY_TYPED 1. The fake takes the
    table's values, so the network flag bit is each version's real one."""
    for version, api in API.items():
        flags = api["enums"]["NetworkDefinitionCreationFlag"]
        if version.startswith("11."):
            assert flags["STRONGLY_TYPED"] == 0 and "EXPLICIT_BATCH" not in flags
        else:
            assert flags["EXPLICIT_BATCH"] == 0 and flags["STRONGLY_TYPED"] == 1
        trt = make_fake_trt(version)
        for qual, members in api["enums"].items():
            if "." in qual or None in members.values():
                continue
            assert {n: int(m) for n, m in getattr(trt, qual).__members__.items()} == members, (version, qual)
        assert int(trt.Logger.WARNING) == api["enums"]["ILogger.Severity"]["WARNING"]
    assert not hasattr(make_fake_trt("11.1").ICudaEngine, "device_memory_size")  # dropped in 11


def test_the_table_records_where_it_comes_from():
    for version, api in API.items():
        assert len(api["commit"]) == 40 and api["ref"] and api["tensorrt_version"].startswith(version), version
    assert set(SUPPORTED) >= {"10.1", "10.13", "11.1"}


@pytest.mark.skipif(not os.environ.get("TENSORRT_GIT_DIR"),
                    reason="set TENSORRT_GIT_DIR to a TensorRT git directory to re-extract the table")
def test_the_extraction_reproduces_the_table(tmp_path):
    """With a TensorRT checkout at hand, the committed table is what the script makes."""
    import json

    refs = [api["commit"] for api in API.values()]
    out = tmp_path / "api.json"
    subprocess.run([sys.executable, str(DATA / "extract_tensorrt_api.py"), "--git_dir",
                    os.environ["TENSORRT_GIT_DIR"], *[a for r in refs for a in ("--ref", r)], "--out", str(out)],
                   check=True)
    made = json.loads(out.read_text())["versions"]
    for version, api in API.items():
        assert {k: v for k, v in made[version].items() if k != "ref"} == \
            {k: v for k, v in api.items() if k != "ref"}, version
