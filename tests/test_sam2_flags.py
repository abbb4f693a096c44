"""sam2's own vos_inference flags, and the dataset tool's smaller newcomer fixes.

- `--apply_postprocessing`: sam2's hole filling (fill_hole_area=8), checked against a plain
  flood fill, and on the output masks of a run;
- `--use_vos_optimized_video_predictor`: accepted, our fastest path;
- `--num_chunks 2 --dry_run` previews the split; `--help` shows defaults that say something.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.runtime.postprocess import HOLE_SCORE, fill_holes
from sam2long.tools import vos_inference
from tests.conftest import MICRO_CFG, ROOT

SAMPLE = ROOT / "samples" / "shapes"


def flood_fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """The definition, slowly (the breadth-first labelling of tests/test_predictor_holes.py)."""
    from tests.test_predictor_holes import fill_reference

    return fill_reference(torch.from_numpy(mask)[None, None], max_area)[0, 0].numpy()


@pytest.mark.parametrize("density", [0.35, 0.5, 0.65])
def test_fill_holes_is_sam2s_definition(density):
    rng = np.random.default_rng(int(density * 100))
    logits = np.where(rng.random((3, 24, 31)) < density, 1.0, -1.0).astype(np.float32)
    # Shapes the spreading must not cut short: a long thin background snake (a region far
    # wider than 8 steps, with 8-pixel stretches) and a diagonal-only link.
    logits[0] = 1.0
    logits[0, 2, 1:29] = -1.0
    logits[0, 2:20, 28] = -1.0
    logits[0, 10, 5], logits[0, 11, 6] = -1.0, -1.0  # two pixels touching at a corner: one hole
    for max_area in (1, 8):
        got = fill_holes(logits, max_area)
        for i in range(3):
            np.testing.assert_array_equal(got[i], flood_fill_holes(logits[i], max_area), err_msg=f"{i} {max_area}")
    assert fill_holes(logits, 8)[0, 10, 5] == HOLE_SCORE and fill_holes(logits, 8)[0, 2, 1] == -1.0
    assert fill_holes(np.zeros((0, 4, 4), np.float32), 8).shape == (0, 4, 4)


def _vos(tmp_path, micro_checkpoints, out, *extra):
    return vos_inference.main([
        "--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["lively"]), "--device", "cpu",
        "--base_video_dir", str(SAMPLE / "JPEGImages"), "--input_mask_dir", str(SAMPLE / "Annotations"),
        "--output_mask_dir", str(out), "--num_pathway", "1", *extra])


def test_sam2_flags_are_accepted_and_post_processing_fills_holes(tmp_path, micro_checkpoints, monkeypatch, capsys):
    import sam2long.runtime.pipeline as pipeline

    calls = []

    def recording_fill(logits, max_area):
        calls.append(max_area)
        return fill_holes(logits, max_area)

    monkeypatch.setattr(pipeline, "fill_holes", recording_fill)
    assert _vos(tmp_path, micro_checkpoints, tmp_path / "plain") == 0
    assert calls == []
    assert _vos(tmp_path, micro_checkpoints, tmp_path / "post", "--apply_postprocessing",
                "--use_vos_optimized_video_predictor") == 0
    assert calls and set(calls) == {8}
    out = capsys.readouterr().out
    assert "backend torch" in out  # auto on a CPU without graphs: torch, and it says so
    plain = sorted((tmp_path / "plain" / "shapes").glob("*.png"))
    post = sorted((tmp_path / "post" / "shapes").glob("*.png"))
    assert [p.name for p in plain] == [p.name for p in post] and len(post) == 24
    # Filling only adds foreground: every plain mask pixel is still there.
    for a, b in zip(plain, post):
        assert np.all(np.array(Image.open(b))[np.array(Image.open(a)) > 0] > 0)
    # The completion record says the masks were post-processed, so a rerun without the flag
    # does not take them for its own.
    assert _vos(tmp_path, micro_checkpoints, tmp_path / "post") != 0
    assert "other settings" in capsys.readouterr().err


def test_dry_run_previews_a_split_given_by_counts_alone(capsys):
    rc = vos_inference.main(["--base_video_dir", str(SAMPLE / "JPEGImages"), "--input_mask_dir",
                             str(SAMPLE / "Annotations"), "--output_mask_dir", "/nonexistent/out",
                             "--num_chunks", "2", "--dry_run"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "shard 0: 1 videos: shapes" in out and "shard 1: 0 videos" in out
    assert "<- this process" not in out


def test_help_shows_the_defaults_that_matter(capsys):
    with pytest.raises(SystemExit):
        vos_inference.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--backend {auto,torch,onnx,trt}" in text
    required = ["--base_video_dir", "a", "--input_mask_dir", "b", "--output_mask_dir", "c"]
    assert vos_inference.build_parser().parse_args(required).backend == "auto"  # as in the other tools
    assert "is above this (default: 0.0)" in text
    assert "--apply_postprocessing" in text and "--use_vos_optimized_video_predictor" in text


def test_build_engines_help_says_what_no_max_batch_means(capsys):
    from sam2long.export import build_engines

    with pytest.raises(SystemExit):
        build_engines.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: --max_objects x --num_pathway, 12 with theirs)" in text
    assert "default: None" not in text and "--opt_batch" in text and "(default: 3)" in text
