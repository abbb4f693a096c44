"""One writer per output (issue 21 item 4): a second writer is refused and named, the first
one's result stays whole; the dataset tool locks per video, so shards share one folder;
the evaluator refuses a prediction folder that mixes runs of different settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.conftest import model_args as _model, write_dataset as _dataset, write_frames as _frames
from sam2long.tools import evaluate, video_inference, vos_inference




def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _hold_lock(target: Path) -> subprocess.Popen:
    """Another process holding the lock of `target` (as a running tool does)."""
    code = ("import sys, time; from sam2long.runtime.output_paths import OutputLock; "
            f"OutputLock({str(target)!r}, 'x').acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_video_tool_run_on_the_same_outputs_is_refused(tmp_path, micro_checkpoints, capsys):
    frames = _frames(tmp_path / "frames", 30)
    out = tmp_path / "out"
    argv = ["--video_path", str(frames), "--points", "40", "60", *_model(micro_checkpoints["plain"]),
            "--output_video", str(out / "o.mp4"), "--output_mask_dir", str(out / "m")]
    first = subprocess.Popen([sys.executable, str(ROOT / "tools" / "video_inference.py"), *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".m.partial") for p in out.glob(".*")):
        time.sleep(0.05)  # the first run is tracking (its staging folder exists)
    assert first.poll() is None, first.communicate()
    assert video_inference.main([*argv[:-4], "--output_video", str(out / "o.mp4"),
                                 "--output_mask_dir", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert f"is being written by process {first.pid}" in err, err
    assert video_inference.main(argv + ["--overwrite"]) == 2  # the mask folder too, even with --overwrite
    assert f"process {first.pid}" in capsys.readouterr().err
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert "wrote" in stdout
    assert len(list((out / "m").glob("*.png"))) == 30 and (out / "o.mp4").stat().st_size > 0
    assert not (tmp_path / "other").exists()
    assert not list(out.glob(".*.lock"))  # the lock ends with the run


def test_the_dataset_tool_locks_each_video(tmp_path, micro_checkpoints, capsys):
    data = _dataset(tmp_path)
    (tmp_path / "out").mkdir()
    holder = _hold_lock(tmp_path / "out" / "v2")
    try:
        assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data]) == 2
        err = capsys.readouterr().err
        assert f"video 'v2' in" in err and f"process {holder.pid}" in err, err
        assert not (tmp_path / "out" / "v1").exists()  # refused before any work
        # Another shard (v1 only) shares the folder while v2 is being written.
        assert vos_inference.main([*_model(micro_checkpoints["plain"]), *data, "--num_chunks", "2",
                                   "--chunk_id", "0"]) == 0
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "out" / "v1" / ".complete").is_file()


def test_a_video_finished_by_another_run_since_the_plan_is_kept(tmp_path, micro_checkpoints, capsys,
                                                                 monkeypatch):
    """Runs that overlap in time: a video another run (other settings) finished after this
    run planned its work is refused, not replaced; one finished with the same settings is
    skipped."""
    data = _dataset(tmp_path)
    model = _model(micro_checkpoints["plain"])
    assert vos_inference.main([*model, *data]) == 0
    kept = (tmp_path / "out" / "v1" / "00001.png").read_bytes()
    monkeypatch.setattr(vos_inference, "plan_videos", lambda args, shard, identity: list(shard))
    capsys.readouterr()
    assert vos_inference.main([*model, *data, "--num_pathway", "2"]) == 1
    err = capsys.readouterr().err
    assert "FAILED v1: another run wrote it meanwhile, made with other settings (num_pathway: 3 -> 2)" in err, err
    assert (tmp_path / "out" / "v1" / "00001.png").read_bytes() == kept
    assert json.loads((tmp_path / "out" / "v1" / ".complete").read_text())["produced_by"]["num_pathway"] == 3
    assert vos_inference.main([*model, *data]) == 0
    assert "0 tracked, 2 already complete" in capsys.readouterr().out


def test_two_shards_at_once_share_one_output_folder(tmp_path, micro_checkpoints):
    data = _dataset(tmp_path, names=("v1", "v2", "v3", "v4"), frames=6)
    cmd = [sys.executable, str(ROOT / "tools" / "vos_inference.py"), *_model(micro_checkpoints["plain"]), *data,
           "--num_chunks", "2"]
    shards = [subprocess.Popen([*cmd, "--chunk_id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_env()) for i in range(2)]
    for proc in shards:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for name in ("v1", "v2", "v3", "v4"):
        record = json.loads((tmp_path / "out" / name / ".complete").read_text())
        assert len(record["files"]) == 6


def test_the_evaluator_refuses_predictions_of_mixed_settings(tmp_path, micro_checkpoints, capsys):
    data = _dataset(tmp_path)
    model = _model(micro_checkpoints["plain"])
    assert vos_inference.main([*model, *data, "--num_chunks", "2", "--chunk_id", "0"]) == 0
    assert vos_inference.main([*model, *data, "--num_chunks", "2", "--chunk_id", "1", "--num_pathway", "2"]) == 0
    capsys.readouterr()
    gt = tmp_path / "Annotations"
    rc = evaluate.main(["--benchmark", "sav", "--gt_root", str(gt), "--pred_root", str(tmp_path / "out"),
                        "--output_dir", str(tmp_path / "scores")])
    err = capsys.readouterr().err
    assert rc == 1 and "mixes results of different runs" in err and "num_pathway: 3 -> 2" in err, err
    assert not (tmp_path / "scores").exists()
