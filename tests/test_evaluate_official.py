"""tools/evaluation gives the official tools' numbers on the synthetic cases.

The expected numbers in tests/data/evaluation were made by running the official DAVIS, SA-V,
LVOS and MOSEv2 evaluation code on these same cases (benchmarks/official_eval.py; the commands,
commits and package versions are in each file and in the folder's README). The cases are
rebuilt here from their seed; a fingerprint check catches a generator that drifted.
"""

import json
import math

import pytest

from benchmarks.eval_cases import make_case, write_davis, write_lvos, write_mose, write_sav
from tests.conftest import ROOT
from sam2long.tools.evaluation import score_run

DATA = ROOT / "tests" / "data" / "evaluation"
TOLERANCE = {"davis": 1e-6, "lvos": 1e-6, "sav": 1e-4}


def _expected(name):
    return json.loads((DATA / f"{name}.json").read_text())


def _close(ours, theirs, tol):
    if theirs is None:
        return ours is None
    if math.isnan(theirs):
        return math.isnan(ours)
    return abs(ours - theirs) <= tol


def _run(expected, tmp_path):
    case = make_case(expected["case"])
    assert case.fingerprint() == expected["fingerprint"], (
        "the synthetic case generator changed; regenerate tests/data/evaluation (see its README)")
    benchmark = expected["benchmark"]
    if benchmark == "davis":
        write_davis(case, tmp_path / "DAVIS", tmp_path / "pred", unsupervised=expected["task"] == "unsupervised")
        return score_run("davis", str(tmp_path / "DAVIS"), str(tmp_path / "pred"), task=expected["task"])
    if benchmark == "sav":
        write_sav(case, tmp_path / "gt", tmp_path / "pred", per_object=expected["per_object_layout"],
                  skip_pred=tuple(expected["skip_pred"]))
        return score_run("sav", str(tmp_path / "gt"), str(tmp_path / "pred"))
    if benchmark == "lvos":
        unseen = write_lvos(case, tmp_path / "LVOS", tmp_path / "pred")
        return score_run("lvos", str(tmp_path / "LVOS"), str(tmp_path / "pred"), unseen_list=unseen)
    write_mose(case, tmp_path / "Annotations", tmp_path / "meta.json", tmp_path / "pred",
               skip_pred=tuple(expected["skip_pred"]))
    return score_run("mose", str(tmp_path / "Annotations"), str(tmp_path / "pred"),
                     meta=str(tmp_path / "meta.json"))


@pytest.mark.parametrize("name", ["davis_main", "davis_unsupervised", "sav_main", "sav_davislike", "lvos_main"])
def test_numbers_and_files_match_the_official_tool(name, tmp_path):
    expected = _expected(name)
    result = _run(expected, tmp_path)
    tol = TOLERANCE[expected["benchmark"]]
    assert list(result.summary) == list(expected["globals"])  # the official names, in order
    for key, value in expected["globals"].items():
        assert _close(result.summary[key], value, tol), (key, result.summary[key], value)

    per_object = result.data["per_object"]
    if expected["benchmark"] == "sav":  # {video: {obj: values}}
        assert {v: list(objs) for v, objs in per_object.items()} == \
            {v: list(objs) for v, objs in expected["per_object"].items()}
        flat = [(per_object[v][o], values) for v, objs in expected["per_object"].items() for o, values in objs.items()]
    else:
        assert list(per_object) == list(expected["per_object"])
        flat = [(per_object[n], values) for n, values in expected["per_object"].items()]
    for ours, theirs in flat:
        for key, value in theirs.items():
            assert _close(ours[key], value, tol), (key, ours[key], value)

    frames = result.data["per_frame"]
    for name_, theirs in expected["per_frame"].items():
        if expected["benchmark"] == "sav":
            for obj, values in theirs.items():
                assert frames[name_][obj]["J"] == pytest.approx(values["J"], abs=1e-12)
                assert frames[name_][obj]["F"] == pytest.approx(values["F"], abs=1e-12)
        else:
            assert frames[name_]["J"] == pytest.approx(theirs["J"], abs=1e-12)
            assert frames[name_]["F"] == pytest.approx(theirs["F"], abs=1e-12)

    assert result.files == expected["files"]  # byte for byte


def test_mose_matches_the_official_tool(tmp_path):
    expected = _expected("mose_main")
    result = _run(expected, tmp_path)
    assert result.summary == expected["globals"]  # rounded to 2 decimals, as scores.txt
    assert result.files["scores.txt"] == expected["files"]["scores.txt"]
    metrics = json.loads(result.files["metrics.json"])
    assert metrics.pop("total_time") >= 0
    assert metrics == expected["per_object"]
    assert result.data["per_object"] == expected["per_object"]
    assert result.data["videos_without_prediction"] == expected["skip_pred"]
    exact = result.data["per_object_exact"]  # what metrics.json shows rounded
    assert set(exact) == set(expected["per_object_exact"])  # the official order is os.listdir's
    for name, record in expected["per_object_exact"].items():
        for ours, theirs in zip(exact[name], record):
            assert (ours is None and theirs is None) or abs(ours - theirs) <= 1e-12, (name, exact[name], record)


def test_expected_data_names_its_provenance():
    for path in sorted(DATA.glob("*_*.json")):
        data = json.loads(path.read_text())
        assert data["versions"]["numpy"], path
        if data["benchmark"] != "assignment":
            assert len(data["commit"]) == 40 and data["command"].startswith("python"), path
