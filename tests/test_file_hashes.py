"""known_sha256: a settled file is read once across runs, and again whenever it changes;
a young file (times within SETTLED_SECONDS) is read every time."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from sam2long.engine import file_hashes
from sam2long.engine.file_hashes import known_sha256


@pytest.fixture
def reads(tmp_path, monkeypatch):
    """Each file read in full, by path; a store of this test's own; memory of no earlier run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(file_hashes, "_memory", {})
    calls = []
    real = file_hashes.file_sha256
    monkeypatch.setattr(file_hashes, "file_sha256", lambda p: calls.append(p) or real(p))
    return calls


def _settled(monkeypatch):
    """Hash as if the files had been written a minute before."""
    monkeypatch.setattr(file_hashes, "_now_ns", lambda: time.time_ns() + 60 * 10**9)


def _new_run(monkeypatch):
    monkeypatch.setattr(file_hashes, "_memory", {})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _next_tick():
    time.sleep(0.03)  # past the file system clock's tick, so a write moves the times


def test_a_settled_file_is_read_once_across_runs(tmp_path, reads, monkeypatch):
    _settled(monkeypatch)
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    assert known_sha256(path) == known_sha256(str(path)) == _sha(b"weights")
    _new_run(monkeypatch)
    assert known_sha256(tmp_path / "." / "model.pt") == _sha(b"weights")
    assert len(reads) == 1
    assert file_hashes.store_path().is_file()


def test_a_changed_file_is_read_again(tmp_path, reads, monkeypatch):
    _settled(monkeypatch)
    path = tmp_path / "model.pt"
    path.write_bytes(b"first")
    assert known_sha256(path) == _sha(b"first")
    _next_tick()
    path.write_bytes(b"other")  # in place, the same size
    assert known_sha256(path) == _sha(b"other")
    _next_tick()
    (tmp_path / "new.pt").write_bytes(b"third")
    os.replace(tmp_path / "new.pt", path)  # replaced: a new inode
    assert known_sha256(path) == _sha(b"third")
    _next_tick()
    stat = path.stat()
    with open(path, "r+b") as f:
        f.write(b"T")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # its modification time set back
    _new_run(monkeypatch)
    assert known_sha256(path) == _sha(b"Third")
    assert len(reads) == 4


def test_a_young_file_is_read_every_time(tmp_path, reads):
    path = tmp_path / "graph.onnx"
    path.write_bytes(b"graph")
    assert known_sha256(path) == known_sha256(path) == _sha(b"graph")
    path.write_bytes(b"grap!")  # within the same clock tick, perhaps: the times may not move
    assert known_sha256(path) == _sha(b"grap!")
    assert len(reads) == 3
    assert not file_hashes.store_path().exists()


def test_a_damaged_or_unwritable_store_only_costs_the_reading(tmp_path, reads, monkeypatch):
    _settled(monkeypatch)
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    store = file_hashes.store_path()
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    assert known_sha256(path) == _sha(b"weights")
    _new_run(monkeypatch)
    assert known_sha256(path) == _sha(b"weights") and len(reads) == 1  # the store was written anew

    monkeypatch.setenv("XDG_CACHE_HOME", str(path))  # a file where the cache folder would be
    _new_run(monkeypatch)
    assert known_sha256(path) == _sha(b"weights") and len(reads) == 2
