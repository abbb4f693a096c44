"""Lineage output: the answer follows slot 0 of the last frame; frames are emitted as soon
as every surviving slot shares one ancestor there (exact copies count as one)."""

import numpy as np
import pytest

from sam2long.runtime.lineage import ObjectLineage
from sam2long.runtime.spill import SpillStore


def _push(lineage, frame, parent, copy_class=None, P=3):
    masks = np.stack([np.full((2, 2), frame * 10 + k, np.float32) for k in range(P)])
    cls = np.arange(P) if copy_class is None else np.asarray(copy_class)
    lineage.push(frame, masks, np.arange(P), np.asarray(parent), cls)


def _ids(emitted):
    return [(f, int(m[0, 0])) for f, m in emitted]


def test_final_answer_follows_slot_zero_back():
    lin = ObjectLineage()
    _push(lin, 1, [0, 0, 0], copy_class=[0, 0, 0])
    assert _ids(lin.pop_decided()) == [(1, 10)]  # all copies: decided at once
    _push(lin, 2, [0, 1, 2])
    _push(lin, 3, [2, 0, 1])
    assert lin.pop_decided() == []
    assert _ids(lin.finish()) == [(2, 22), (3, 30)]
    assert len(lin) == 0


def test_coalescence_emits_early_frames():
    lin = ObjectLineage()
    _push(lin, 5, [0, 1, 2])
    _push(lin, 6, [1, 1, 2])
    assert lin.pop_decided() == []
    _push(lin, 7, [0, 1, 1])  # slots at 7 descend from 6:{0,1} -> 5:{1}
    assert _ids(lin.pop_decided()) == [(5, 51)]
    assert len(lin) == 2
    _push(lin, 8, [2, 2, 2])  # everything from slot 2 at frame 7 -> 7, 6 decided
    assert _ids(lin.pop_decided()) == [(6, 61), (7, 72)]
    assert _ids(lin.finish()) == [(8, 80)]


def test_copies_count_as_one_slot():
    lin = ObjectLineage()
    _push(lin, 3, [0, 1, 2], copy_class=[0, 0, 2])
    assert lin.pop_decided() == []
    _push(lin, 4, [0, 1, 0], copy_class=[0, 1, 0])  # ancestors {0, 1}: one class at 3
    assert _ids(lin.pop_decided()) == [(3, 30)]


@pytest.mark.parametrize("ram_bytes", [None, 0], ids=["in_ram", "on_disk"])
def test_early_emission_equals_end_of_video_answer(ram_bytes):
    """Also with every waiting mask in the spill file (a zero RAM budget)."""
    rng = np.random.default_rng(0)
    for trial in range(50):
        eager, lazy = ObjectLineage(SpillStore(ram_bytes)), ObjectLineage()
        out = []
        for frame in range(30):
            parent = rng.integers(0, 3, 3) if rng.random() < 0.7 else np.full(3, rng.integers(0, 3))
            _push(eager, frame, parent)
            _push(lazy, frame, parent)
            out += _ids(eager.pop_decided())
        out += _ids(eager.finish())
        assert out == _ids(lazy.finish()), trial
