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
