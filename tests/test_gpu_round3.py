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
