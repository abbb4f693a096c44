"""What a finished output holds, by content: each file's size and SHA-256.

The dataset tool's per-video ``.complete`` records and the video tool's records of its
outputs keep ``describe_files``' table; ``changed_file`` checks it against the disk, so a
PNG zeroed or bit-flipped in place (same size) is never taken for a finished result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from sam2long.engine.file_hashes import file_sha256


def describe_files(folder: str, names: Iterable[str]) -> dict[str, dict]:
    """{name: {"size", "sha256"}} of the files `names` (relative to `folder`)."""
    table = {}
    for name in names:
        path = os.path.join(folder, name)
        table[name] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    return table


def changed_file(folder: str, table: Mapping) -> str | None:
    """The first file of `table` that is missing or differs from its record, else None.
    Sizes are compared first, so the common case (a missing or truncated file) costs no
    read."""
    if not isinstance(table, Mapping):
        return folder
    for name, entry in table.items():
        path = os.path.join(folder, name)
        if not isinstance(entry, Mapping) or not os.path.isfile(path) \
                or os.path.getsize(path) != entry.get("size"):
            return path
    for name, entry in table.items():
        path = os.path.join(folder, name)
        if file_sha256(path) != entry.get("sha256"):
            return path
    return None


def visible_files(folder: str) -> set[str]:
    """Every non-hidden file under `folder`, relative to it (records and locks are hidden)."""
    found = set()
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(parent, folder)
        for name in files:
            if not name.startswith("."):
                found.add(name if rel == "." else os.path.join(rel, name))
    return found
