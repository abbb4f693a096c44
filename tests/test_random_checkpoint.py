"""tools/make_random_checkpoint.py: the lively recipe's no-object embedding gain."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import MICRO_CFG


def test_no_obj_embed_gain_scales_that_embedding_and_nothing_else():
    from sam2long.tools.make_random_checkpoint import random_model

    lively = random_model(MICRO_CFG, seed=0, lively=True).state_dict()
    strong = random_model(MICRO_CFG, seed=0, lively=True, no_obj_embed_gain=100.0).state_dict()
    assert lively.keys() == strong.keys()
    changed = [k for k in lively if not torch.equal(lively[k], strong[k])]
    assert changed == ["no_obj_embed_spatial"]
    torch.testing.assert_close(strong["no_obj_embed_spatial"], 100.0 * lively["no_obj_embed_spatial"])


def test_no_obj_embed_gain_is_refused_where_the_config_has_no_such_embedding(tmp_path, capsys):
    from sam2long.tools.make_random_checkpoint import main

    text = open(MICRO_CFG).read()
    assert "no_obj_embed_spatial: true" in text
    config = tmp_path / "no_embedding.yaml"
    config.write_text(text.replace("no_obj_embed_spatial: true", "no_obj_embed_spatial: false"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--sam2_cfg", str(config), "--out", str(tmp_path / "x.pt"), "--lively",
              "--no_obj_embed_gain", "100"])
    assert exit_info.value.code == 2
    assert "has no no-object memory embedding" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    assert main(["--sam2_cfg", str(config), "--out", str(tmp_path / "y.pt"), "--lively"]) == 0
