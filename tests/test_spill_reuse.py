"""The spill store under mixed sizes, as the tracker uses it (one store for every object's
masks of 1..P distinct slots, and the decided single masks): random put / get / release
sequences, checked byte for byte against a plain dict, across the file's emptying."""

import numpy as np
import pytest

from sam2long.runtime.spill import SpillStore


def _file_size(store):
    store._file.seek(0, 2)
    return store._file.tell()


def test_a_smaller_array_after_emptying_does_not_overwrite_a_waiting_one(tmp_path):
    store = SpillStore(ram_bytes=0, folder=str(tmp_path))
    first = store.put(np.arange(4, dtype=np.float32))  # at offset 0
    second = store.put(np.arange(4, dtype=np.float32))  # at 16
    store.release(first)  # offset 0 is free for the next 16-byte array...
    store.release(second)  # ...until nothing waits: the file is emptied, its free list too
    b = store.put(np.arange(8, dtype=np.float32) + 200)
    c = store.put(np.arange(4, dtype=np.float32) + 300)
    np.testing.assert_array_equal(store.get(b), np.arange(8, dtype=np.float32) + 200)
    np.testing.assert_array_equal(store.get(c), np.arange(4, dtype=np.float32) + 300)
    store.close()


@pytest.mark.parametrize("seed", range(6))
def test_random_mixed_size_sequences_round_trip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    # A small RAM budget on odd seeds: arrays move between RAM and the file by size and order.
    store = SpillStore(ram_bytes=0 if seed % 2 == 0 else 96, folder=str(tmp_path))
    shapes = [(1, 2, 2), (2, 2, 2), (3, 2, 2), (4,), (2, 3), (5, 1)]
    dtypes = [np.float32, np.uint8, np.int64]
    waiting: dict[int, tuple] = {}  # id -> (held, expected array)
    emptied = 0
    for step in range(400):
        action = rng.random()
        if action < 0.5 or not waiting:
            dtype = dtypes[rng.integers(len(dtypes))]
            array = (rng.standard_normal(shapes[rng.integers(len(shapes))]) * 100).astype(dtype)
            waiting[step] = (store.put(array), array.copy())
        elif action < 0.8:
            key = list(waiting)[rng.integers(len(waiting))]
            held, want = waiting.pop(key)
            if rng.random() < 0.5:
                got = store.take(held)
            else:
                index = int(rng.integers(want.shape[0]))
                np.testing.assert_array_equal(store.get(held, index), want[index])
                got = store.get(held)
                store.release(held)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), step
            if store._file is not None and store.bytes_on_disk == 0:
                assert _file_size(store) == 0
                emptied += 1
        else:  # drain most of what waits, so the file empties now and then
            for key in list(waiting)[: max(1, len(waiting) - int(rng.integers(2)))]:
                held, want = waiting.pop(key)
                assert store.take(held).tobytes() == want.tobytes(), step
            emptied += store._file is not None and store.bytes_on_disk == 0
        # Everything still waiting is intact after every operation.
        for held, want in waiting.values():
            assert store.get(held).tobytes() == want.tobytes(), step
        on_disk = sum(h.nbytes for h, _ in waiting.values() if h.array is None)
        assert store.bytes_on_disk == on_disk
        assert store.bytes_in_ram == sum(h.nbytes for h, _ in waiting.values() if h.array is not None)
    assert emptied > 5  # the emptying (and its free-list reset) really happened
    store.close()
