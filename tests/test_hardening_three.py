"""Issue 21's third round (items 1, 3, 5-8, 11-13) and issue 22's rerun rule: video names
that escape the output folder, the evaluator's outputs, resume by content, traces, --score's
inputs, concurrent first --random_weights runs, objects appearing later, palette ids, full
disks and interrupts while starting, and the quick-start command run twice."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MICRO_CFG, ROOT, synthetic_mask
from tests.conftest import model_args as _model, write_dataset as _dataset
from sam2long.tools import evaluate, video_inference, vos_inference

SAMPLE = ROOT / "samples" / "shapes.mp4"


class Loaded(Exception):
    """The run got past its checks to the model."""


def _refuse_work(*args, **kwargs):
    raise Loaded()




def _lines(err: str) -> list[str]:
    return [p for p in err.replace("\r", "\n").split("\n") if p.strip() and "%|" not in p]


# -- item 1: video names are names -------------------------------------------------------------
@pytest.mark.parametrize("entry", ["../JPEGImages/v1", "{abs}", "v1/sub", "..", ".v1"])
def test_video_list_entries_cannot_escape_the_output_folder(tmp_path, micro_checkpoints, capsys, monkeypatch,
                                                            entry):
    monkeypatch.setattr("sam2long.tools.cli.load_backend", _refuse_work)
    data = _dataset(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "JPEGImages" / "v1" / "KEEP.txt").write_text("mine")
    (tmp_path / "list.txt").write_text(entry.format(abs=tmp_path / "JPEGImages" / "v1") + "\n")
    rc = vos_inference.main([*_model(micro_checkpoints["plain"]), *data, "--video_list_file",
                             str(tmp_path / "list.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and "is not a video name" in err and "list.txt line 1" in err, err
    assert (tmp_path / "JPEGImages" / "v1" / "KEEP.txt").read_text() == "mine"
    assert len(list((tmp_path / "JPEGImages" / "v1").glob("*.jpg"))) == 3


def test_a_linked_video_output_folder_is_refused(tmp_path, micro_checkpoints, capsys, monkeypatch):
    monkeypatch.setattr("sam2long.tools.cli.load_backend", _refuse_work)
    data = _dataset(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "KEEP.txt").write_text("mine")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v1").symlink_to(elsewhere)
    assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data]) == 2
    assert "outside" in capsys.readouterr().err
    (tmp_path / "out" / "v1").unlink()
    (tmp_path / "out" / "v1").symlink_to(tmp_path / "Annotations" / "v1")  # an input
    assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data]) == 2
    assert (elsewhere / "KEEP.txt").read_text() == "mine"
    assert (tmp_path / "Annotations" / "v1" / "00000.png").is_file()


# -- item 3: the evaluator's outputs are checked before scoring --------------------------------
def test_evaluator_outputs_are_checked_before_scoring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "score_run", _refuse_work)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for folder in (gt / "v1", pred / "v1"):
        folder.mkdir(parents=True)
        Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(folder / "00000.png")
    before = (gt / "v1" / "00000.png").read_bytes()
    (tmp_path / "a_file").write_text("x")
    base = ["--benchmark", "sav", "--gt_root", str(gt), "--pred_root", str(pred)]
    cases = [(["--json", str(gt / "v1" / "00000.png")], "lies inside the input"),
             (["--json", str(gt / "v1" / "new.json")], "lies inside the input"),
             (["--json", str(tmp_path)], "is a folder"),
             (["--output_dir", str(tmp_path / "a_file")], "is a file, not a folder"),
             (["--output_dir", str(pred / "scores")], "overlap")]
    for extra, message in cases:
        assert evaluate.main([*base, *extra]) == 1
        err = capsys.readouterr().err
        assert message in err, (extra, err)
    assert (gt / "v1" / "00000.png").read_bytes() == before
    with pytest.raises(Loaded):
        evaluate.main([*base, "--json", str(tmp_path / "s.json")])


# -- items 5 and 6: resume checks content; traces are part of a finished video -----------------
def test_resume_checks_each_file_s_content_and_the_traces(tmp_path, micro_checkpoints, capsys):
    data = _dataset(tmp_path)
    run = lambda *extra: vos_inference.main([*_model(micro_checkpoints["plain"]), *data, *extra])  # noqa: E731
    assert run() == 0
    png = tmp_path / "out" / "v1" / "00001.png"
    size = png.stat().st_size
    png.write_bytes(bytes(size))  # zeroed in place, same size
    capsys.readouterr()
    assert run() == 0
    assert "1 tracked, 1 already complete" in capsys.readouterr().out
    assert png.read_bytes() != bytes(size)
    flipped = bytearray(png.read_bytes())
    flipped[-20] ^= 0x01
    png.write_bytes(bytes(flipped))
    assert run() == 0
    assert "1 tracked, 1 already complete" in capsys.readouterr().out
    # Asking for traces redoes the videos finished without them; then they are complete.
    traces = tmp_path / "traces"
    assert run("--trace_dir", str(traces)) == 0
    assert "2 tracked, 0 already complete" in capsys.readouterr().out
    assert sorted(p.name for p in traces.iterdir()) == ["v1.npz", "v2.npz"]
    assert run("--trace_dir", str(traces)) == 0
    assert "0 tracked, 2 already complete" in capsys.readouterr().out
    (traces / "v2.npz").unlink()
    assert run("--trace_dir", str(traces)) == 0
    assert "1 tracked, 1 already complete" in capsys.readouterr().out


def test_trace_dir_and_score_inputs_are_checked_before_the_model(tmp_path, micro_checkpoints, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr("sam2long.tools.cli.load_backend", _refuse_work)
    data = [*_model(micro_checkpoints["plain"]), *_dataset(tmp_path)]
    (tmp_path / "a_file").write_text("x")
    cases = [(["--trace_dir", str(tmp_path / "a_file")], "is a file, not a folder"),
             (["--trace_dir", str(tmp_path / "Annotations" / "t")], "overlap"),
             (["--score", "sav", "--score_gt", str(tmp_path / "nonexistent")], "is not a folder"),
             (["--score", "mose"], "meta.json")]
    for extra, message in cases:
        assert vos_inference.main([*data, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(_lines(err)) == 1, (extra, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(Loaded):
        vos_inference.main([*data, "--trace_dir", str(tmp_path / "t"), "--score", "sav"])


# -- item 8: first --random_weights runs at once -----------------------------------------------
def test_concurrent_checkpoint_writes_do_not_collide(tmp_path, monkeypatch):
    """A second writer of the same checkpoint between the first one's write and rename (as
    three first --random_weights runs at once do): both succeed, the file is whole."""
    import torch

    from sam2long.tools import make_random_checkpoint

    real_save, nested = torch.save, []

    def save_then_race(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if not nested:
            nested.append(True)
            make_random_checkpoint.write_checkpoint(tmp_path / "c.pt", MICRO_CFG, seed=0)

    monkeypatch.setattr(torch, "save", save_then_race)
    make_random_checkpoint.write_checkpoint(tmp_path / "c.pt", MICRO_CFG, seed=0)
    assert "model" in torch.load(tmp_path / "c.pt", weights_only=True)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# -- item 11: an object that appears later is named, with the flag ----------------------------
def test_an_object_appearing_later_is_named_with_the_flag(tmp_path, micro_checkpoints, capsys):
    data = _dataset(tmp_path, names=("v1",))
    later = synthetic_mask(2).astype(np.uint8)
    later[:20, :20] = 7  # object 7 first appears on frame 2
    Image.fromarray(later).save(tmp_path / "Annotations" / "v1" / "00002.png")
    assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data]) == 0
    err = capsys.readouterr().err
    assert "object 7 first appears on frame 00002" in err and "--track_object_appearing_later_in_video" in err


# -- item 12: palette ids are 1..255, refused before any work ----------------------------------
@pytest.mark.parametrize("obj_id", ["300", "0"])
def test_object_ids_outside_the_palette_are_refused_first(tmp_path, capsys, monkeypatch, obj_id):
    monkeypatch.setattr(video_inference, "load_backend", _refuse_work)
    argv = ["--video_path", str(SAMPLE), "--random_weights", "--object", obj_id, "--points", "70", "120",
            "--output_video", str(tmp_path / "o.mp4"), "--output_mask_dir", str(tmp_path / "m")]
    assert video_inference.main(argv) == 2
    err = capsys.readouterr().err
    assert "1..255" in err and "--per_obj_png_file" in err and len(_lines(err)) == 1, err
    if obj_id != "0":
        with pytest.raises(Loaded):
            video_inference.main(argv + ["--per_obj_png_file"])


# -- item 13: one line on a full disk, and when interrupted while starting ---------------------
def test_a_full_disk_is_one_line_naming_the_file(tmp_path, micro_checkpoints, capsys, monkeypatch):
    from sam2long.export import build_engines
    from sam2long.runtime import mask_writer

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(mask_writer, "save_palette_png", full)
    data = _dataset(tmp_path)
    assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data]) == 2
    err = capsys.readouterr().err
    said = _lines(err)
    assert "Traceback" not in err and "FAILED" not in err, err
    assert said[-1].startswith("error: No space left on device: ") and "00000.png" in said[-1], said
    monkeypatch.setattr(build_engines, "export_stage", lambda stage, module, inputs, path, *a: full(path))
    rc = build_engines.main(["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["plain"]),
                             "--out_dir", str(tmp_path / "engines")])
    said = _lines(capsys.readouterr().err)
    assert rc == 2 and said[-1].startswith("error: No space left on device: ") and "image_encoder.onnx" in said[-1], said


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_while_starting_is_one_line(signum, code):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "vos_inference.py"), "--help"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:  # torch's libraries are loading: imports are under way
        try:
            if "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text():
                break
        except OSError:
            pass
        time.sleep(0.005)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err and _lines(err) == [
        ("terminated" if signum == signal.SIGTERM else "interrupted") + " while starting: nothing was done"], err


# -- issue 22 item 2: the quick-start command works every time ----------------------------------
def _quick_start_args() -> list[str]:
    """tools/run_sample.sh's video-tool arguments, as the script has them."""
    text = (ROOT / "tools" / "run_sample.sh").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("exec "))
    words = shlex.split(line)
    return words[words.index("tools/video_inference.py") + 1:]


def test_the_quick_start_command_works_twice_and_keeps_foreign_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    argv = [a for a in _quick_start_args() if a != "$@"] + ["--random_weights"]
    assert video_inference.main(argv) == 0
    first = sorted(p.name for p in (tmp_path / "outputs" / "shapes_masks").iterdir())
    assert video_inference.main(argv) == 0  # the same command again: replaces its own outputs
    assert sorted(p.name for p in (tmp_path / "outputs" / "shapes_masks").iterdir()) == first
    capsys.readouterr()
    # A file the tool did not write there (or a result changed since) is refused.
    video = tmp_path / "outputs" / "shapes_sam2long.mp4"
    video.write_bytes(b"my own video")
    assert video_inference.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and video.read_bytes() == b"my own video"
    assert video_inference.main(argv + ["--overwrite"]) == 0
    (tmp_path / "outputs" / "shapes_masks" / "notes.txt").write_text("mine")
    assert video_inference.main(argv) == 2
    assert video_inference.main(argv + ["--overwrite"]) == 2  # never replaces what is not a mask
    assert (tmp_path / "outputs" / "shapes_masks" / "notes.txt").read_text() == "mine"
