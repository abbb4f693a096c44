"""Deterministic work sharding for multi-node / multi-GPU VOS inference.

Every process of a distributed evaluation run computes, on its own and
without talking to the others, which videos it owns.  This only works if all
processes agree on (a) the ordering of the video list and (b) their own shard
``(index, total)``.  This module pins both down:

* ``select_shard`` always sorts the names first, so the on-disk listing order
  (which differs between file systems) never matters.
* ``resolve_shard`` turns command-line flags or the launcher's environment
  (torchrun, an srun step, a SLURM array) into one ``(index, total)`` pair by
  one documented rule (``PRECEDENCE``), and rejects anything partial or
  ambiguous instead of silently processing the wrong subset.

Shards are contiguous runs of the sorted list so that the shard a video ended
up in is easy to reason about when re-running failed parts by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

__all__ = [
    "PRECEDENCE", "SHARD_FLAGS", "Level", "StepLayout", "split_contiguous", "shard_index",
    "torchrun_layout", "slurm_step_layout", "slurm_array_level", "parse_tasks_per_node",
    "resolve_shard", "select_shard",
]

SHARD_FLAGS = ("--num_nodes", "--node_id", "--num_chunks", "--chunk_id")

# The one rule, as `tools/vos_inference.py --help` and the README state it.
PRECEDENCE = (
    "Videos (sorted) are split into num_nodes x num_chunks contiguous shards; this process runs "
    "shard node_id * num_chunks + chunk_id. Where the shard comes from, first match wins: "
    "(1) flags. A level given by its count alone (--num_nodes N, --num_chunks G) takes its index "
    "from the launcher when that has exactly N nodes / G processes per node (torchrun "
    "GROUP_RANK / LOCAL_RANK, srun SLURM_NODEID / SLURM_LOCALID; a SLURM array counts as more "
    "nodes), and is refused otherwise; an index without its count is refused; a level without "
    "flags comes from the launcher, or is 1. (2) torchrun RANK / WORLD_SIZE. (3) srun "
    "SLURM_PROCID / SLURM_NTASKS, only inside a step (SLURM_STEP_ID set): the variables a batch "
    "script or salloc shell inherits from its allocation never shard. A SLURM array "
    "(SLURM_ARRAY_TASK_ID, indices A-B[:S]) multiplies (2) or (3) on the outside, or shards "
    "alone. (4) one shard. Every process prints its shard and where it came from."
)


def split_contiguous(items: Sequence[T], num_chunks: int) -> list[list[T]]:
    """Split ``items`` into ``num_chunks`` contiguous, near-equal chunks.

    The first ``len(items) % num_chunks`` chunks get one extra item, so chunk
    sizes never differ by more than one.  Exactly ``num_chunks`` chunks are
    returned even when there are fewer items than chunks (the tail chunks are
    then empty): callers index the result by shard id and must not go out of
    range just because a dataset is small.
    """
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    items = list(items)
    base, extra = divmod(len(items), num_chunks)
    chunks: list[list[T]] = []
    start = 0
    for i in range(num_chunks):
        size = base + (1 if i < extra else 0)
        chunks.append(items[start : start + size])
        start += size
    return chunks


def shard_index(
    num_nodes: int, node_id: int, num_chunks: int, chunk_id: int
) -> tuple[int, int]:
    """Flatten a (node, chunk-on-node) pair into a global ``(index, total)``.

    Node-major order (``index = node_id * num_chunks + chunk_id``) keeps the
    videos of one node contiguous in the sorted list.
    """
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    if num_chunks < 1:
        raise ValueError(f"num_chunks must be >= 1, got {num_chunks}")
    if not 0 <= node_id < num_nodes:
        raise ValueError(
            f"node_id must be in [0, {num_nodes - 1}] for num_nodes={num_nodes}, "
            f"got {node_id}"
        )
    if not 0 <= chunk_id < num_chunks:
        raise ValueError(
            f"chunk_id must be in [0, {num_chunks - 1}] for "
            f"num_chunks={num_chunks}, got {chunk_id}"
        )
    return node_id * num_chunks + chunk_id, num_nodes * num_chunks


@dataclass(frozen=True)
class Level:
    """One level of a launch: ``index`` of ``size`` (nodes, processes on a node, array tasks),
    and ``source``, the words that say where the pair was read."""

    size: int
    index: int
    source: str


@dataclass(frozen=True)
class StepLayout:
    """What a launcher (torchrun or an srun step) says about this process.

    ``rank`` numbers all launched processes.  ``node`` and ``local`` split it into nodes and
    processes on a node; either is ``None`` when the launcher does not say (``why`` tells).
    """

    rank: Level
    node: Level | None
    local: Level | None
    why: str = ""


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    """Read an integer environment variable; ``None`` if unset or empty.

    Empty values are treated as unset because ``export VAR=`` is a common way
    of "clearing" a variable in job scripts.
    """
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer"
        ) from None


def _env_pair(
    environ: Mapping[str, str], rank_var: str, size_var: str
) -> Level | None:
    """Read a (rank, size) pair from the environment, validated.

    Returns ``None`` when the rank variable is absent (launcher not in use).
    A rank without its size is an error: guessing the size would make every
    process think it owns a different fraction of the data.
    """
    rank = _env_int(environ, rank_var)
    if rank is None:
        return None
    size = _env_int(environ, size_var)
    if size is None:
        raise ValueError(
            f"environment variable {rank_var}={rank} is set but {size_var} is "
            f"missing; cannot tell how many shards there are"
        )
    if size < 1:
        raise ValueError(f"environment variable {size_var}={size} must be >= 1")
    if not 0 <= rank < size:
        raise ValueError(
            f"environment variable {rank_var}={rank} is out of range for "
            f"{size_var}={size} (expected 0..{size - 1})"
        )
    return Level(size, rank, f"{rank_var}={rank} of {size_var}={size}")


def _first_set(environ: Mapping[str, str], *names: str) -> str:
    """The first of ``names`` that is set (non-empty) in ``environ``, else the last name."""
    for name in names:
        if environ.get(name, "").strip():
            return name
    return names[-1]


def torchrun_layout(environ: Mapping[str, str]) -> StepLayout | None:
    """torchrun's ``RANK`` / ``WORLD_SIZE``, split by ``GROUP_RANK`` and ``LOCAL_RANK`` /
    ``LOCAL_WORLD_SIZE``; ``None`` without ``RANK``."""
    rank = _env_pair(environ, "RANK", "WORLD_SIZE")
    if rank is None:
        return None
    rank = Level(rank.size, rank.index, f"torchrun {rank.source}")
    if _env_int(environ, "LOCAL_RANK") is None or _env_int(environ, "LOCAL_WORLD_SIZE") is None:
        return StepLayout(rank, None, None, "RANK/WORLD_SIZE are set without "
                          "LOCAL_RANK/LOCAL_WORLD_SIZE")
    local = _env_pair(environ, "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    if rank.size % local.size:
        return StepLayout(rank, None, None, f"WORLD_SIZE={rank.size} is not a multiple of "
                          f"LOCAL_WORLD_SIZE={local.size}")
    nodes = rank.size // local.size
    group = _env_int(environ, "GROUP_RANK")
    group = rank.index // local.size if group is None else group
    if not 0 <= group < nodes or rank.index != group * local.size + local.index:
        return StepLayout(rank, None, None, f"RANK={rank.index} is not GROUP_RANK={group} x "
                          f"LOCAL_WORLD_SIZE={local.size} + LOCAL_RANK={local.index}")
    return StepLayout(
        rank,
        Level(nodes, group, f"torchrun GROUP_RANK={group} of {nodes} nodes"),
        Level(local.size, local.index, f"torchrun {local.source}"),
    )


_TASKS_PER_NODE = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def parse_tasks_per_node(value: str) -> list[int]:
    """SLURM's compressed task counts, ``"2(x3),1"`` -> ``[2, 2, 2, 1]``."""
    counts: list[int] = []
    for part in value.split(","):
        m = _TASKS_PER_NODE.match(part.strip())
        if not m:
            raise ValueError(f"cannot read the tasks-per-node list {value!r}")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def slurm_step_layout(environ: Mapping[str, str]) -> StepLayout | None:
    """The srun step this process is a task of; ``None`` outside a step.

    ``SLURM_STEP_ID`` is what tells a step's task from a batch script or an salloc shell:
    those inherit ``SLURM_PROCID=0`` and the allocation's ``SLURM_NTASKS`` but are a single
    process, and sharding by them would silently drop all but one share of the videos.
    """
    if _env_int(environ, _first_set(environ, "SLURM_STEPID", "SLURM_STEP_ID")) is None:
        return None
    rank = _env_pair(environ, "SLURM_PROCID", _first_set(environ, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"))
    if rank is None:
        raise ValueError("SLURM_STEP_ID is set but SLURM_PROCID is not: cannot tell this "
                         "task's rank in the srun step")
    rank = Level(rank.size, rank.index, f"srun {rank.source}")
    node = _env_pair(environ, "SLURM_NODEID", _first_set(environ, "SLURM_STEP_NUM_NODES", "SLURM_NNODES"))
    if node is None:
        return StepLayout(rank, None, None, "SLURM_NODEID is not set")
    node = Level(node.size, node.index, f"srun {node.source}")
    local_id = _env_int(environ, "SLURM_LOCALID")
    per_node_var = _first_set(environ, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    per_node_raw = environ.get(per_node_var, "").strip()
    if local_id is None or not per_node_raw:
        return StepLayout(rank, node, None, f"SLURM_LOCALID or {per_node_var} is not set")
    counts = parse_tasks_per_node(per_node_raw)
    if len(set(counts)) != 1:
        return StepLayout(rank, node, None, f"the step's tasks per node are uneven "
                          f"({per_node_var}={per_node_raw})")
    if not 0 <= local_id < counts[0]:
        raise ValueError(f"SLURM_LOCALID={local_id} is out of range for {counts[0]} tasks per "
                         f"node ({per_node_var}={per_node_raw})")
    return StepLayout(rank, node, Level(counts[0], local_id, f"srun SLURM_LOCALID={local_id} of "
                                        f"{counts[0]} tasks per node ({per_node_var}={per_node_raw})"))


def slurm_array_level(environ: Mapping[str, str]) -> Level | None:
    """This SLURM array task's position among the array's tasks; ``None`` outside arrays.

    Only ranges (``--array=A-B`` or ``A-B:S``, any ``%`` throttle) can be numbered from the
    environment: for a list such as ``--array=1,3,7`` a task cannot tell its position.
    """
    task = _env_int(environ, "SLURM_ARRAY_TASK_ID")
    if task is None:
        return None
    lo, hi, count = (_env_int(environ, f"SLURM_ARRAY_TASK_{k}") for k in ("MIN", "MAX", "COUNT"))
    step = _env_int(environ, "SLURM_ARRAY_TASK_STEP") or 1
    if lo is None or hi is None or count is None:
        raise ValueError(f"SLURM_ARRAY_TASK_ID={task} is set but SLURM_ARRAY_TASK_MIN, _MAX or "
                         f"SLURM_ARRAY_TASK_COUNT is not: cannot tell how many array tasks share "
                         f"the videos")
    if step < 1 or count != len(range(lo, hi + 1, step)) or (task - lo) % step or not lo <= task <= hi:
        raise ValueError(
            f"SLURM array task {task} of indices {lo}..{hi} step {step} with "
            f"SLURM_ARRAY_TASK_COUNT={count}: the indices are not a plain range, so a task cannot "
            f"tell its position; submit --array=A-B or --array=A-B:S (a % throttle is fine), "
            f"or give each task --num_nodes/--node_id")
    position = (task - lo) // step
    return Level(count, position, f"SLURM array task SLURM_ARRAY_TASK_ID={task} "
                 f"(position {position} of SLURM_ARRAY_TASK_COUNT={count})")


def _times(outer: Level | None, inner: Level) -> Level:
    """``inner`` repeated in every ``outer`` index (outer-major numbering)."""
    if outer is None:
        return inner
    return Level(outer.size * inner.size, outer.index * inner.size + inner.index,
                 f"{inner.source}, in {outer.source}")


def _launcher(environ: Mapping[str, str]) -> tuple[StepLayout | None, list[str]]:
    """torchrun if present, else an srun step; plus notes on variables seen but not used."""
    notes: list[str] = []
    layout = torchrun_layout(environ)
    in_step = _env_int(environ, _first_set(environ, "SLURM_STEPID", "SLURM_STEP_ID")) is not None
    if layout is not None:
        if in_step or "SLURM_PROCID" in environ:
            notes.append("SLURM_PROCID/SLURM_NTASKS ignored: torchrun's ranks are the processes")
        return layout, notes
    if in_step:
        return slurm_step_layout(environ), notes
    if environ.get("SLURM_PROCID", "").strip():
        notes.append("SLURM_PROCID/SLURM_NTASKS ignored: inherited from the allocation, not set "
                     "by an srun step (no SLURM_STEP_ID)")
    return None, notes


def _complete(
    count_flag: str, count: int | None, index_flag: str, index: int | None,
    env: Level | None, unknown: str, what: str,
) -> Level:
    """One level (nodes, or processes per node) from its flags, completed from ``env``.

    ``env`` is the launcher's value for the level, ``None`` when there is no launcher
    (``unknown`` empty) or when the launcher does not say (``unknown`` tells why).
    """
    if count is not None and index is not None:
        return Level(count, index, f"{count_flag} {count} {index_flag} {index}")
    if index is not None:
        raise ValueError(f"{index_flag} {index} is given without {count_flag}: add {count_flag} "
                         f"(the number of {what})")
    if count is not None:
        if env is not None and env.size == count:
            return Level(count, env.index, f"{count_flag} {count}, {index_flag} {env.index} from "
                         f"{env.source}")
        if env is not None:
            raise ValueError(f"{count_flag} {count} is given without {index_flag}, and the "
                             f"launcher has {env.size} {what} ({env.source}), not {count}: add "
                             f"{index_flag} (0..{count - 1}) or make {count_flag} match")
        reason = f" ({unknown})" if unknown else ""
        raise ValueError(f"{count_flag} {count} is given without {index_flag}, and no launcher "
                         f"says which of the {count} {what} this process is{reason}: add "
                         f"{index_flag} (0..{count - 1})")
    if env is not None:
        return Level(env.size, env.index, f"{count_flag} {env.size} {index_flag} {env.index} "
                     f"from {env.source}")
    if unknown:
        raise ValueError(f"cannot tell which of the launcher's {what} this process is "
                         f"({unknown}): pass {count_flag} and {index_flag}")
    return Level(1, 0, f"{count_flag} 1 {index_flag} 0 (no launcher)")


def resolve_shard(
    num_nodes: int | None,
    node_id: int | None,
    num_chunks: int | None,
    chunk_id: int | None,
    environ: Mapping[str, str],
) -> tuple[int, int, str]:
    """Decide which shard this process owns: ``(index, total, source)``.

    The rule is ``PRECEDENCE`` (also in ``--help`` and the README).  In short: complete
    flags win; a count flag alone is completed from the launcher only when the launcher
    has exactly that many; torchrun beats srun step variables (torchrun started by srun
    sees both, and its ranks are the processes); SLURM variables inherited from an
    allocation (no ``SLURM_STEP_ID``) never shard; a SLURM array multiplies on the
    outside.  Flags that would leave launched processes without a shard of their own
    (fewer shards than processes) are refused.

    ``source`` is a human-readable description for logs, so that a wrong
    split can be traced back to where it came from.
    """
    layout, notes = _launcher(environ)
    array = slurm_array_level(environ)
    flags = (num_nodes, node_id, num_chunks, chunk_id)

    if all(v is None for v in flags):
        if layout is None and array is None:
            level = Level(1, 0, "single shard: no shard flags, torchrun, srun step or SLURM array")
        else:
            level = _times(array, layout.rank) if layout is not None else array
        index, total, source = level.index, level.size, level.source
    else:
        if layout is None:
            node_env, node_unknown = array, ""
            local_env, local_unknown = None, ""
        else:
            node_env = _times(array, layout.node) if layout.node is not None else None
            node_unknown = "" if layout.node is not None else layout.why
            local_env, local_unknown = layout.local, ("" if layout.local is not None else layout.why)
        node = _complete("--num_nodes", num_nodes, "--node_id", node_id, node_env, node_unknown, "nodes")
        local = _complete("--num_chunks", num_chunks, "--chunk_id", chunk_id, local_env,
                          local_unknown, "processes per node")
        index, total = shard_index(node.size, node.index, local.size, local.index)
        launched = (array.size if array is not None else 1) * (layout.rank.size if layout else 1)
        if total < launched:
            by = " x ".join(x.source for x in (array, layout.rank if layout else None) if x)
            raise ValueError(f"the shard flags describe {total} shards but {launched} processes "
                             f"were launched ({by}): at least two would run the same videos; "
                             f"give each process its own --node_id/--chunk_id or drop the flags")
        if all(v is not None for v in flags):
            source = f"flags {node.source} {local.source}"
        else:
            source = f"flags and launcher: {node.source}; {local.source}"
    if notes and not all(v is not None for v in flags):
        source += " (" + "; ".join(notes) + ")"
    return index, total, source


def select_shard(video_names: Sequence[str], index: int, total: int) -> list[str]:
    """Return the videos owned by shard ``index`` out of ``total``.

    Names are sorted (plain ``sorted``) before splitting so that every process
    sees the same order regardless of how the list was produced.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if not 0 <= index < total:
        raise ValueError(f"index must be in [0, {total - 1}], got {index}")
    return split_contiguous(sorted(video_names), total)[index]
