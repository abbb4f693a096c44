"""Tests for runtime.sharding and tools/slurm_vos_inference.sh.

The point of both is that every video is processed exactly once.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from runtime.sharding import resolve_shard, select_shard, shard_index, split_contiguous


# ---------------------------------------------------------------- split_contiguous


@pytest.mark.parametrize(
    "length, n, sizes",
    [
        (10, 3, [4, 3, 3]),
        (11, 3, [4, 4, 3]),
        (9, 3, [3, 3, 3]),
        (2, 5, [1, 1, 0, 0, 0]),
        (0, 3, [0, 0, 0]),
        (7, 1, [7]),
    ],
)
def test_split_sizes(length, n, sizes):
    items = list(range(length))
    chunks = split_contiguous(items, n)
    assert [len(c) for c in chunks] == sizes
    # contiguous and order-preserving: concatenation gives back the input
    assert list(itertools.chain.from_iterable(chunks)) == items


def test_split_rejects_bad_n():
    with pytest.raises(ValueError):
        split_contiguous([1, 2], 0)
    with pytest.raises(ValueError):
        split_contiguous([1, 2], -1)


# ---------------------------------------------------------------- shard_index


def test_shard_index_node_major():
    assert shard_index(1, 0, 1, 0) == (0, 1)
    assert shard_index(2, 0, 3, 2) == (2, 6)
    assert shard_index(2, 1, 3, 0) == (3, 6)
    assert shard_index(4, 3, 8, 7) == (31, 32)


@pytest.mark.parametrize(
    "args, word",
    [
        ((2, 2, 3, 0), "node_id"),
        ((2, -1, 3, 0), "node_id"),
        ((2, 0, 3, 3), "chunk_id"),
        ((0, 0, 1, 0), "num_nodes"),
        ((1, 0, 0, 0), "num_chunks"),
    ],
)
def test_shard_index_validation(args, word):
    with pytest.raises(ValueError, match=word):
        shard_index(*args)


# ---------------------------------------------------------------- resolve_shard

NO_FLAGS = (None, None, None, None)


def test_default_without_env():
    index, total, source = resolve_shard(*NO_FLAGS, environ={})
    assert (index, total) == (0, 1)
    assert "default" in source


def test_slurm_env():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}
    assert resolve_shard(*NO_FLAGS, environ=env) == (
        3,
        8,
        "SLURM_PROCID=3 of SLURM_NTASKS=8",
    )


def test_torchrun_env():
    index, total, source = resolve_shard(*NO_FLAGS, environ={"RANK": "1", "WORLD_SIZE": "4"})
    assert (index, total) == (1, 4)
    assert "RANK=1" in source and "WORLD_SIZE=4" in source


def test_slurm_beats_torchrun():
    env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "5", "RANK": "0", "WORLD_SIZE": "2"}
    index, total, source = resolve_shard(*NO_FLAGS, environ=env)
    assert (index, total) == (2, 5)
    assert source.startswith("SLURM_PROCID")


def test_flags_override_env_and_default_missing_flags():
    env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "5", "RANK": "1", "WORLD_SIZE": "2"}
    # only chunk flags: num_nodes=1, node_id=0 implied
    index, total, source = resolve_shard(None, None, 4, 3, environ=env)
    assert (index, total) == (3, 4)
    assert "--num_chunks 4" in source
    # only node flags: num_chunks=1, chunk_id=0 implied
    assert resolve_shard(3, 1, None, None, environ=env)[:2] == (1, 3)
    # a single flag is enough to ignore the environment
    assert resolve_shard(1, None, None, None, environ=env)[:2] == (0, 1)


@pytest.mark.parametrize(
    "env, var",
    [
        ({"SLURM_PROCID": "x", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_PROCID": "1", "SLURM_NTASKS": "two"}, "SLURM_NTASKS"),
        ({"SLURM_PROCID": "8", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_PROCID": "-1", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "0"}, "SLURM_NTASKS"),
        ({"SLURM_PROCID": "0"}, "SLURM_NTASKS"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK"),
        ({"RANK": "1.5", "WORLD_SIZE": "4"}, "RANK"),
        ({"RANK": "0"}, "WORLD_SIZE"),
    ],
)
def test_bad_env_values(env, var):
    with pytest.raises(ValueError, match=var):
        resolve_shard(*NO_FLAGS, environ=env)


def test_bad_flag_values():
    with pytest.raises(ValueError, match="chunk_id"):
        resolve_shard(1, 0, 2, 2, environ={})
    with pytest.raises(ValueError, match="node_id"):
        resolve_shard(2, 5, None, None, environ={})


# ---------------------------------------------------------------- select_shard


def test_select_shard_partition_2_nodes_x_3_chunks():
    names = [f"video_{i:02d}" for i in range(10)]
    shuffled = names[::3] + names[1::3] + names[2::3]  # listing order must not matter
    shards = []
    for node_id in range(2):
        for chunk_id in range(3):
            index, total, _ = resolve_shard(2, node_id, 3, chunk_id, environ={})
            shards.append(select_shard(shuffled, index, total))
    assert [len(s) for s in shards] == [2, 2, 2, 2, 1, 1]
    flat = list(itertools.chain.from_iterable(shards))
    assert flat == sorted(names)  # union is the sorted list, in order
    assert len(set(flat)) == len(flat)  # disjoint


def test_select_shard_more_shards_than_videos():
    shards = [select_shard(["b", "a"], i, 4) for i in range(4)]
    assert shards == [["a"], ["b"], [], []]


def test_select_shard_validation():
    with pytest.raises(ValueError):
        select_shard(["a"], 1, 1)
    with pytest.raises(ValueError):
        select_shard(["a"], 0, 0)


# ---------------------------------------------------------------- launcher script

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = REPO_ROOT / "tools" / "slurm_vos_inference.sh"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")


def _write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _launcher_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Clean environment: no SLURM/CUDA variables leak in from the test runner."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") and k not in ("CUDA_VISIBLE_DEVICES", "GPUS_PER_NODE")
    }
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    fake_python = _write_exe(
        tmp_path / "fake_python",
        "#!/usr/bin/env bash\n"
        'echo "$*" > "$CALLS_DIR/node${SLURM_NODEID:-0}_gpu${CUDA_VISIBLE_DEVICES}.txt"\n'
        'if [[ -n "${FAIL_CHUNK:-}" && "$*" == *"--chunk_id ${FAIL_CHUNK}"* ]]; then exit 3; fi\n',
    )
    env.update(PYTHON=str(fake_python), CALLS_DIR=str(calls))
    env.update(extra)
    return env


def _run_launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LAUNCHER), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _calls(tmp_path: Path) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in sorted((tmp_path / "calls").iterdir())}


@needs_bash
def test_launcher_syntax():
    result = subprocess.run(["bash", "-n", str(LAUNCHER)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@needs_bash
def test_launcher_single_node_two_gpus(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2")
    result = _run_launcher(env, "--output_mask_dir", "out dir", "--score_thresh", "0.5")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert sorted(calls) == ["node0_gpu0", "node0_gpu1"]
    for g in range(2):
        assert calls[f"node0_gpu{g}"] == (
            "tools/vos_inference.py --output_mask_dir out dir --score_thresh 0.5 "
            f"--num_nodes 1 --node_id 0 --num_chunks 2 --chunk_id {g}"
        )


@needs_bash
def test_launcher_maps_visible_devices_and_slurm_node(tmp_path):
    # Inside an srun step: node id/count from SLURM, GPU count from SLURM_GPUS_ON_NODE,
    # devices taken from the CUDA_VISIBLE_DEVICES list SLURM assigned.
    env = _launcher_env(
        tmp_path,
        SLURM_JOB_ID="42",
        SLURM_STEP_ID="0",
        SLURM_NNODES="3",
        SLURM_NODEID="2",
        SLURM_GPUS_ON_NODE="2",
        CUDA_VISIBLE_DEVICES="5,7",
    )
    result = _run_launcher(env, "--x")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert sorted(calls) == ["node2_gpu5", "node2_gpu7"]
    assert calls["node2_gpu7"].endswith("--num_nodes 3 --node_id 2 --num_chunks 2 --chunk_id 1")


@needs_bash
def test_launcher_fans_out_with_srun_under_sbatch(tmp_path):
    # A fake srun that plays two nodes sequentially, like `srun --ntasks-per-node=1`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_exe(
        bin_dir / "srun",
        "#!/usr/bin/env bash\n"
        'while [[ "$1" == --* ]]; do shift; done\n'
        "for n in 0 1; do\n"
        '  SLURM_STEP_ID=0 SLURM_NNODES=2 SLURM_NODEID=$n "$@" || exit $?\n'
        "done\n",
    )
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2", SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="2")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    result = _run_launcher(env, "--y")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert sorted(calls) == ["node0_gpu0", "node0_gpu1", "node1_gpu0", "node1_gpu1"]
    assert calls["node1_gpu1"].endswith("--num_nodes 2 --node_id 1 --num_chunks 2 --chunk_id 1")


@needs_bash
def test_launcher_reports_failure(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2", FAIL_CHUNK="1")
    result = _run_launcher(env)
    assert result.returncode != 0
    assert "chunk 1 failed" in result.stderr
    assert sorted(_calls(tmp_path)) == ["node0_gpu0", "node0_gpu1"]  # chunk 0 still ran


@needs_bash
def test_launcher_rejects_bad_gpu_count(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="two")
    result = _run_launcher(env)
    assert result.returncode != 0
    assert "num_gpus" in result.stderr
    assert _calls(tmp_path) == {}
