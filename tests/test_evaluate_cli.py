"""tools/evaluate.py: flags, outputs, worker processes, and one-line errors for bad input."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.eval_cases import (Case, make_case, seq_blobs, seq_late, seq_long, seq_short, seq_vanish,
                                   write_davis, write_lvos, write_mose, write_sav)
from tests.conftest import ROOT
from sam2long.tools import evaluate
from sam2long.tools.evaluation import print_summary, score_run

SCRIPT = str(ROOT / "tools" / "evaluate.py")


def _small_case(with_long=False):
    rng = np.random.default_rng(5)
    sequences = [seq_blobs(rng, t_len=6), seq_vanish(rng), seq_short(rng, "short3", 3), seq_late(rng)]
    if with_long:
        sequences.append(seq_long(rng, "long256", 258))
    return Case("cli", sequences)


def _subprocess(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT)


class _Run:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """tools/evaluate.py's main() in this process (a subprocess costs a second per call here)."""
    def run(*args):
        capsys.readouterr()
        try:
            code = evaluate.main([str(a) for a in args])
        except SystemExit as e:  # argparse: --help, usage errors
            code = e.code
        out = capsys.readouterr()
        return _Run(code, out.out, out.err)
    return run


def _one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.stderr


def test_help_explains_every_flag_and_the_server_only_benchmarks(cli):
    result = cli("--help")
    assert result.returncode == 0
    for flag in ("--benchmark", "--pred_root", "--davis_path", "--gt_root", "--lvos_path", "--meta", "--set",
                 "--task", "--unseen_list", "--videos", "--strict", "--do_not_skip_first_and_last_frame",
                 "--corrected", "--json", "--output_dir", "--num_processes"):
        assert flag in result.stdout, flag
    assert "MOSEv1" in result.stdout and "YouTube-VOS" in result.stdout and "CodaLab" in result.stdout


def test_davis_run_writes_json_and_official_csvs_beside_the_predictions(tmp_path):
    write_davis(_small_case(), tmp_path / "DAVIS", tmp_path / "pred")
    out = tmp_path / "scores.json"
    result = _subprocess("--benchmark", "davis", "--davis_path", tmp_path / "DAVIS", "--pred_root",
                         tmp_path / "pred", "--json", out, "--num_processes", 2)
    assert result.returncode == 0, result.stderr
    assert "J&F-Mean" in result.stdout and "lowest J&F-Mean" in result.stdout
    data = json.loads(out.read_text())
    for key in ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"):
        assert 0 <= data[key] <= 1 or key.endswith("Decay")
    assert data["J&F-Mean"] == pytest.approx((data["J-Mean"] + data["F-Mean"]) / 2, abs=1e-15)
    assert set(data["per_object"]) == {"blobs_1", "blobs_2", "blobs_3", "vanish_1", "vanish_2",
                                       "short3_1", "short3_2", "late_1", "late_2", "late_3"}
    assert len(data["per_frame"]["short3_1"]["J"]) == 1  # first and last frames are not scored
    scores_dir = tmp_path / "pred_scores"
    assert sorted(os.listdir(scores_dir)) == ["global_results-val.csv", "per-sequence_results-val.csv"]
    assert not any(name.endswith(".csv") for name in os.listdir(tmp_path / "pred"))
    header = (scores_dir / "global_results-val.csv").read_text().splitlines()[0]
    assert header == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    # one process gives the same numbers as two
    single = score_run("davis", str(tmp_path / "DAVIS"), str(tmp_path / "pred"))
    assert single.summary == {k: data[k] for k in single.summary}


def test_corrected_decay_past_255_frames(tmp_path):
    write_davis(_small_case(with_long=True), tmp_path / "DAVIS", tmp_path / "pred")
    args = ("davis", str(tmp_path / "DAVIS"), str(tmp_path / "pred"))
    official = score_run(*args, videos=["long256"])
    corrected = score_run(*args, videos=["long256"], corrected=True)
    assert math.isnan(official.summary["J-Decay"]) and math.isnan(official.summary["F-Decay"])
    assert corrected.summary["J-Decay"] > 0.1  # this sequence is better early than late
    assert corrected.summary["J-Mean"] == official.summary["J-Mean"]
    print_summary(official)  # NaN prints, it does not raise


def test_davis_errors_name_the_file(tmp_path, cli):
    write_davis(_small_case(), tmp_path / "DAVIS", tmp_path / "pred")
    base = ("--benchmark", "davis", "--davis_path", tmp_path / "DAVIS", "--pred_root", tmp_path / "pred")
    missing = tmp_path / "pred" / "vanish" / "00004.png"
    missing.unlink()
    _one_line_error(cli(*base), "vanish", str(missing))
    write_davis(_small_case(), tmp_path / "DAVIS", tmp_path / "pred")
    from sam2long.runtime.image_io import save_palette_png

    labels = np.zeros((96, 128), np.uint8)
    labels[5, 5] = 7  # vanish's first frame has objects 1 and 2 only
    save_palette_png(str(missing), labels, None)
    _one_line_error(cli(*base), "object id 7", str(missing))
    assert cli("--benchmark", "davis", "--pred_root", tmp_path / "pred").returncode == 2  # no --davis_path


def test_sav_layouts_strict_and_errors(tmp_path, cli):
    case = _small_case()
    write_sav(case, tmp_path / "gt", tmp_path / "pred", skip_pred=("late",))
    out = tmp_path / "sav.json"
    result = cli("--benchmark", "sav", "--gt_root", tmp_path / "gt", "--pred_root", tmp_path / "pred",
                  "--json", out, "--output_dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "no prediction folder" in result.stdout
    data = json.loads(out.read_text())
    assert set(data["per_object"]) == {"blobs", "vanish"} and data["videos_without_prediction"] == ["late"]
    assert set(data["per_object"]["blobs"]) == {"001", "002", "003"}
    assert data["J&F"] == pytest.approx((data["J"] + data["F"]) / 2)
    assert (tmp_path / "out" / "results.csv").read_text().startswith("sequence    ,obj,  J&F,    J,    F\n")
    _one_line_error(cli("--benchmark", "sav", "--gt_root", tmp_path / "gt", "--pred_root", tmp_path / "pred",
                         "--strict"), "late")
    gone = tmp_path / "pred" / "vanish" / "002" / "00002.png"
    gone.unlink()
    _one_line_error(cli("--benchmark", "sav", "--gt_root", tmp_path / "gt", "--pred_root", tmp_path / "pred"),
                    str(gone))


def test_sav_object_never_in_the_scored_ground_truth_is_an_error(tmp_path, cli):
    gt, pred = tmp_path / "gt" / "v" / "000", tmp_path / "pred" / "v" / "000"
    from sam2long.runtime.image_io import save_palette_png

    for folder in (gt, pred):
        folder.mkdir(parents=True)
        for t in range(4):
            mask = np.zeros((20, 30), np.uint8)
            mask[2:6, 2:6] = t in (0, 3)  # only on the first and last frames, which are not scored
            save_palette_png(str(folder / f"{t:05d}.png"), mask, None)
    with pytest.raises(Exception, match="empty in every scored ground-truth frame"):
        score_run("sav", str(tmp_path / "gt"), str(tmp_path / "pred"))
    _one_line_error(cli("--benchmark", "sav", "--gt_root", tmp_path / "gt", "--pred_root", tmp_path / "pred"),
                    str(gt))


def test_lvos_unseen_list_from_the_working_directory(tmp_path, cli, monkeypatch):
    case = _small_case()
    unseen = write_lvos(case, tmp_path / "LVOS", tmp_path / "pred")
    os.rename(unseen, tmp_path / "unseen_videos.txt")
    base = ("--benchmark", "lvos", "--lvos_path", tmp_path / "LVOS", "--pred_root", tmp_path / "pred")
    _one_line_error(cli(*base), "--unseen_list")
    monkeypatch.chdir(tmp_path)  # ./unseen_videos.txt, as the official tool reads it
    result = cli(*base, "--json", tmp_path / "l.json")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "l.json").read_text())
    assert data["J&F-Mean"] == pytest.approx(
        (data["J-seen-Mean"] + data["F-seen-Mean"] + data["J-unseen-Mean"] + data["F-unseen-Mean"]) / 4)
    assert [v["unseen"] for v in data["per_object"].values()].count(True) > 0


def test_mose_missing_video_scores_zero_and_lone_folder_quirk(tmp_path, cli):
    case = make_case("unsupervised")
    write_mose(case, tmp_path / "Annotations", tmp_path / "meta.json", tmp_path / "pred", skip_pred=("props2",))
    args = ("mose", str(tmp_path / "Annotations"), str(tmp_path / "pred"))
    result = score_run(*args, meta=str(tmp_path / "meta.json"))
    assert result.data["per_object"]["props2_1"]["J"] == 0 and result.notes
    # with a single video in the prediction root the official tool descends into it
    only = score_run(*args, videos=["props1"], meta=str(tmp_path / "meta.json"))
    fixed = score_run(*args, videos=["props1"], meta=str(tmp_path / "meta.json"), corrected=True)
    os.rename(tmp_path / "pred" / "voidu", tmp_path / "voidu")
    lone = score_run(*args, videos=["props1"], meta=str(tmp_path / "meta.json"))
    assert only.summary["J&F"] == fixed.summary["J&F"] > 0
    assert lone.summary["J&F"] == lone.summary["J&F_new"] == 0 and fixed.summary["J&F"] > 0
    # frames are the prediction's PNGs by number: one missing shifts the mapping, two are too few
    for t in (3, 5):
        (tmp_path / "pred" / "props1" / f"{t:05d}.png").unlink()
    _one_line_error(cli("--benchmark", "mose", "--gt_root", tmp_path / "Annotations", "--meta",
                        tmp_path / "meta.json", "--pred_root", tmp_path / "pred", "--corrected"),
                    "6 prediction PNGs", str(tmp_path / "pred" / "props1"))
