"""The project's parity data (tests/data/parity) unpacks to what it was packed from, and a
checkpoint that does not regenerate to its recorded hash is refused."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import PARITY_DATA, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from parity_data import CASES, ParityDataError, pack_mask, unpack, unpack_mask  # noqa: E402


def test_masks_round_trip_bit_packed():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 5, 21)) < 0.5  # a width that is not a multiple of 8
    packed = pack_mask(masks)
    assert packed["bits"].nbytes * 8 < masks.size * 1.2
    np.testing.assert_array_equal(unpack_mask(packed["bits"], packed["width"]), masks)


def test_unpacked_fixture_has_the_layout_the_tests_read(parity_dir):
    assert sorted(p.name for p in (parity_dir / "frames").glob("*.jpg")) == [f"{i:05d}.jpg" for i in range(8)]
    assert len(list((parity_dir / "frames16").glob("*.jpg"))) == 16
    prompts = np.load(parity_dir / "prompts.npz")
    assert prompts["mask_1"].shape == (540, 960) and prompts["mask_1"].dtype == bool and prompts["mask_1"].any()
    for name in CASES:
        expected = np.load(parity_dir / name)
        assert expected["masks_1"].shape == (8, 540, 960) and expected["masks_1"].any()
        assert expected["obj_scores_1"].shape == expected["ious_1"].shape == expected["acc_1"].shape == (7, 3)


def test_a_checkpoint_with_another_hash_is_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(PARITY_DATA, data)
    record = json.loads((data / "checkpoints.json").read_text())
    record["micro_seed0.pt"]["state_dict_sha256"] = "0" * 64
    (data / "checkpoints.json").write_text(json.dumps(record))
    with pytest.raises(ParityDataError, match="micro_seed0.pt regenerated .* not the recorded 0000"):
        unpack(tmp_path / "fixture", data)
    assert not (tmp_path / "fixture").exists()
    assert not list(tmp_path.glob("fixture.*"))  # no half-written folder left
