"""SHA-256 of the large files a run checks (checkpoints, configs, graphs), remembered across runs.

Each run checks its model and its graphs by hash: the engine manifest, `--backend auto`'s
cache key, the dataset tool's records. Reading them takes 0.3 s of every tiny run's start
and 0.7 s of base+'s on a 2-core CPU (checkpoint and graphs: 340 and 670 MB).
`known_sha256` keeps the hashes in the user's cache, keyed by the file's identity: its
path, device, inode, size, and modification and change times to the nanosecond. An
unchanged file is not read again; a write, a replacement, a `touch` or a `cp -p` onto it
gives it a new identity (the change time cannot be set back), and it is hashed anew.

As git does for its index, a hash taken while the file was young (its times within
`SETTLED_SECONDS` of the hashing) is not kept, not even by the run that took it: a second
write within one tick of the file system's clock would leave the times as they were.
`file_sha256` always reads the file: for outputs checked right after they are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from sam2long.resources import cache_dir

STORE_NAME = "file_hashes.json"
SETTLED_SECONDS = 2.0
MAX_ENTRIES = 256  # the most recently hashed files are kept

_lock = threading.Lock()
_memory: dict[str, dict] = {}


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, read in full."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _identity(path: str) -> dict:
    st = os.stat(path)
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def store_path() -> Path:
    return cache_dir() / STORE_NAME


def _load_store() -> dict:
    try:
        with open(store_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, unreadable or damaged: the files are hashed again


def _save_entry(key: str, entry: dict) -> None:
    """Adds one entry to the store, written whole to a temporary file and renamed over the
    old one: readers never see a partial file; of two runs saving at once, one's entry may
    be lost (hashed again next time), never the store. A cache that cannot be written (a
    read-only home) only costs the hashing."""
    path = store_path()
    try:
        data = _load_store()
        data.pop(key, None)
        data[key] = entry
        data = dict(list(data.items())[-MAX_ENTRIES:])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".file_hashes.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def _now_ns() -> int:
    return time.time_ns()


def known_sha256(path: str | Path) -> str:
    """file_sha256(path), without reading a file this user's runs already hashed unchanged."""
    key = os.path.realpath(path)
    ident = _identity(key)
    with _lock:
        entry = _memory.get(key) or _load_store().get(key)
        if isinstance(entry, dict) and entry.get("identity") == ident and isinstance(entry.get("sha256"), str):
            _memory[key] = entry
            return entry["sha256"]
        started = _now_ns()
        digest = file_sha256(key)
        settled = started - max(ident["mtime_ns"], ident["ctime_ns"]) > SETTLED_SECONDS * 1e9
        # Kept only for a file that was settled and did not change while it was read.
        if settled and _identity(key) == ident:
            entry = {"identity": ident, "sha256": digest}
            _memory[key] = entry
            _save_entry(key, entry)
        return digest
