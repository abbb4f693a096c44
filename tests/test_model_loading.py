"""Model loading: config names or paths, strict checkpoints, clear errors."""

import pytest
import torch

from sam2long.engine.model_loading import ModelLoadError, load_sam2_model, resolve_config_path
from tests.conftest import MICRO_CFG


def test_package_config_names_resolve():
    for name in ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1/sam2.1_hiera_t", "configs/sam2.1/sam2.1_hiera_l.yaml"):
        assert resolve_config_path(name).is_file()
    with pytest.raises(ModelLoadError, match="neither a YAML file nor a config"):
        resolve_config_path("configs/sam9/none.yaml")


def test_missing_checkpoint_says_where_to_get_one(tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint not found.*facebookresearch/sam2"):
        load_sam2_model(MICRO_CFG, tmp_path / "nope.pt")


def test_mismatched_checkpoint_lists_keys(tmp_path, micro_checkpoints):
    state = torch.load(micro_checkpoints["plain"], weights_only=True)["model"]
    state.pop("no_mem_embed")
    state["extra.weight"] = torch.zeros(1)
    state["maskmem_tpos_enc"] = torch.zeros(7, 1, 1, 64)
    bad = tmp_path / "bad.pt"
    torch.save({"model": state}, bad)
    with pytest.raises(ModelLoadError) as err:
        load_sam2_model(MICRO_CFG, bad)
    message = str(err.value)
    assert str(bad) in message and "micro_sam2.1_256.yaml" in message
    assert "missing keys (no_mem_embed)" in message
    assert "unexpected keys (extra.weight)" in message
    assert "maskmem_tpos_enc (7, 1, 1, 64) vs (4, 1, 1, 64)" in message


def test_checkpoint_of_another_model_is_refused(micro_checkpoints):
    with pytest.raises(ModelLoadError, match="does not match config"):
        load_sam2_model("configs/sam2.1/sam2.1_hiera_t.yaml", micro_checkpoints["plain"])


def test_not_official_layout(tmp_path):
    path = tmp_path / "raw.pt"
    torch.save({"weights": 1}, path)
    with pytest.raises(ModelLoadError, match="official SAM 2 layout"):
        load_sam2_model(MICRO_CFG, path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        load_sam2_model(MICRO_CFG, path)
