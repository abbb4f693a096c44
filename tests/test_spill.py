"""Waiting host arrays: in RAM up to a budget, the rest in a temporary file that never holds
more than what waits; what comes back is exactly what went in."""

import errno
import tracemalloc

import numpy as np
import pytest

from sam2long.engine.errors import SAM2LongError
from sam2long.runtime.lineage import ObjectLineage
from sam2long.runtime.spill import SpillStore


def _file_size(store):
    store._file.seek(0, 2)
    return store._file.tell()


def test_round_trip_in_ram_and_on_disk(tmp_path):
    store = SpillStore(ram_bytes=3 * 4 * 4 * 4, folder=str(tmp_path))  # room for one [3, 4, 4] float32
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4, 4)).astype(np.float32) for _ in range(4)]
    held = [store.put(a) for a in arrays]
    assert held[0].array is not None and all(h.array is None for h in held[1:])
    assert store.bytes_in_ram == arrays[0].nbytes and store.bytes_on_disk == 3 * arrays[0].nbytes
    for a, h in zip(arrays, held):
        np.testing.assert_array_equal(store.get(h), a)
        np.testing.assert_array_equal(store.get(h, 2), a[2])  # one sub-array alone
    frames = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)  # other shapes and dtypes too
    np.testing.assert_array_equal(store.take(store.put(frames)), frames)
    for h in held:
        store.release(h)
    assert store.bytes_in_ram == 0 and store.bytes_on_disk == 0
    assert _file_size(store) == 0  # nothing waits on the file: emptied
    store.close()


def test_file_reuses_released_space_and_views_are_counted_whole(tmp_path):
    one = np.zeros((64, 64), np.float32)
    store = SpillStore(ram_bytes=0, folder=str(tmp_path))
    waiting = [store.put(one + i) for i in range(3)]
    for step in range(50):  # a steady backlog of three: the file stays three arrays long
        store.release(waiting.pop(0))
        waiting.append(store.put(one + 3 + step))
        assert _file_size(store) == 3 * one.nbytes
    np.testing.assert_array_equal(store.get(waiting[-1]), one + 52)
    store.close()

    big = np.arange(4 * 64 * 64, dtype=np.float32).reshape(4, 64, 64)
    ram = SpillStore(ram_bytes=1 << 20)
    held = ram.put(big[1])  # a view: kept as its own copy, not with its base
    assert held.array.base is None and ram.bytes_in_ram == one.nbytes
    np.testing.assert_array_equal(ram.take(held), big[1])


def test_a_full_disk_is_named(tmp_path, monkeypatch):
    store = SpillStore(ram_bytes=0, folder=str(tmp_path))
    store.put(np.zeros(4, np.float32))

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store._file, "write", full)
    with pytest.raises(SAM2LongError, match=f"No space left on device.*{tmp_path}|{tmp_path}.*No space"):
        store.put(np.zeros(4, np.float32))


def test_lineages_that_never_coalesce_hold_at_most_the_budget_in_ram():
    """200 frames whose three pathways never share an ancestor: every frame waits until the
    end. The masks past the budget wait on disk; the answers are the all-in-RAM answers."""
    budget = 8 * 3 * 64 * 64 * 4  # eight frames of three 64x64 masks
    rng = np.random.default_rng(1)
    parents = [rng.permutation(3) for _ in range(200)]

    def run(store):
        lin = ObjectLineage(store)
        out = []
        tracemalloc.start()
        for frame, parent in enumerate(parents):
            masks = np.stack([np.full((64, 64), frame * 10 + k, np.float32) for k in range(3)])
            lin.push(frame, masks, np.arange(3), parent, np.arange(3))
            out += lin.pop_decided()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out + lin.finish(), peak

    in_ram, in_ram_peak = run(SpillStore(ram_bytes=1 << 30))  # first: one-time lazy imports land here
    spilled, spilled_peak = run(SpillStore(ram_bytes=budget))
    assert [(f, int(m[0, 0])) for f, m in spilled] == [(f, int(m[0, 0])) for f, m in in_ram]
    assert len(spilled) == 200
    assert in_ram_peak > 200 * 3 * 64 * 64 * 4  # all 200 frames waited in RAM
    # The budget, a frame in flight, about 1 KiB of bookkeeping per waiting frame.
    assert spilled_peak < budget + 2 * 3 * 64 * 64 * 4 + 200 * 1024


def test_tracker_gives_the_same_results_from_disk(lively_backend, tmp_path, monkeypatch):
    """Every waiting mask on disk (a zero RAM budget): the same masks, with two objects (the
    second starts later, so the first one's answers also wait for it), and the file is closed
    after. The video pipeline hands back each decoded frame from a second decoder in step
    with the answers: the frames themselves never wait."""
    from PIL import Image

    from sam2long.runtime import spill
    from sam2long.runtime.config import TrackerConfig
    from sam2long.runtime.pipeline import track_frames
    from sam2long.runtime.prompts import ObjectPrompt
    from sam2long.runtime.tracker import SAM2LongTracker
    from sam2long.runtime.video_io import VideoSource
    from tests.conftest import synthetic_frame, synthetic_mask

    for t in range(10):
        Image.fromarray(synthetic_frame(t)).save(tmp_path / f"{t:05d}.png")
    prompts = [ObjectPrompt(1, 0, mask=synthetic_mask(0)),
               ObjectPrompt(2, 3, mask=synthetic_mask(3) & (np.arange(160) < 60)[None, :])]
    tracker = SAM2LongTracker(lively_backend, TrackerConfig(3, 0.1, 2.0))

    def run():
        return [(f.index, f.obj_ids, f.logits, f.rgb)
                for f in track_frames(tracker, VideoSource(str(tmp_path)), prompts, keep_frames=True)]

    in_ram = run()
    opened = []
    monkeypatch.setattr(spill, "RAM_BYTES", 0)
    monkeypatch.setattr(spill.tempfile, "TemporaryFile",
                        lambda **kw: opened.append(open(tmp_path / f"spill{len(opened)}", "w+b")) or opened[-1])
    on_disk = run()
    assert len(opened) == 1 and opened[0].closed
    assert [r[:2] for r in on_disk] == [r[:2] for r in in_ram]
    assert [r[0] for r in on_disk] == list(range(10))
    for index, _, logits, rgb in on_disk:
        np.testing.assert_array_equal(logits, in_ram[index][2])
        np.testing.assert_array_equal(rgb, synthetic_frame(index))
