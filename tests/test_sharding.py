"""Tests for runtime.sharding and tools/slurm_vos_inference.sh.

The point of both is that every video is processed exactly once.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sam2long.runtime.sharding import (
    parse_tasks_per_node,
    resolve_shard,
    select_shard,
    shard_index,
    split_contiguous,
)
from sam2long.tools.slurm_task_plan import refused_shard_flag


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
#
# One rule (runtime/sharding.py, README "Sharding and SLURM"): flags first (a level given only by
# its count takes its index from the launcher when that is unambiguous, else it is refused), then
# torchrun, then a SLURM step (only inside srun), with a SLURM array multiplying on the outside,
# then a single shard.  The "world" tests below launch every process of a job on paper and check
# that each video lands in exactly one of them.

NO_FLAGS = (None, None, None, None)
VIDEOS = [f"v{i:02d}" for i in range(23)]


def torchrun_env(nnodes: int, nproc: int, node: int, local: int) -> dict[str, str]:
    """What torchrun sets for local rank ``local`` on node ``node``."""
    return {
        "RANK": str(node * nproc + local), "WORLD_SIZE": str(nnodes * nproc),
        "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(nproc),
        "GROUP_RANK": str(node), "GROUP_WORLD_SIZE": str(nnodes),
        "TORCHELASTIC_RUN_ID": "none",
    }


def slurm_step_env(nnodes: int, per_node: int, node: int, local: int) -> dict[str, str]:
    """What srun sets in task ``local`` on node ``node`` (block distribution)."""
    return {
        "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0",
        "SLURM_PROCID": str(node * per_node + local), "SLURM_NTASKS": str(nnodes * per_node),
        "SLURM_NODEID": str(node), "SLURM_NNODES": str(nnodes), "SLURM_LOCALID": str(local),
        "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{nnodes})",
    }


def allocation_env(nnodes: int = 2, ntasks: int = 4) -> dict[str, str]:
    """What a batch script or an salloc shell inherits: job variables, no step."""
    return {"SLURM_JOB_ID": "77", "SLURM_PROCID": "0", "SLURM_NTASKS": str(ntasks),
            "SLURM_NNODES": str(nnodes), "SLURM_NODEID": "0", "SLURM_LOCALID": "0"}


def array_env(task_id: int, lo: int, hi: int, step: int = 1) -> dict[str, str]:
    return {"SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": str(task_id),
            "SLURM_ARRAY_TASK_MIN": str(lo), "SLURM_ARRAY_TASK_MAX": str(hi),
            "SLURM_ARRAY_TASK_STEP": str(step),
            "SLURM_ARRAY_TASK_COUNT": str(len(range(lo, hi + 1, step)))}


def assert_partition(processes):
    """``processes``: (flags, environ) per process; every video must be run exactly once."""
    owners: dict[str, list[str]] = {}
    for flags, environ in processes:
        index, total, source = resolve_shard(*flags, environ=environ)
        assert source, "every process must say where its shard came from"
        for video in select_shard(VIDEOS, index, total):
            owners.setdefault(video, []).append(f"shard {index} of {total} ({source})")
    missing = [v for v in VIDEOS if v not in owners]
    twice = {v: o for v, o in owners.items() if len(o) > 1}
    assert not missing and not twice, f"missing: {missing}; run more than once: {twice}"


def test_default_without_env():
    index, total, source = resolve_shard(*NO_FLAGS, environ={})
    assert (index, total) == (0, 1)
    assert "single shard" in source


def test_slurm_step_env():
    index, total, source = resolve_shard(*NO_FLAGS, environ=slurm_step_env(2, 4, 0, 3))
    assert (index, total) == (3, 8)
    assert "SLURM_PROCID=3" in source and "SLURM_NTASKS=8" in source


def test_torchrun_env():
    index, total, source = resolve_shard(*NO_FLAGS, environ={"RANK": "1", "WORLD_SIZE": "4"})
    assert (index, total) == (1, 4)
    assert "RANK=1" in source and "WORLD_SIZE=4" in source


def test_torchrun_beats_slurm_step_variables():
    # torchrun started by `srun -N1 -n1` (or from an interactive step): the step has one task,
    # torchrun's ranks are what the user launched.
    env = {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "1",
           **torchrun_env(1, 2, 0, 1)}
    index, total, source = resolve_shard(*NO_FLAGS, environ=env)
    assert (index, total) == (1, 2)
    assert source.startswith("torchrun") and "SLURM" in source  # says what it ignored


def test_allocation_variables_without_a_step_do_not_shard():
    # `sbatch -n 4 --wrap "python tools/vos_inference.py ..."` runs ONE process with
    # SLURM_PROCID=0 SLURM_NTASKS=4: it must run every video, not a quarter of them.
    index, total, source = resolve_shard(*NO_FLAGS, environ=allocation_env(2, 4))
    assert (index, total) == (0, 1)
    assert "SLURM_STEP_ID" in source  # the log says why the SLURM variables were not used


@pytest.mark.parametrize("nnodes, nproc", [(1, 2), (2, 2), (2, 3)])
def test_world_torchrun_with_leftover_slurm_variables(nnodes, nproc):
    # torchrun launched through `srun --ntasks-per-node=1` (one agent per node) and from a
    # batch script: the SLURM variables describe the agents or the allocation, not the ranks.
    for leftover in (allocation_env(), None):
        processes = []
        for node in range(nnodes):
            slurm = leftover if leftover is not None else slurm_step_env(nnodes, 1, node, 0)
            for local in range(nproc):
                processes.append((NO_FLAGS, {**slurm, **torchrun_env(nnodes, nproc, node, local)}))
        assert_partition(processes)


def test_world_torchrun_with_num_chunks_only():
    # `torchrun --nproc_per_node 2 tools/vos_inference.py --num_chunks 2`: each rank takes its
    # chunk from LOCAL_RANK (today every rank runs chunk 0).
    assert_partition([((None, None, 2, None), torchrun_env(1, 2, 0, g)) for g in range(2)])
    # two nodes: the node level comes from torchrun too
    assert_partition([((None, None, 2, None), torchrun_env(2, 2, n, g))
                      for n in range(2) for g in range(2)])


def test_world_num_nodes_only_under_srun():
    # `srun -N2 --ntasks-per-node=1 run.sh` where run.sh starts `--num_nodes 2 --num_chunks 2
    # --chunk_id $g` for g in 0 1: the node index comes from SLURM_NODEID.
    assert_partition([((2, None, 2, g), slurm_step_env(2, 1, n, 0))
                      for n in range(2) for g in range(2)])
    # and the reference's habit (chunk flags only, node from the launcher)
    assert_partition([((None, None, 2, g), slurm_step_env(2, 1, n, 0))
                      for n in range(2) for g in range(2)])


def test_world_srun_several_tasks_per_node():
    assert_partition([(NO_FLAGS, slurm_step_env(2, 2, n, t)) for n in range(2) for t in range(2)])
    # --num_chunks = tasks per node: chunk from SLURM_LOCALID, node from SLURM_NODEID
    assert_partition([((None, None, 2, None), slurm_step_env(2, 2, n, t))
                      for n in range(2) for t in range(2)])


@pytest.mark.parametrize("lo, hi, step", [(0, 2, 1), (1, 4, 1), (0, 6, 2)])
def test_world_slurm_array(lo, hi, step):
    # `sbatch --array=lo-hi:step --wrap "python tools/vos_inference.py ..."`: one process per
    # array task, each inside the batch script (allocation variables, no step).
    ids = range(lo, hi + 1, step)
    assert_partition([(NO_FLAGS, {**allocation_env(1, 1), **array_env(i, lo, hi, step)}) for i in ids])


def test_world_slurm_array_times_step_and_torchrun():
    # array x (srun 2 nodes x 2 tasks)
    assert_partition([(NO_FLAGS, {**slurm_step_env(2, 2, n, t), **array_env(a, 0, 2)})
                      for a in range(3) for n in range(2) for t in range(2)])
    # array x torchrun (2 nodes x 2)
    assert_partition([(NO_FLAGS, {**torchrun_env(2, 2, n, g), **array_env(a, 0, 1)})
                      for a in range(2) for n in range(2) for g in range(2)])
    # array x chunk flags: the array is the node level
    assert_partition([((None, None, 2, g), {**allocation_env(1, 1), **array_env(a, 0, 2)})
                      for a in range(3) for g in range(2)])


def test_source_says_where_each_part_came_from():
    _, _, source = resolve_shard(None, None, 2, None, environ=torchrun_env(1, 2, 0, 1))
    assert "--num_chunks 2" in source and "LOCAL_RANK=1" in source
    _, _, source = resolve_shard(*NO_FLAGS, environ={**slurm_step_env(1, 2, 0, 1), **array_env(3, 2, 5)})
    assert "SLURM_PROCID=1" in source and "SLURM_ARRAY_TASK_ID=3" in source


@pytest.mark.parametrize(
    "flags, env, words",
    [
        # a count without its index and nothing to take the index from
        ((2, None, None, None), {}, ["--num_nodes 2", "--node_id"]),
        ((None, None, 4, None), {}, ["--num_chunks 4", "--chunk_id"]),
        # an index without its count
        ((None, 1, None, None), {}, ["--node_id 1", "--num_nodes"]),
        ((None, None, None, 0), torchrun_env(1, 2, 0, 0), ["--chunk_id 0", "--num_chunks"]),
        # the count disagrees with the launcher it would take the index from
        ((None, None, 2, None), torchrun_env(1, 4, 0, 3), ["--num_chunks 2", "LOCAL_WORLD_SIZE=4", "--chunk_id"]),
        ((3, None, 1, 0), slurm_step_env(2, 1, 1, 0), ["--num_nodes 3", "SLURM_NNODES=2", "--node_id"]),
        # allocation variables are not a launcher: nothing to complete from
        ((2, None, 1, 0), allocation_env(2, 2), ["--num_nodes 2", "--node_id"]),
        # complete flags, but more processes were launched than there are shards
        ((1, 0, 2, 1), torchrun_env(1, 4, 0, 0), ["2 shards", "4 processes"]),
        # torchrun without LOCAL_*: which node is this?
        ((None, None, 2, 1), {"RANK": "1", "WORLD_SIZE": "4"}, ["--num_nodes", "LOCAL_WORLD_SIZE"]),
        # several tasks per node, uneven: --num_chunks cannot be completed
        ((None, None, 2, None), {**slurm_step_env(2, 1, 0, 0), "SLURM_STEP_TASKS_PER_NODE": "2,1",
                                 "SLURM_NTASKS": "3"}, ["--chunk_id", "2,1"]),
    ],
)
def test_partial_or_contradictory_flags_are_refused(flags, env, words):
    with pytest.raises(ValueError) as info:
        resolve_shard(*flags, environ=env)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(
    "env, var",
    [
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "x", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_NTASKS": "two"}, "SLURM_NTASKS"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "8", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "-1", "SLURM_NTASKS": "8"}, "SLURM_PROCID"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "0"}, "SLURM_NTASKS"),
        ({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0"}, "SLURM_NTASKS"),
        ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK"),
        ({"RANK": "1.5", "WORLD_SIZE": "4"}, "RANK"),
        ({"RANK": "0"}, "WORLD_SIZE"),
        # an array whose indices are a list, not a range: positions cannot be told apart
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "7",
          "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, "--array"),
        ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_COUNT"),
    ],
)
def test_bad_env_values(env, var):
    with pytest.raises(ValueError, match=var):
        resolve_shard(*NO_FLAGS, environ=env)


def test_parse_tasks_per_node():
    assert parse_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert parse_tasks_per_node("4") == [4]
    with pytest.raises(ValueError, match="tasks-per-node"):
        parse_tasks_per_node("2(x)")


def test_refused_shard_flag_sees_argparse_abbreviations():
    assert refused_shard_flag(["--output_mask_dir", "o", "--num_pathway", "3"]) is None
    for arg in ("--num_nodes", "--node_id=1", "--num_c", "--chunk", "--node"):
        assert refused_shard_flag(["--x", arg]) == arg


def test_flags_win_over_the_environment():
    env = {**slurm_step_env(2, 1, 1, 0), **torchrun_env(1, 1, 0, 0), **array_env(1, 0, 1)}
    index, total, source = resolve_shard(3, 2, 2, 1, environ=env)
    assert (index, total) == (5, 6)
    assert source == "flags --num_nodes 3 --node_id 2 --num_chunks 2 --chunk_id 1"
    # only chunk flags, no launcher: a single node is implied
    assert resolve_shard(None, None, 4, 3, environ={})[:2] == (3, 4)
    # only node flags, no launcher: one chunk per node is implied
    assert resolve_shard(3, 1, None, None, environ={})[:2] == (1, 3)


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
#
# tools/slurm_vos_inference.sh with a fake `python` (records how each worker was started) and,
# where it fans out, a fake `srun` that plays the tasks of a step one after the other.  The
# real thing, on a real SLURM cluster, is tests/test_slurm_real.py.

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = REPO_ROOT / "tools" / "slurm_vos_inference.sh"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")

FAKE_PYTHON = """#!/usr/bin/env bash
# The launcher's planner is real Python; every worker is recorded instead of run.
if [[ "$1" != tools/vos_inference.py ]]; then exec "$REAL_PYTHON" "$@"; fi
f="$(mktemp "$CALLS_DIR/call.XXXXXX")"
{
  echo "args=$*"
  echo "cvd=${CUDA_VISIBLE_DEVICES-<unset>}"
  echo "threads=${OMP_NUM_THREADS-<unset>}"
  echo "node=${SLURM_NODEID-<unset>}"
  echo "tqdm=${TQDM_MININTERVAL-<unset>}"
} > "$f"
if [[ -n "${FAKE_OUTPUT:-}" ]]; then printf "$FAKE_OUTPUT"; printf 'to stderr\\n' >&2; fi
if [[ -n "${FAIL_CHUNK:-}" && "$*" == *"--chunk_id ${FAIL_CHUNK}"* ]]; then exit 3; fi
exit 0
"""


def _write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _launcher_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Clean environment: no SLURM/CUDA/torchrun/thread variables leak in from the test runner."""
    drop = {"CUDA_VISIBLE_DEVICES", "GPUS_PER_NODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "TQDM_MININTERVAL"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in drop}
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    fake_python = _write_exe(tmp_path / "fake_python", FAKE_PYTHON)
    env.update(PYTHON=str(fake_python), CALLS_DIR=str(calls), REAL_PYTHON=sys.executable)
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


def _calls(tmp_path: Path) -> list[dict[str, str]]:
    """One dict per worker started: args, cvd, threads, node, tqdm."""
    calls = []
    for path in sorted((tmp_path / "calls").iterdir()):
        calls.append(dict(line.split("=", 1) for line in path.read_text().splitlines()))
    return calls


def _shard_of(call: dict[str, str]) -> tuple[int, int]:
    """The (index, total) the recorded worker would run: its flags, as vos_inference reads them."""
    words = call["args"].split()
    flag = {name: int(words[words.index(name) + 1])
            for name in ("--num_nodes", "--node_id", "--num_chunks", "--chunk_id")}
    index, total, _ = resolve_shard(flag["--num_nodes"], flag["--node_id"], flag["--num_chunks"],
                                    flag["--chunk_id"], environ={})
    return index, total


def _assert_exact_cover(calls):
    """The workers' shards are 0..n-1 of the same n, each exactly once."""
    shards = sorted(_shard_of(c) for c in calls)
    total = shards[0][1]
    assert shards == [(i, total) for i in range(total)], shards


def _run_step(tmp_path, nnodes, per_node, *args, task_env=lambda node, local: {}, **extra):
    """Run the launcher once per task of an srun step (what `srun bash launcher.sh` does)."""
    results = []
    for node in range(nnodes):
        for local in range(per_node):
            env = _launcher_env(tmp_path, **slurm_step_env(nnodes, per_node, node, local), **extra)
            env.update(task_env(node, local))
            results.append(_run_launcher(env, *args))
    return results


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
    assert sorted(c["cvd"] for c in calls) == ["0", "1"]
    for c in calls:
        g = c["cvd"]
        assert c["args"] == (
            "tools/vos_inference.py --output_mask_dir out dir --score_thresh 0.5 "
            f"--num_nodes 1 --node_id 0 --num_chunks 2 --chunk_id {g}"
        )


@needs_bash
def test_launcher_maps_visible_devices_and_slurm_task(tmp_path):
    # Inside an srun step, one task per node: GPU count from SLURM_GPUS_ON_NODE, devices from
    # the CUDA_VISIBLE_DEVICES list SLURM assigned.
    env = _launcher_env(tmp_path, **slurm_step_env(3, 1, 2, 0), SLURM_GPUS_ON_NODE="2",
                        CUDA_VISIBLE_DEVICES="5,7")
    result = _run_launcher(env, "--x")
    assert result.returncode == 0, result.stderr
    calls = {c["cvd"]: c for c in _calls(tmp_path)}
    assert sorted(calls) == ["5", "7"]
    assert calls["7"]["args"].endswith("--num_nodes 3 --node_id 2 --num_chunks 2 --chunk_id 1")


@needs_bash
@pytest.mark.parametrize(
    "gpu_env",
    [
        # --gres=gpu:2 --ntasks-per-node=2: every task sees the node's two GPUs
        lambda node, local: {"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"},
        # --gpus-per-task=1: SLURM already gives each task its own GPU
        lambda node, local: {"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": str(local)},
        # no GPU binding at all, GPUS_PER_NODE=2 for the node
        lambda node, local: {"GPUS_PER_NODE": "2"},
    ],
    ids=["gres-per-node", "gpus-per-task", "gpus-per-node-override"],
)
def test_launcher_several_tasks_per_node(tmp_path, gpu_env):
    # `srun --ntasks-per-node=2 bash tools/slurm_vos_inference.sh` on 2 nodes: 4 tasks, one
    # worker each, each on its own GPU, 4 distinct shards (today: every shard runs twice).
    results = _run_step(tmp_path, 2, 2, "--x", task_env=gpu_env)
    for r in results:
        assert r.returncode == 0, r.stderr
    calls = _calls(tmp_path)
    assert len(calls) == 4
    for node in ("0", "1"):
        assert sorted(c["cvd"] for c in calls if c["node"] == node) == ["0", "1"]
    _assert_exact_cover(calls)


@needs_bash
def test_launcher_gpus_per_node_split_over_tasks(tmp_path):
    results = _run_step(tmp_path, 1, 2, "--x", GPUS_PER_NODE="4")
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    calls = _calls(tmp_path)
    assert sorted(c["cvd"] for c in calls) == ["0", "1", "2", "3"]
    _assert_exact_cover(calls)


@needs_bash
@pytest.mark.parametrize(
    "extra, word",
    [
        ({"GPUS_PER_NODE": "3"}, "3 GPU"),  # 3 GPUs cannot be split over 2 tasks
        ({"GPUS_PER_NODE": "1"}, "1 GPU"),  # fewer GPUs than tasks
        ({"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1,2"}, "CUDA_VISIBLE_DEVICES"),
    ],
)
def test_launcher_refuses_gpu_splits_it_cannot_make(tmp_path, extra, word):
    results = _run_step(tmp_path, 1, 2, "--x", **extra)
    assert all(r.returncode != 0 for r in results)
    assert word in results[0].stderr, results[0].stderr
    assert _calls(tmp_path) == []


@needs_bash
def test_launcher_uneven_tasks_per_node(tmp_path):
    # `sbatch --nodes=2 --ntasks=3 ...`: two tasks on node 0, one on node 1.
    tasks = [(0, 0), (0, 1), (1, 0)]

    def run(gpus):
        results = []
        for rank, (node, local) in enumerate(tasks):
            env = _launcher_env(tmp_path, **{**slurm_step_env(2, 2, node, local), "SLURM_PROCID": str(rank),
                                             "SLURM_NTASKS": "3", "SLURM_STEP_TASKS_PER_NODE": "2,1"},
                                **gpus(node, local))
            results.append(_run_launcher(env, "--x"))
        return results

    # --gres=gpu:2: splitting each node's 2 GPUs would give the tasks 1, 1 and 2 workers, and
    # so different shard numberings: refused
    results = run(lambda node, local: {"SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert all(r.returncode != 0 and "--gpus-per-task" in r.stderr for r in results)
    assert _calls(tmp_path) == []
    # --gpus-per-task=1: one worker per task everywhere
    results = run(lambda node, local: {"SLURM_GPUS_ON_NODE": str(2 - node), "SLURM_GPUS_PER_TASK": "1",
                                       "CUDA_VISIBLE_DEVICES": str(local)})
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    _assert_exact_cover(_calls(tmp_path))


def _fake_srun(tmp_path: Path) -> Path:
    """An srun that records its options and plays the job's tasks (SLURM_NNODES x
    SLURM_NTASKS_PER_NODE) one after the other, with the variables srun sets."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _write_exe(
        bin_dir / "srun",
        "#!/usr/bin/env bash\n"
        'opts=(); while [[ "$1" == --* ]]; do opts+=("$1"); shift; done\n'
        'echo "${opts[*]}" >> "$CALLS_DIR/../srun_opts.txt"\n'
        'nn=${SLURM_NNODES:-1}; per=${SLURM_NTASKS_PER_NODE:-1}\n'
        "for (( n = 0; n < nn; n++ )); do for (( t = 0; t < per; t++ )); do\n"
        "  SLURM_STEP_ID=0 SLURM_NODEID=$n SLURM_LOCALID=$t SLURM_PROCID=$(( n * per + t ))"
        " SLURM_NTASKS=$(( nn * per )) SLURM_STEP_TASKS_PER_NODE=\"${per}(x${nn})\" \"$@\" || exit $?\n"
        "done; done\n",
    )
    return bin_dir


@needs_bash
def test_launcher_fans_out_with_srun_under_sbatch(tmp_path):
    bin_dir = _fake_srun(tmp_path)
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2", SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="2",
                        SLURM_NNODES="2", SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1",
                        SLURM_CPUS_PER_TASK="8", SLURM_EXPORT_ENV="NONE")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    result = _run_launcher(env, "--y")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert sorted((c["node"], c["cvd"]) for c in calls) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    _assert_exact_cover(calls)
    # --export=NONE jobs: the step must get the batch script's environment (PATH, PYTHON);
    # since Slurm 22.05 srun does not inherit --cpus-per-task from sbatch
    opts = (tmp_path / "srun_opts.txt").read_text()
    assert "--export=ALL" in opts and "--cpus-per-task=8" in opts
    assert {c["threads"] for c in calls} == {"4"}  # 8 CPUs per task / 2 workers


@needs_bash
def test_launcher_array_tasks_share_one_numbering(tmp_path):
    # `sbatch --array=0-2 --nodes=2 tools/slurm_vos_inference.sh`: 3 array tasks x 2 nodes x
    # 2 GPUs = 12 shards (today every array task runs every video).
    bin_dir = _fake_srun(tmp_path)
    for task_id in range(3):
        env = _launcher_env(tmp_path, GPUS_PER_NODE="2", SLURM_JOB_ID=str(50 + task_id),
                            SLURM_NNODES="2", SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1",
                            **array_env(task_id, 0, 2))
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        result = _run_launcher(env, "--y")
        assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert len(calls) == 12
    _assert_exact_cover(calls)


@needs_bash
@pytest.mark.parametrize("flags", [["--num_chunks", "4"], ["--chunk_id=1"], ["--num_n", "2"], ["--node", "0"]])
def test_launcher_refuses_the_users_shard_flags(tmp_path, flags):
    # The launcher assigns shards itself; a user's flag would be overridden (argparse keeps the
    # last value) or would make every worker run the same shard.
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2")
    result = _run_launcher(env, "--output_mask_dir", "o", *flags)
    assert result.returncode != 0
    assert flags[0].split("=")[0] in result.stderr and "--video_list_file" in result.stderr
    assert _calls(tmp_path) == []


@needs_bash
def test_launcher_labels_worker_lines_and_keeps_progress_bars_out(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2",
                        FAKE_OUTPUT=r"videos:   0%%\rvid_a:  50%%\r      \r\033[Avid_a: 100%%\ndone\n")
    result = _run_launcher(env, "--x")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\033" not in result.stdout
    worker_lines = [line for line in result.stdout.splitlines() if "vid_a" in line or "done" == line[-4:]]
    labels = {line.split("]")[0] + "]" for line in worker_lines}
    assert labels == {"[shard 0/2 gpu 0]", "[shard 1/2 gpu 1]"}, result.stdout
    for label in labels:
        assert f"{label} vid_a:  50%" in result.stdout and f"{label} done" in result.stdout
        assert f"{label} to stderr" in result.stderr
    assert not [line for line in result.stdout.splitlines() if not line.strip()]
    # tqdm (>= 4.66) reads TQDM_MININTERVAL: a progress line every 30 s at most, not every 0.1 s
    assert {c["tqdm"] for c in _calls(tmp_path)} == {"30"}


@needs_bash
def test_launcher_sets_threads_from_cpus_per_task(tmp_path):
    env = _launcher_env(tmp_path, **slurm_step_env(1, 1, 0, 0), GPUS_PER_NODE="2",
                        SLURM_CPUS_PER_TASK="6")
    result = _run_launcher(env, "--x")
    assert result.returncode == 0, result.stderr
    assert {c["threads"] for c in _calls(tmp_path)} == {"3"}
    env["OMP_NUM_THREADS"] = "1"  # the user's own setting wins
    shutil.rmtree(tmp_path / "calls")
    (tmp_path / "calls").mkdir()
    assert _run_launcher(env, "--x").returncode == 0
    assert {c["threads"] for c in _calls(tmp_path)} == {"1"}


@needs_bash
def test_launcher_reports_failure(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="2", FAIL_CHUNK="1")
    result = _run_launcher(env)
    assert result.returncode != 0
    assert "chunk 1 failed" in result.stderr
    assert len(_calls(tmp_path)) == 2  # chunk 0 still ran


@needs_bash
def test_launcher_rejects_bad_gpu_count(tmp_path):
    env = _launcher_env(tmp_path, GPUS_PER_NODE="two")
    result = _run_launcher(env)
    assert result.returncode != 0
    assert "GPUS_PER_NODE" in result.stderr
    assert _calls(tmp_path) == []
