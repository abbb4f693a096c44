"""tools/vos_inference.py end to end on small synthetic datasets (random micro weights)."""

import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from sam2long.runtime.image_io import DAVIS_PALETTE
from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask, write_scored_dataset
from sam2long.tools import vos_inference

SAMPLE = ROOT / "samples" / "shapes"


def _davis_video(root, name, frames=6, objects=(1, 2)):
    (root / "JPEGImages" / name).mkdir(parents=True)
    (root / "Annotations" / name).mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(synthetic_frame(t)).save(root / "JPEGImages" / name / f"{t:05d}.jpg")
    labels = np.zeros((120, 160), np.uint8)
    labels[synthetic_mask(0)] = objects[0]
    if len(objects) > 1:
        labels[100:115, 120:150] = objects[1]
    png = Image.fromarray(labels, mode="P")
    palette = bytearray(DAVIS_PALETTE)
    palette[3:6] = bytes([10, 200, 30])  # a custom colour for id 1 that must survive
    png.putpalette(bytes(palette))
    png.save(root / "Annotations" / name / "00000.png")
    return bytes(palette)


def _args(root, checkpoint, *extra):
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(checkpoint), "--device", "cpu",
            "--base_video_dir", str(root / "JPEGImages"), "--input_mask_dir", str(root / "Annotations"),
            "--output_mask_dir", str(root / "out"), *extra]


def test_davis_layout_palette_resume_and_overwrite(tmp_path, micro_checkpoints, capsys):
    palette = _davis_video(tmp_path, "vid")
    args = _args(tmp_path, micro_checkpoints["lively"])
    assert vos_inference.main(args) == 0
    outputs = sorted((tmp_path / "out" / "vid").glob("*.png"))
    assert [p.stem for p in outputs] == [f"{t:05d}" for t in range(6)]
    for path in outputs:
        image = Image.open(path)
        assert image.mode == "P" and image.size == (160, 120)
        assert bytes(image.getpalette()[:768]) == palette[:768]
        assert set(np.unique(np.array(image))) <= {0, 1, 2}
    first = np.array(Image.open(outputs[0]))
    assert (first == 1).sum() > 0 and (first == 2).sum() > 0  # prompt frame reproduced
    # Every frame is the in-process tracker's answer on the same mask prompts.
    from sam2long.runtime.prompts import ObjectPrompt
    from tests.cli_reference import assert_same_labels, davis_labels, read_frames, reference_logits

    labels = np.array(Image.open(tmp_path / "Annotations" / "vid" / "00000.png"))
    rgb = read_frames(sorted((tmp_path / "JPEGImages" / "vid").glob("*.jpg")))
    want = reference_logits(micro_checkpoints["lively"], rgb,
                            [ObjectPrompt(obj, 0, mask=labels == obj) for obj in (1, 2)])
    for path, logits in zip(outputs, want):
        assert_same_labels(path, davis_labels(logits, (120, 160)))
    capsys.readouterr()
    assert vos_inference.main(args) == 0
    assert "1 already complete" in capsys.readouterr().out
    assert vos_inference.main(args + ["--overwrite"]) == 0
    assert "1 tracked" in capsys.readouterr().out


def test_bad_video_is_reported_and_others_finish(tmp_path, micro_checkpoints, capsys):
    _davis_video(tmp_path, "good")
    _davis_video(tmp_path, "bad")
    (tmp_path / "Annotations" / "bad" / "00000.png").unlink()
    _davis_video(tmp_path, "broken_frame")
    (tmp_path / "JPEGImages" / "broken_frame" / "00003.jpg").write_bytes(b"not a jpeg")
    _davis_video(tmp_path, "resized")
    Image.fromarray(synthetic_frame(2, 60, 80)).save(tmp_path / "JPEGImages" / "resized" / "00002.jpg")
    assert vos_inference.main(_args(tmp_path, micro_checkpoints["plain"])) == 1
    err = capsys.readouterr().err
    assert "FAILED resized" in err and "00002.jpg: frame 2 is 80x60, the first frame is 160x120" in err
    assert "FAILED bad" in err and "--track_object_appearing_later_in_video" in err
    assert "FAILED broken_frame" in err and "00003.jpg" in err
    assert (tmp_path / "out" / "good" / "00005.png").is_file()
    from sam2long.runtime.vos_dataset import COMPLETE_MARKER

    assert (tmp_path / "out" / "good" / COMPLETE_MARKER).is_file()
    assert not (tmp_path / "out" / "broken_frame").exists()  # nothing half-done looks like a result
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_sav_layout_with_object_appearing_later(tmp_path, micro_checkpoints):
    video = tmp_path / "JPEGImages" / "v"
    video.mkdir(parents=True)
    for t in range(7):
        Image.fromarray(synthetic_frame(t)).save(video / f"{t}.jpg")  # unpadded names: numeric sort
    for obj, start in ((1, 0), (4, 3)):
        folder = tmp_path / "Annotations" / "v" / f"{obj:03d}"
        folder.mkdir(parents=True)
        for t in range(7):
            mask = synthetic_mask(t) if t >= start else np.zeros((120, 160), bool)
            if obj == 4:
                mask = mask & (np.arange(160) < 50)[None, :]
            Image.fromarray(mask.astype(np.uint8)).save(folder / f"{t}.png")
    args = _args(tmp_path, micro_checkpoints["lively"], "--per_obj_png_file",
                 "--track_object_appearing_later_in_video", "--trace_dir", str(tmp_path / "trace"))
    assert vos_inference.main(args) == 0
    for obj in ("001", "004"):
        assert sorted(p.stem for p in (tmp_path / "out" / "v" / obj).glob("*.png")) == \
            sorted(str(t) for t in range(7))
    assert not np.array(Image.open(tmp_path / "out" / "v" / "004" / "2.png")).any()
    assert np.array(Image.open(tmp_path / "out" / "v" / "004" / "3.png")).any()
    trace = np.load(tmp_path / "trace" / "v.npz")
    assert int(trace["start_4"]) == 3 and trace["ious_4"].shape == (3, 3)
    # Each object's PNGs are the in-process tracker's masks (SA-V layout: no non-overlap rule).
    from sam2long.runtime.prompts import ObjectPrompt
    from tests.cli_reference import read_frames, reference_logits

    want = reference_logits(micro_checkpoints["lively"], read_frames([video / f"{t}.jpg" for t in range(7)]), [
        ObjectPrompt(1, 0, mask=synthetic_mask(0)),
        ObjectPrompt(4, 3, mask=synthetic_mask(3) & (np.arange(160) < 50)[None, :])])
    for t, logits in enumerate(want):
        for obj in (1, 4):
            got = np.array(Image.open(tmp_path / "out" / "v" / f"{obj:03d}" / f"{t}.png")) > 0
            expected = logits[obj] > 0 if obj in logits else np.zeros((120, 160), bool)
            assert (got != expected).sum() <= 2, (obj, t)


def test_dry_run_shards_without_a_model(tmp_path, capsys, monkeypatch):
    for name in ("c", "a", "e", "b", "d"):
        (tmp_path / "JPEGImages" / name).mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    args = _args(tmp_path, tmp_path / "missing.pt", "--dry_run")
    assert vos_inference.main(args + ["--num_nodes", "2", "--node_id", "1", "--num_chunks", "1", "--chunk_id", "0"]) == 0
    out = capsys.readouterr().out
    assert "shard 0: 3 videos: a b c" in out and "shard 1: 2 videos <- this process: d e" in out
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # a task of an srun step
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "3")
    assert vos_inference.main(args) == 0
    out = capsys.readouterr().out
    assert "shard 2 of 3 (source: srun SLURM_PROCID=2" in out and "shard 2: 1 videos <- this process: e" in out


def test_clear_errors_for_bad_setup(tmp_path, capsys):
    _davis_video(tmp_path, "vid")
    assert vos_inference.main(_args(tmp_path, tmp_path / "nope.pt")) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    args = _args(tmp_path, tmp_path / "nope.pt")
    args[args.index("--base_video_dir") + 1] = str(tmp_path / "absent")
    assert vos_inference.main(args) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert vos_inference.main(_args(tmp_path, tmp_path / "x.pt", "--num_pathway", "9")) == 2
    assert "--num_pathway must be 1..8" in capsys.readouterr().err
    assert vos_inference.main(_args(tmp_path, tmp_path / "x.pt", "--use_all_masks")) == 2


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "vos_inference.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--sam2_cfg", "--sam2_checkpoint", "--base_video_dir", "--input_mask_dir",
                 "--video_list_file", "--output_mask_dir", "--num_pathway", "--iou_thre",
                 "--uncertainty", "--per_obj_png_file", "--track_object_appearing_later_in_video",
                 "--score_thresh", "--use_all_masks", "--backend", "--device", "--num_nodes",
                 "--node_id", "--num_chunks", "--chunk_id", "--dry_run", "--overwrite"):
        assert flag in out, flag


def test_shipped_sample_runs(tmp_path, micro_checkpoints):
    shutil.copytree(SAMPLE, tmp_path, dirs_exist_ok=True)
    assert vos_inference.main(_args(tmp_path, micro_checkpoints["plain"])) == 0
    assert len(list((tmp_path / "out" / "shapes").glob("*.png"))) == 24


def test_the_run_scores_itself_as_the_official_davis_tool(tmp_path, micro_checkpoints, capsys):
    """--score davis: the shard's videos scored against the ground truth beside the input
    masks, the same numbers as tools/evaluate.py on the same folders."""
    import json

    from sam2long.tools import evaluate

    root = tmp_path / "DAVIS"
    write_scored_dataset(root, ("a", "b"), 5)
    out = tmp_path / "pred"
    args = ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["lively"]), "--device", "cpu",
            "--base_video_dir", str(root / "JPEGImages" / "480p"),
            "--input_mask_dir", str(root / "Annotations" / "480p"), "--output_mask_dir", str(out),
            "--score", "davis"]
    assert vos_inference.main(args) == 0
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "scores (davis, 2 video(s)" in printed
    ours = (tmp_path / "pred_scores" / "global_results-val.csv").read_text()
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("a\nb\n")
    assert evaluate.main(["--benchmark", "davis", "--davis_path", str(root), "--pred_root", str(out),
                          "--output_dir", str(tmp_path / "official"), "--json", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "official" / "global_results-val.csv").read_text() == ours
    assert 0 <= json.loads((tmp_path / "s.json").read_text())["J&F-Mean"] <= 1
