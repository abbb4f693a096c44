"""Sharded scoring: each shard keeps its per-video scores in its own folder, and
`tools/evaluate.py --merge_shards` gives exactly the numbers of one unsharded run."""

import json

import numpy as np
import pytest

from benchmarks.eval_cases import (Case, seq_blobs, seq_late, seq_short, seq_vanish, write_davis, write_lvos,
                                   write_mose, write_sav)
from sam2long.runtime.sharding import select_shard
from sam2long.tools import evaluate
from sam2long.tools.evaluation import (DatasetError, merge_shards, score_run, shard_scores_name,
                                       write_shard_scores)


def _case():
    rng = np.random.default_rng(11)
    return Case("shards", [seq_blobs(rng, t_len=6), seq_vanish(rng), seq_short(rng, "short7", 7), seq_late(rng)])


def _same(a, b):
    """Equal to the last bit, NaN included (json writes floats as their exact repr)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _layout(benchmark, tmp_path):
    """(gt_path, pred_root, score_run keywords) of a small synthetic set in the benchmark's layout."""
    case, pred = _case(), tmp_path / "pred"
    if benchmark == "davis":
        write_davis(case, tmp_path / "DAVIS", pred)
        return tmp_path / "DAVIS", pred, {}
    if benchmark == "sav":
        write_sav(case, tmp_path / "gt", pred, skip_pred=("late",))
        return tmp_path / "gt", pred, {}
    if benchmark == "lvos":
        unseen = write_lvos(case, tmp_path / "LVOS", pred)
        return tmp_path / "LVOS", pred, {"unseen_list": unseen}
    write_mose(case, tmp_path / "ann", tmp_path / "meta.json", pred, skip_pred=("vanish",))
    return tmp_path / "ann", pred, {"meta": str(tmp_path / "meta.json")}


@pytest.mark.parametrize("benchmark", ["davis", "sav", "lvos", "mose"])
@pytest.mark.parametrize("total", [2, 3])
def test_merged_shards_give_the_unsharded_numbers(tmp_path, benchmark, total):
    gt, pred, kw = _layout(benchmark, tmp_path)
    videos = sorted(["blobs", "vanish", "short7", "late"])
    whole = score_run(benchmark, str(gt), str(pred), videos, **kw)
    scores = tmp_path / "pred_scores"
    for index in range(total):
        shard = select_shard(videos, index, total)
        result = score_run(benchmark, str(gt), str(pred), shard, **kw)
        write_shard_scores(str(scores / shard_scores_name(index, total)), index, total, benchmark,
                           str(gt), shard, result)
    merged = merge_shards(str(scores))
    assert _same(merged.summary, whole.summary)
    assert _same(merged.objects, whole.objects)
    assert _same(merged.data.get("per_object"), whole.data.get("per_object"))
    for name, text in whole.files.items():
        if name == "metrics.json":  # holds the scoring time
            ours, theirs = json.loads(merged.files[name]), json.loads(text)
            ours.pop("total_time"), theirs.pop("total_time")
            assert ours == theirs
        else:
            assert merged.files[name] == text, name
    # averaging the shards' own means would not do: their objects differ in number
    shard_means = [score_run(benchmark, str(gt), str(pred), select_shard(videos, i, total), **kw).summary
                   for i in range(total)]
    key = next(iter(whole.summary))
    assert not _same(float(np.mean([m[key] for m in shard_means])), whole.summary[key])


def _two_shards(tmp_path):
    gt, pred, _ = _layout("davis", tmp_path)
    videos = ["blobs", "late", "short7", "vanish"]
    scores = tmp_path / "pred_scores"
    for index in range(2):
        shard = select_shard(videos, index, 2)
        write_shard_scores(str(scores / shard_scores_name(index, 2)), index, 2, "davis", str(gt), shard,
                           score_run("davis", str(gt), str(pred), shard))
    return scores


def test_merge_cli_writes_the_official_files_and_refuses_an_incomplete_run(tmp_path, capsys):
    scores = _two_shards(tmp_path)
    assert evaluate.main(["--merge_shards", str(scores), "--json", str(tmp_path / "all.json")]) == 0
    out = capsys.readouterr().out
    assert "merged 2 shards" in out and "J&F-Mean" in out
    whole = score_run("davis", str(tmp_path / "DAVIS"), str(tmp_path / "pred"))
    assert (scores / "global_results-val.csv").read_text() == whole.files["global_results-val.csv"]
    assert json.loads((tmp_path / "all.json").read_text())["J&F-Mean"] == whole.summary["J&F-Mean"]
    assert evaluate.build_parser().format_help().count("--merge_shards") >= 2  # the flag and its example
    # scoring flags make no sense with a merge
    assert evaluate.main(["--merge_shards", str(scores), "--benchmark", "davis"]) == 2
    assert "drop --benchmark" in capsys.readouterr().err
    # a shard missing: one line naming it
    (scores / "shard-1-of-2" / "scores.json").unlink()
    assert evaluate.main(["--merge_shards", str(scores)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard(s) [1] of 2" in err[0]


def test_merge_refuses_mixed_runs_and_videos_scored_twice(tmp_path):
    scores = _two_shards(tmp_path)
    stale = scores / "shard-0-of-3"
    stale.mkdir()
    (stale / "scores.json").write_text((scores / "shard-0-of-2" / "scores.json").read_text()
                                       .replace('"num_shards": 2', '"num_shards": 3'))
    with pytest.raises(DatasetError, match=r"split \[2, 3\] ways"):
        merge_shards(str(scores))
    (stale / "scores.json").unlink()
    doc = json.loads((scores / "shard-1-of-2" / "scores.json").read_text())
    doc["scored_videos"].append("blobs")
    (scores / "shard-1-of-2" / "scores.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="scored by shards 0 and 1"):
        merge_shards(str(scores))
    with pytest.raises(DatasetError, match="no shard-<i>-of-<n>"):
        merge_shards(str(tmp_path / "pred"))


def test_two_sharded_score_runs_merge_into_the_unsharded_numbers(tmp_path, micro_checkpoints, capsys):
    """tools/vos_inference.py --score with --num_chunks 2: each shard writes its own folder (no
    shard overwrites another), and the merge equals the unsharded run's own --score."""
    from sam2long.tools import vos_inference
    from tests.conftest import MICRO_CFG, write_scored_dataset

    root = tmp_path / "DAVIS"
    write_scored_dataset(root, ("a", "b", "c"), 4, offset_per_video=1)
    out = tmp_path / "pred"
    args = ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(micro_checkpoints["lively"]), "--device", "cpu",
            "--base_video_dir", str(root / "JPEGImages" / "480p"),
            "--input_mask_dir", str(root / "Annotations" / "480p"), "--output_mask_dir", str(out),
            "--score", "davis", "--backend", "torch"]
    for chunk in ("0", "1"):
        assert vos_inference.main(args + ["--num_chunks", "2", "--chunk_id", chunk]) == 0
    assert "--merge_shards" in capsys.readouterr().out
    scores = tmp_path / "pred_scores"
    assert sorted(p.name for p in scores.iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    for name, videos in (("shard-0-of-2", ["a", "b"]), ("shard-1-of-2", ["c"])):
        doc = json.loads((scores / name / "scores.json").read_text())
        assert doc["scored_videos"] == videos
        assert (scores / name / "global_results-val.csv").is_file()
    assert evaluate.main(["--merge_shards", str(scores), "--output_dir", str(tmp_path / "merged")]) == 0
    # the unsharded run (every video is complete, so it only scores) into <out>_scores/
    assert vos_inference.main(args) == 0
    for name in ("global_results-val.csv", "per-sequence_results-val.csv"):
        assert (tmp_path / "merged" / name).read_text() == (scores / name).read_text(), name
    merged = merge_shards(str(scores))
    whole = score_run("davis", str(root), str(out), ["a", "b", "c"])
    assert _same(merged.summary, whole.summary) and _same(merged.objects, whole.objects)
