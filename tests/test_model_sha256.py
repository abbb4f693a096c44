"""model_sha256: a model file is hashed once per process, and again once it is replaced."""

import hashlib
import os

from sam2long.engine import manifest
from sam2long.engine.manifest import model_sha256


def test_hashed_once_and_again_when_replaced(tmp_path, monkeypatch):
    calls = []
    real = manifest.file_sha256
    monkeypatch.setattr(manifest, "file_sha256", lambda p: calls.append(p) or real(p))
    manifest._model_sha256.cache_clear()
    path = tmp_path / "model.pt"
    path.write_bytes(b"first")
    assert model_sha256(path) == model_sha256(str(path)) == hashlib.sha256(b"first").hexdigest()
    assert len(calls) == 1
    # Replaced atomically (a new inode, as the tools write checkpoints) and rewritten in place
    # with another size: each is hashed anew.
    (tmp_path / "new.pt").write_bytes(b"second")
    os.replace(tmp_path / "new.pt", path)
    assert model_sha256(path) == hashlib.sha256(b"second").hexdigest()
    path.write_bytes(b"third, longer")
    assert model_sha256(path) == hashlib.sha256(b"third, longer").hexdigest()
    assert len(calls) == 3
