"""Deterministic work sharding for multi-node / multi-GPU VOS inference.

Every process of a distributed evaluation run computes, on its own and
without talking to the others, which videos it owns.  This only works if all
processes agree on (a) the ordering of the video list and (b) their own shard
``(index, total)``.  This module pins both down:

* ``select_shard`` always sorts the names first, so the on-disk listing order
  (which differs between file systems) never matters.
* ``resolve_shard`` turns command-line flags or the launcher's environment
  (SLURM or torchrun) into one ``(index, total)`` pair, and rejects anything
  ambiguous instead of silently processing the wrong subset.

Shards are contiguous runs of the sorted list so that the shard a video ended
up in is easy to reason about when re-running failed parts by hand.
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")

__all__ = ["split_contiguous", "shard_index", "resolve_shard", "select_shard"]


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
) -> tuple[int, int, str] | None:
    """Read a (rank, world size) pair from the environment, validated.

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
    return rank, size, f"{rank_var}={rank} of {size_var}={size}"


def resolve_shard(
    num_nodes: int | None,
    node_id: int | None,
    num_chunks: int | None,
    chunk_id: int | None,
    environ: Mapping[str, str],
) -> tuple[int, int, str]:
    """Decide which shard this process owns: ``(index, total, source)``.

    Precedence:

    1. If any of the four flags was given (not ``None``), the flags win and the
       environment is ignored; missing flags default to a single node/chunk
       (``num_nodes=1, node_id=0, num_chunks=1, chunk_id=0``).  Explicit flags
       must beat the environment because the multi-node launcher runs one
       process per GPU inside a single SLURM task, where ``SLURM_PROCID``
       describes the node, not the process.
    2. Otherwise ``SLURM_PROCID`` / ``SLURM_NTASKS`` (``srun`` one task per GPU).
    3. Otherwise ``RANK`` / ``WORLD_SIZE`` (``torchrun``).
    4. Otherwise a single shard ``(0, 1)``.

    ``source`` is a human-readable description for logs, so that a wrong
    split can be traced back to where it came from.

    Note: inside an ``sbatch`` script (outside ``srun``) SLURM may already set
    ``SLURM_PROCID=0``; run the script through ``srun`` or pass explicit flags.
    """
    flags = (num_nodes, node_id, num_chunks, chunk_id)
    if any(v is not None for v in flags):
        nn = 1 if num_nodes is None else num_nodes
        ni = 0 if node_id is None else node_id
        nc = 1 if num_chunks is None else num_chunks
        ci = 0 if chunk_id is None else chunk_id
        index, total = shard_index(nn, ni, nc, ci)
        source = (
            f"flags --num_nodes {nn} --node_id {ni} "
            f"--num_chunks {nc} --chunk_id {ci}"
        )
        return index, total, source

    for rank_var, size_var in (("SLURM_PROCID", "SLURM_NTASKS"), ("RANK", "WORLD_SIZE")):
        pair = _env_pair(environ, rank_var, size_var)
        if pair is not None:
            return pair

    return 0, 1, "default (single shard: no flags, SLURM or torchrun variables)"


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
