#!/usr/bin/env python
"""Plan one task of tools/slurm_vos_inference.sh: its place in the shard numbering, its GPUs
and its threads.  The launcher runs this once per task and evals what it prints:

    task_index, task_total  this task among all the launcher's tasks: SLURM array position x
                            srun step task (SLURM_PROCID of SLURM_NTASKS); 0 of 1 outside both
    devices=(...)           one CUDA_VISIBLE_DEVICES value per worker; a worker per GPU
    threads                 OMP_NUM_THREADS for each worker
    where                   the node's name for log labels ("" outside SLURM)
    summary                 one line for the log saying where each number came from

Worker g of the task runs shard ``task_index * len(devices) + g`` of ``task_total *
len(devices)``, passed to tools/vos_inference.py as complete flags.  Every task computes its
plan alone, so the plan depends only on what is the same for all of a job's tasks (the
numbers of tasks and GPUs per node), or refuses.

``--check_args`` only checks the tools/vos_inference.py arguments: the launcher assigns the
shards, so a user's shard flag (which argparse would let the launcher's override, or which
would make every worker run the same shard) is refused.  Errors exit with status 2.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Callable, Mapping, Sequence


from sam2long.runtime.sharding import (
    SHARD_FLAGS,
    parse_tasks_per_node,
    slurm_array_level,
    slurm_step_layout,
)


class PlanError(ValueError):
    """The task cannot be planned; the message says what to change."""


def refused_shard_flag(args: Sequence[str]) -> str | None:
    """The first argument that argparse would read as a shard flag (also abbreviated, as
    ``--num_c 4`` or ``--chunk_id=1``), else ``None``."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if len(name) > 2 and name.startswith("--") and any(f.startswith(name) for f in SHARD_FLAGS):
            return arg
    return None


def _int(environ: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < minimum:
        raise PlanError(f"{name}={raw!r} is not an integer >= {minimum}")
    return int(raw)


def task_slot(environ: Mapping[str, str]) -> tuple[int, int, str]:
    """(index, total, source) of this task among all the launcher's tasks.

    The srun step's tasks (SLURM_PROCID / SLURM_NTASKS, only inside a step) inside the SLURM
    array's tasks; torchrun variables are not the launcher's and are not read.
    """
    step = slurm_step_layout(environ)
    array = slurm_array_level(environ)
    index, total, parts = 0, 1, []
    if array is not None:
        index, total = array.index, array.size
        parts.append(array.source)
    if step is not None:
        index, total = index * step.rank.size + step.rank.index, total * step.rank.size
        parts.insert(0, step.rank.source)
    return index, total, ", in ".join(parts) or "one task: no srun step, no SLURM array"


def tasks_on_node(environ: Mapping[str, str]) -> tuple[int, int, bool]:
    """(this task's index on its node, tasks on its node, tasks per node uneven?)."""
    if slurm_step_layout(environ) is None:
        return 0, 1, False
    var = "SLURM_STEP_TASKS_PER_NODE" if environ.get("SLURM_STEP_TASKS_PER_NODE") else "SLURM_TASKS_PER_NODE"
    counts = parse_tasks_per_node(environ[var]) if environ.get(var) else [1]
    node = _int(environ, "SLURM_NODEID", 0) or 0
    here = counts[node] if node < len(counts) else counts[-1]
    local = _int(environ, "SLURM_LOCALID", 0) or 0
    if local >= here:
        raise PlanError(f"SLURM_LOCALID={local} but {var}={environ.get(var)} gives this node {here} task(s)")
    return local, here, len(set(counts)) > 1


def nvidia_smi_count() -> int:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU") for line in out.splitlines())


def gpu_plan(
    environ: Mapping[str, str], count_gpus: Callable[[], int] = nvidia_smi_count
) -> tuple[list[str], str]:
    """The CUDA_VISIBLE_DEVICES value of each worker of this task, and where it came from.

    A list SLURM gives per task (``--gpus-per-task``, ``--gpu-bind``: fewer entries than
    SLURM_GPUS_ON_NODE) is the task's own.  A node's GPUs (``--gres=gpu:N``,
    SLURM_GPUS_ON_NODE, nvidia-smi, or the GPUS_PER_NODE override), which every task on the
    node sees alike, are split evenly over the node's tasks by SLURM_LOCALID.
    """
    local, here, uneven = tasks_on_node(environ)
    raw_cvd = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    cvd = [d.strip() for d in raw_cvd.split(",")] if raw_cvd else None
    override = _int(environ, "GPUS_PER_NODE", 1)
    on_node = _int(environ, "SLURM_GPUS_ON_NODE", 0)
    if override is None and environ.get("SLURM_GPUS", "").strip() and \
            (_int(environ, "SLURM_JOB_NUM_NODES", 1) or _int(environ, "SLURM_NNODES", 1) or 1) > 1 and \
            not (environ.get("SLURM_GPUS_PER_NODE") or environ.get("SLURM_GPUS_PER_TASK")):
        raise PlanError(f"--gpus={environ['SLURM_GPUS']} over several nodes may give the nodes "
                        f"different GPU counts, and then shard numbers: ask for --gpus-per-node "
                        f"(or --gres=gpu:N) or --gpus-per-task instead")

    def split(devices: list[str], source: str) -> tuple[list[str], str]:
        """This task's even share of the node's GPUs (all of them for a single task)."""
        n = len(devices)
        if uneven:
            raise PlanError(f"the node's {n} GPU(s) ({source}) would be shared by numbers of "
                            f"tasks that differ between nodes, so tasks would drive different "
                            f"GPU counts and disagree on the shard numbering: use "
                            f"--ntasks-per-node or --gpus-per-task")
        if here == 1:
            return devices, source
        if n < here or n % here:
            raise PlanError(f"{n} GPU(s) on this node ({source}) cannot be split evenly over its "
                            f"{here} tasks: use a --ntasks-per-node that divides {n}, "
                            f"--gpus-per-task, or GPUS_PER_NODE")
        per = n // here
        return devices[local * per:(local + 1) * per], \
            f"{source}, split over {here} tasks per node: SLURM_LOCALID={local} takes {per}"

    if override is not None:
        if cvd is None:
            return split([str(i) for i in range(override)], f"GPUS_PER_NODE={override}")
        if len(cvd) >= override:
            return split(cvd[:override], f"GPUS_PER_NODE={override} of CUDA_VISIBLE_DEVICES={raw_cvd}")
        if here > 1 and len(cvd) * here == override:
            return cvd, f"GPUS_PER_NODE={override}; CUDA_VISIBLE_DEVICES={raw_cvd} is this task's share"
        raise PlanError(f"GPUS_PER_NODE={override} but CUDA_VISIBLE_DEVICES={raw_cvd} lists only "
                        f"{len(cvd)} GPU(s)")
    if cvd is not None:
        if on_node is not None and len(cvd) > on_node:
            raise PlanError(f"CUDA_VISIBLE_DEVICES={raw_cvd} lists {len(cvd)} GPUs but "
                            f"SLURM_GPUS_ON_NODE={on_node}: set GPUS_PER_NODE to say how many to use")
        per_task = bool(environ.get("SLURM_GPUS_PER_TASK", "").strip()) or \
            (on_node is not None and len(cvd) < on_node)
        if per_task:
            return cvd, f"CUDA_VISIBLE_DEVICES={raw_cvd} (this task's)"
        return split(cvd, f"CUDA_VISIBLE_DEVICES={raw_cvd}" + (" (the node's)" if here > 1 else ""))
    if on_node:
        return split([str(i) for i in range(on_node)], f"SLURM_GPUS_ON_NODE={on_node}")
    found = count_gpus()
    if found < 1:
        raise PlanError("no GPU found (no CUDA_VISIBLE_DEVICES or SLURM_GPUS_ON_NODE, and "
                        "nvidia-smi lists none): set GPUS_PER_NODE to override")
    return split([str(i) for i in range(found)], f"nvidia-smi lists {found}")


def thread_plan(environ: Mapping[str, str], workers: int) -> tuple[str, str]:
    """OMP_NUM_THREADS for each worker: the task's CPUs (SLURM_CPUS_PER_TASK, else its CPU
    affinity) shared evenly; the user's own OMP_NUM_THREADS wins.  A fixed count also fixes
    the CPU results, which depend on the thread count."""
    own = environ.get("OMP_NUM_THREADS", "").strip()
    if own:
        return own, "OMP_NUM_THREADS set by the user"
    cpus = _int(environ, "SLURM_CPUS_PER_TASK", 1)
    source = f"SLURM_CPUS_PER_TASK={cpus}"
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
        source = f"{cpus} CPU(s) in this task's affinity"
        if environ.get("SLURM_JOB_ID"):
            source += " (no --cpus-per-task: pass it, a few per GPU)"
    threads = max(1, cpus // workers)
    note = f" - {workers} workers share {cpus} CPU(s)" if cpus < workers else ""
    return str(threads), f"{source} / {workers} worker(s){note}"


def plan(environ: Mapping[str, str], count_gpus: Callable[[], int] = nvidia_smi_count) -> dict:
    index, total, slot_source = task_slot(environ)
    devices, gpu_source = gpu_plan(environ, count_gpus)
    threads, thread_source = thread_plan(environ, len(devices))
    where = environ.get("SLURMD_NODENAME", "") if environ.get("SLURM_JOB_ID") else ""
    summary = (f"task {index} of {total} ({slot_source}) on {where or 'this machine'}: "
               f"{len(devices)} worker(s) on GPU(s) {','.join(devices)} ({gpu_source}); "
               f"OMP_NUM_THREADS={threads} ({thread_source})")
    return {"task_index": index, "task_total": total, "devices": devices, "threads": threads,
            "where": where, "summary": summary}


def to_shell(values: dict) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, list):
            lines.append(f"{key}=({' '.join(shlex.quote(str(v)) for v in value)})")
        else:
            lines.append(f"{key}={shlex.quote(str(value))}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check_only = bool(argv) and argv[0] == "--check_args"
    if check_only:
        argv.pop(0)
    if argv[:1] == ["--"]:
        argv.pop(0)
    flag = refused_shard_flag(argv)
    if flag is not None:
        print(f"error: {flag} is a shard flag, but the launcher gives each worker its own shard "
              f"({' '.join(SHARD_FLAGS)}) and cannot take yours; to run part of the videos, "
              f"list them in a file for --video_list_file", file=sys.stderr)
        return 2
    if check_only:
        return 0
    try:
        print(to_shell(plan(environ)))
    except (PlanError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
