"""Bad inputs and faults against the tools, one test per class of failure (issue 10): the real
cause is reported, inputs are never destroyed, outputs are checked before any work, stale
results never pass as complete, numbers are validated, and nothing is dropped quietly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask
from sam2long.tools import video_inference, vos_inference

SAMPLE = ROOT / "samples" / "shapes.mp4"


def _model(checkpoint):
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(checkpoint), "--device", "cpu"]


def _frames(folder: Path, count=6, sizes=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        h, w = (sizes or {}).get(t, (120, 160))
        Image.fromarray(synthetic_frame(t, h, w)).save(folder / f"{t:05d}.jpg")
    return folder


def _messages(err: str) -> list[str]:
    """What the tool said on stderr, progress-bar redraws left out."""
    parts = err.replace("\r", "\n").split("\n")
    return [p for p in parts if p.strip() and "%|" not in p]


def _leftovers(folder: Path) -> list[str]:
    """Anything that could pass for a (partial) result."""
    return sorted(p.name for p in folder.rglob("*") if "partial" in p.name or p.suffix in (".mp4", ".png"))


def _video(folder, checkpoint, out: Path, *extra):
    return video_inference.main(["--video_path", str(folder), *_model(checkpoint), "--points", "40", "60",
                                 "--output_video", str(out / "out.mp4"), "--output_mask_dir",
                                 str(out / "masks"), *extra])


# -- class 1: the real error reaches the user; nothing half-written is left -------------------
def test_failures_name_their_cause_and_leave_nothing(tmp_path, micro_checkpoints, capsys):
    corrupt = _frames(tmp_path / "corrupt")
    (corrupt / "00003.jpg").write_bytes(b"not a jpeg")
    mixed = _frames(tmp_path / "mixed", sizes={2: (60, 80)})
    cases = {corrupt: ["00003.jpg", "cannot read frame image"],
             mixed: ["00002.jpg", "frame 2 is 80x60, the first frame is 160x120"]}
    for folder, messages in cases.items():
        out = tmp_path / f"out_{folder.name}"
        out.mkdir()
        assert _video(folder, micro_checkpoints["plain"], out) == 2
        err = capsys.readouterr().err
        assert all(m in err for m in messages), err
        assert "partial" not in err and len(_messages(err)) == 1, err  # one line, the cause
        assert _leftovers(out) == []


def test_a_truncated_video_is_named(tmp_path, micro_checkpoints, capsys):
    path = tmp_path / "clip.mp4"
    with av.open(str(SAMPLE)) as source, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for frame in source.decode(video=0):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out"
    out.mkdir()
    assert _video(path, micro_checkpoints["plain"], out) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("truncated" in err or "cannot decode" in err), err
    assert _leftovers(out) == []


def test_ctrl_c_ends_with_one_line_and_no_partial_output(tmp_path, micro_checkpoints, capsys, monkeypatch):
    from sam2long.runtime.tracker import SAM2LongTracker

    real_step = SAM2LongTracker._step

    def interrupted(self, session, t, *args):
        if t == 3:
            raise KeyboardInterrupt
        return real_step(self, session, t, *args)

    monkeypatch.setattr(SAM2LongTracker, "_step", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    assert _video(_frames(tmp_path / "f"), micro_checkpoints["plain"], out) == 130
    said = _messages(capsys.readouterr().err)
    assert len(said) == 1 and said[0].startswith("interrupted"), said
    assert _leftovers(out) == []


# -- class 2: an input is never destroyed ------------------------------------------------------
def test_outputs_never_replace_inputs(tmp_path, capsys):
    video = tmp_path / "in.mp4"
    shutil.copy(SAMPLE, video)
    before = video.read_bytes()
    (tmp_path / "link.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    for target in (video, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "." / "in.mp4"):
        rc = video_inference.main(["--video_path", str(video), "--points", "70", "120", "--random_weights",
                                   "--output_video", str(target)])
        assert rc == 2
        assert "would destroy the input" in capsys.readouterr().err
    frames = _frames(tmp_path / "frames")
    rc = video_inference.main(["--video_path", str(frames), "--points", "40", "60", "--random_weights",
                               "--output_video", str(tmp_path / "o.mp4"), "--output_mask_dir", str(frames)])
    assert rc == 2 and "overlap" in capsys.readouterr().err
    assert video.read_bytes() == before and len(list(frames.glob("*.jpg"))) == 6


# -- class 3: output locations are checked before the first frame ------------------------------
def test_output_locations_are_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    missing_model = ["--sam2_checkpoint", str(tmp_path / "missing.pt")]  # never reached
    cases = [
        (["--output_video", str(tmp_path / "a_file" / "out.mp4")], "is a file, not a folder"),
        (["--output_video", str(tmp_path / "a_dir")], "is a folder; give a file name"),
        (["--output_video", str(tmp_path / "o.mp4"), "--output_mask_dir", str(tmp_path / "a_file")],
         "is an existing file, not a folder"),
    ]
    for argv, message in cases:
        rc = video_inference.main(["--video_path", str(SAMPLE), "--points", "70", "120", *missing_model, *argv])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "checkpoint" not in err, err


def _world_readable_dir(tmp_path: Path) -> Path:
    """A folder an unprivileged user can read (pytest's own are private)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sam2long-ro-"))
    folder.chmod(0o755)
    return folder


def _run_unprivileged(argv: list[str]) -> subprocess.CompletedProcess:
    """Run a tool as a user who cannot write into read-only folders (root ignores modes)."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot be tested")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = dict(os.environ, HOME="/tmp", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(prefix + [sys.executable, *argv], capture_output=True, text=True, env=env,
                          cwd="/tmp", timeout=300)


def test_read_only_folders_are_one_clear_error(tmp_path):
    base = _world_readable_dir(tmp_path)
    try:
        read_only = base / "ro"
        read_only.mkdir(mode=0o555)
        read_only.chmod(0o555)
        done = _run_unprivileged([str(ROOT / "tools" / "video_inference.py"), "--video_path", str(SAMPLE),
                                  "--points", "70", "120", "--output_video", str(read_only / "o.mp4"),
                                  "--sam2_checkpoint", str(base / "missing.pt")])
        assert done.returncode == 2 and "cannot write into" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr

        # The dataset tool: one run-level error, not a traceback per video.
        data = base / "data"
        for name in ("v1", "v2"):
            _frames(data / "JPEGImages" / name, count=2)
            (data / "Annotations" / name).mkdir(parents=True)
            Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(data / "Annotations" / name / "00000.png")
        for path in [base, *base.rglob("*")]:
            if path != read_only:
                path.chmod(0o755 if path.is_dir() else 0o644)
        done = _run_unprivileged([str(ROOT / "tools" / "vos_inference.py"), "--base_video_dir",
                                  str(data / "JPEGImages"), "--input_mask_dir", str(data / "Annotations"),
                                  "--output_mask_dir", str(read_only / "out"),
                                  "--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(base / "missing.pt")])
        assert done.returncode == 2, done.stderr
        assert "--output_mask_dir: cannot write into" in done.stderr and "FAILED" not in done.stderr
        assert len(_messages(done.stderr)) == 1, done.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- class 4: stale results never pass as complete ---------------------------------------------
def test_video_tool_never_mixes_old_and_new_masks(tmp_path, micro_checkpoints, capsys):
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    Image.fromarray(np.ones((120, 160), np.uint8)).save(out / "masks" / "00099.png")  # an old result
    assert _video(frames, micro_checkpoints["plain"], out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _video(frames, micro_checkpoints["plain"], out, "--overwrite") == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{t:05d}.png" for t in range(6)]
    (out / "masks" / "notes.txt").write_text("mine")
    assert _video(frames, micro_checkpoints["plain"], out, "--overwrite") == 2
    assert "not mask PNGs" in capsys.readouterr().err and (out / "masks" / "notes.txt").is_file()


def _dataset(root: Path) -> list[str]:
    for name in ("v1", "v2"):
        _frames(root / "JPEGImages" / name, count=4)
        (root / "Annotations" / name).mkdir(parents=True)
        Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(root / "Annotations" / name / "00000.png")
    return ["--base_video_dir", str(root / "JPEGImages"), "--input_mask_dir", str(root / "Annotations"),
            "--output_mask_dir", str(root / "out")]


def test_dataset_reruns_redo_or_refuse_stale_results(tmp_path, micro_checkpoints, capsys):
    data = _dataset(tmp_path)
    run = lambda *extra: vos_inference.main([*_model(micro_checkpoints["lively"]), *data, *extra])  # noqa: E731
    assert run() == 0
    first = (tmp_path / "out" / "v1" / "00002.png").read_bytes()
    capsys.readouterr()
    # Another setting, or another checkpoint: refused before any work, naming --overwrite.
    for extra in (["--num_pathway", "2"], ["--sam2_checkpoint", str(micro_checkpoints["plain"])]):
        argv = [*_model(micro_checkpoints["lively"]), *data, *extra]
        assert vos_inference.main(argv) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and "--overwrite" in err, err
    assert (tmp_path / "out" / "v1" / "00002.png").read_bytes() == first
    # A deleted PNG makes that video incomplete: it is redone, the other one is kept.
    (tmp_path / "out" / "v2" / "00001.png").unlink()
    assert run() == 0
    assert "1 tracked, 1 already complete" in capsys.readouterr().out
    assert (tmp_path / "out" / "v2" / "00001.png").is_file()
    # --overwrite redoes everything with the new settings, and says so in the record.
    assert run("--num_pathway", "2", "--overwrite") == 0
    record = json.loads((tmp_path / "out" / "v1" / ".complete").read_text())
    assert record["produced_by"]["num_pathway"] == 2 and "00003.png" in record["files"]


# -- class 8: numbers are validated ------------------------------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["--points", "nan", "10"], "not a finite number"),
    (["--box", "0", "0", "inf", "10"], "not a finite number"),
    (["--points", "10", "10", "--fps", "0"], "not a number > 0"),
    (["--points", "10", "10", "--fps", "nan"], "not a finite number"),
    (["--points", "10", "10", "--uncertainty", "inf"], "not a finite number"),
    (["--points", "10", "10", "--iou_thre", "nan"], "not a finite number"),
])
def test_non_finite_numbers_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        video_inference.main(["--video_path", str(SAMPLE), "--random_weights",
                              "--output_video", str(tmp_path / "o.mp4"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_numbers_in_files_and_devices(tmp_path, capsys):
    prompts = tmp_path / "p.json"
    prompts.write_text('[{"id": 1, "points": [[NaN, 3]]}]')
    assert video_inference.main(["--video_path", str(SAMPLE), "--random_weights", "--prompts", str(prompts),
                                 "--output_video", str(tmp_path / "o.mp4")]) == 2
    assert "finite" in capsys.readouterr().err
    assert video_inference.main(["--video_path", str(SAMPLE), "--random_weights", "--points", "10", "10",
                                 "--device", "gpu7", "--output_video", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert "--device 'gpu7' is not a device" in err and len(_messages(err)) == 1
    with pytest.raises(SystemExit):
        vos_inference.main(["--base_video_dir", ".", "--input_mask_dir", ".", "--output_mask_dir", "o",
                            "--score_thresh", "nan"])
    assert "not a finite number" in capsys.readouterr().err


# -- class 9: nothing is dropped quietly, hints name the right flag ----------------------------
def test_sav_objects_without_masks_are_reported_and_written_empty(tmp_path, micro_checkpoints, capsys):
    _frames(tmp_path / "JPEGImages" / "v", count=4)
    for obj, present in ((1, True), (2, False)):
        folder = tmp_path / "Annotations" / "v" / f"{obj:03d}"
        folder.mkdir(parents=True)
        for t in range(4):
            mask = synthetic_mask(t) if present else np.zeros((120, 160), bool)
            Image.fromarray(mask.astype(np.uint8)).save(folder / f"{t:05d}.png")
    args = [*_model(micro_checkpoints["plain"]), "--base_video_dir", str(tmp_path / "JPEGImages"),
            "--input_mask_dir", str(tmp_path / "Annotations"), "--output_mask_dir", str(tmp_path / "out"),
            "--per_obj_png_file", "--track_object_appearing_later_in_video"]
    assert vos_inference.main(args) == 0
    err = capsys.readouterr().err
    assert "object 002 has no non-empty prompt mask" in err
    written = sorted((tmp_path / "out" / "v" / "002").glob("*.png"))
    assert len(written) == 4 and not any(np.array(Image.open(p)).any() for p in written)
    # The same SA-V data without --per_obj_png_file: the hint names that flag.
    args = [a for a in args if a != "--per_obj_png_file"]
    args[args.index("--output_mask_dir") + 1] = str(tmp_path / "out2")
    assert vos_inference.main(args) == 1
    err = capsys.readouterr().err
    assert "pass --per_obj_png_file" in err and "FAILED v" in err


def test_leftovers_of_killed_runs_are_removed_and_sigterm_cleans_up(tmp_path, micro_checkpoints):
    """A SIGKILLed run's staging folders are removed by the next run on the same host (live
    work and other hosts' work are left alone); SIGTERM unwinds like Ctrl-C."""
    import socket
    import time

    from sam2long.runtime.output_paths import partial_path, remove_stale_partials

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / f".v1.partial@{host}@{dead}@abc123"
    live = Path(partial_path(str(tmp_path / "v2")))
    other = tmp_path / f".v3.partial@elsewhere@{dead}@abc123"
    for folder in (stale, live, other):
        folder.mkdir()
    (tmp_path / f".out.mp4.partial@{host}@{dead}@0a0b0c.mp4").write_bytes(b"half a video")
    assert sorted(Path(p).name for p in remove_stale_partials(str(tmp_path))) == sorted(
        [stale.name, f".out.mp4.partial@{host}@{dead}@0a0b0c.mp4"])
    assert live.is_dir() and other.is_dir() and not stale.exists()

    # SIGTERM mid-video: exit 143, one line, no partial output.
    frames = _frames(tmp_path / "frames", count=40)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "video_inference.py"), "--video_path",
                             str(frames), "--points", "40", "60", *_model(micro_checkpoints["plain"]),
                             "--output_video", str(out / "o.mp4"), "--output_mask_dir", str(out / "m")],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".m.partial") for p in out.iterdir()):
        time.sleep(0.1)  # the mask staging folder: tracking is about to start
    time.sleep(2.0)
    assert proc.poll() is None, "the run ended before it could be terminated"
    proc.terminate()
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err
    assert _messages(err)[-1].startswith("terminated"), err
    assert list(out.iterdir()) == []
