"""runtime/mask_writer.py: the DAVIS and SA-V mask layouts both tools write."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sam2long.runtime.image_io import DAVIS_PALETTE
from sam2long.runtime.mask_writer import MaskWriter, apply_non_overlap
from sam2long.runtime.vos_dataset import load_prompts
from tests.conftest import H, W, box, read_png, write_png


def logits_from_masks(**kwargs):
    """Logits +5 inside a box, -5 outside."""
    return {int(k[1:]): np.where(v > 0, 5.0, -5.0).astype(np.float32) for k, v in kwargs.items()}


def test_davis_output_keeps_input_palette(tmp_path):
    custom = list(range(256)) * 3  # obviously not the DAVIS palette
    write_png(tmp_path / "ann" / "v" / "00000.png", box(0, 2, 0, 2, value=1), palette=custom)
    found = load_prompts(str(tmp_path / "ann"), "v", ["00000"], False, False)
    writer = MaskWriter(str(tmp_path / "out"), False, found.palette, H, W, sorted(found.objects))
    writer.write("00000", {1: np.where(found.objects[1][1], 3.0, -3.0)})
    writer.close()  # PNGs are written by a worker thread
    arr, mode, out_palette = read_png(tmp_path / "out" / "00000.png")
    assert mode == "P" and out_palette[: len(found.palette)] == found.palette
    np.testing.assert_array_equal(arr, box(0, 2, 0, 2, value=1))
    assert writer.files == ["00000.png"]


def test_davis_default_palette(tmp_path):
    writer = MaskWriter(str(tmp_path), False, None, H, W, [1])
    writer.write("00000", {1: np.ones((H, W))})
    writer.close()
    _, _, out_palette = read_png(tmp_path / "00000.png")
    assert bytes(out_palette[:6]) == DAVIS_PALETTE[:6]


def test_non_overlap_packing(tmp_path):
    s1 = np.full((H, W), -5.0, np.float32)
    s2 = np.full((H, W), -5.0, np.float32)
    s1[0, 0], s2[0, 0] = 2.0, 5.0  # overlap: object 2 scores higher -> 2
    s1[0, 1], s2[0, 1] = 4.0, 4.0  # tie: first (smaller id) wins like torch.argmax
    s1[0, 2] = 1.0  # only object 1
    s2[0, 3] = 1.0  # only object 2
    s1[0, 4], s2[0, 4] = -1.0, -0.5  # winner below threshold -> background
    writer = MaskWriter(str(tmp_path / "v"), False, None, H, W, [2, 1])
    writer.write("00000", {1: s1, 2: s2})
    writer.close()
    arr, _, _ = read_png(tmp_path / "v" / "00000.png")
    assert arr[0, :6].tolist() == [2, 1, 1, 2, 0, 0]
    assert (arr[1:] == 0).all()

    # With a low threshold the clamped loser (-10) also passes: then the reference
    # packing order (descending ids, smallest id on top) decides.
    writer = MaskWriter(str(tmp_path / "w"), False, None, H, W, [1, 2], score_thresh=-20.0)
    writer.write("00000", {1: s1, 2: s2})
    writer.close()
    arr, _, _ = read_png(tmp_path / "w" / "00000.png")
    assert arr[0, 0] == 1


def test_non_overlap_matches_torch_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 8, size=(3, 5, 7)).astype(np.float32)
    scores[:, 0, 0] = 1.5  # exact tie
    t = torch.from_numpy(scores)[:, None]
    max_inds = torch.argmax(t, dim=0, keepdim=True)
    keep = max_inds == torch.arange(3)[:, None, None, None]
    expected = torch.where(keep, t, torch.clamp(t, max=-10.0))[:, 0].numpy()
    np.testing.assert_array_equal(apply_non_overlap(scores), expected)


def test_absent_objects_and_validation(tmp_path):
    writer = MaskWriter(str(tmp_path / "v"), False, None, H, W, [1, 2])
    writer.write("00000", {2: np.ones((1, H, W), np.float32)})  # object 1 absent
    writer.close()
    arr, _, _ = read_png(tmp_path / "v" / "00000.png")
    assert (arr == 2).all()
    with pytest.raises(ValueError, match="unknown"):
        writer.write("00001", {7: np.ones((H, W))})
    with pytest.raises(ValueError, match="shape"):
        writer.write("00001", {1: np.ones((H + 1, W))})
    with pytest.raises(ValueError, match="written twice"):
        writer.write("00000", {1: np.ones((H, W))})
    with pytest.raises(ValueError):
        MaskWriter(str(tmp_path / "x"), False, None, H, W, [0])  # 0 is background in DAVIS
    with pytest.raises(ValueError, match="duplicate"):
        MaskWriter(str(tmp_path / "x"), True, None, H, W, [3, 3])


def test_sav_per_object_layout(tmp_path):
    writer = MaskWriter(str(tmp_path / "sav"), True, None, H, W, [0, 12])
    # overlapping boxes: no non-overlap step for per-object files
    writer.write("00000", logits_from_masks(o0=box(0, 3, 0, 3), o12=box(1, 4, 1, 4)))
    writer.write("00001", logits_from_masks(o12=box(0, 1, 0, 1)))  # object 0 absent
    writer.close()
    for oid, frame, expected in [
        (0, "00000", box(0, 3, 0, 3)),
        (12, "00000", box(1, 4, 1, 4)),
        (0, "00001", np.zeros((H, W))),
        (12, "00001", box(0, 1, 0, 1)),
    ]:
        arr, mode, palette = read_png(tmp_path / "sav" / f"{oid:03d}" / f"{frame}.png")
        assert mode == "P" and bytes(palette[:6]) == DAVIS_PALETTE[:6]
        np.testing.assert_array_equal(arr, expected)
    assert not (tmp_path / "sav" / "00000.png").exists()
    assert sorted(writer.files) == ["000/00000.png", "000/00001.png", "012/00000.png", "012/00001.png"]


def test_png_errors_in_the_worker_surface(tmp_path):
    """PNGs are encoded on a worker thread: a failure there is raised by close()."""
    writer = MaskWriter(str(tmp_path / "v"), False, None, H, W, [1])
    shutil.rmtree(tmp_path / "v")  # the disk goes away under the writer
    writer.write("00000", {1: np.ones((H, W))})
    with pytest.raises(OSError):
        writer.close()
