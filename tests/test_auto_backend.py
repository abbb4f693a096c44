"""--backend auto on a CPU: decided by timing the model's own stages in torch and onnx, cached
per machine and model, graphs built once into the user cache unless told not to."""

import json
import os
from pathlib import Path

import pytest

from sam2long.engine import auto_backend
from sam2long.engine.auto_backend import ChoiceCache, choice_key, choose_cpu_backend, decide, stage_plan
from sam2long.resources import cache_dir
from tests.conftest import MICRO_CFG


def _stages(total_ms, split=(0.4, 0.3, 0.2, 0.1)):
    return dict(zip(auto_backend.STAGES, (total_ms * f / 1e3 for f in split)))


@pytest.mark.parametrize("torch_ms,onnx_ms,want", [
    (100, 50, "onnx"),  # clearly faster
    (100, 98, "torch"),  # within the margin: not worth onnx's extra memory
    (50, 100, "torch"),  # slower
])
def test_decision_follows_the_measured_frame_time(torch_ms, onnx_ms, want):
    choice, why = decide({"torch": _stages(torch_ms), "onnx": _stages(onnx_ms)})
    assert choice == want
    assert f"torch {torch_ms} ms" in why and f"onnx {onnx_ms} ms" in why
    assert "image" in why and "attention" in why and "decoder" in why and "memory" in why
    if (torch_ms, onnx_ms) == (100, 98):
        assert "not worth" in why


def test_decision_weighs_every_stage_not_one():
    # onnx wins the attention, torch the image encoder: each stage goes where it is faster
    torch_s = {"image": 0.10, "attention": 0.20, "decoder": 0.02, "memory": 0.01}
    onnx_s = {"image": 0.25, "attention": 0.10, "decoder": 0.02, "memory": 0.01}
    name, why = decide({"torch": torch_s, "onnx": onnx_s})
    assert name == "mixed"
    assert "image torch, attention onnx, decoder torch, memory torch): 230 ms" in why
    assert stage_plan({"torch": torch_s, "onnx": onnx_s}) == {
        "image": "torch", "attention": "onnx", "decoder": "torch", "memory": "torch"}


def test_the_stage_plan_needs_a_margin_per_stage_and_per_frame():
    torch_s = {"image": 1.00, "attention": 2.00, "decoder": 0.10, "memory": 0.10}
    # 4% faster on every stage: within ONNX_MARGIN per stage, all torch
    assert set(stage_plan({"torch": torch_s, "onnx": {k: v / 1.04 for k, v in torch_s.items()}}).values()) == {"torch"}
    # a clear gain on one small stage only: under 5% of the frame, not worth a second library
    small = dict(torch_s, memory=0.05)
    assert set(stage_plan({"torch": torch_s, "onnx": {**torch_s, **small}}).values()) == {"torch"}
    # clearly faster everywhere: all onnx
    assert set(stage_plan({"torch": torch_s, "onnx": {k: v / 2 for k, v in torch_s.items()}}).values()) == {"onnx"}
    # asked to keep a stage in torch: kept, however fast onnx runs it
    plan = stage_plan({"torch": torch_s, "onnx": {k: v / 2 for k, v in torch_s.items()}}, torch_stages=("memory",))
    assert plan == {"image": "onnx", "attention": "onnx", "decoder": "onnx", "memory": "torch"}
    assert "memory kept in torch" in decide({"torch": torch_s, "onnx": {k: v / 2 for k, v in torch_s.items()}},
                                            torch_stages=("memory",))[1]


def test_the_key_changes_with_machine_versions_and_model():
    machine = {"cpu": "X", "cores": 2, "torch_threads": 2, "torch": "2.1", "onnxruntime": "1.20"}
    base = choice_key(machine, "cfg", "ckpt")
    assert base == choice_key(dict(machine), "cfg", "ckpt")
    for change in ({"cpu": "Y"}, {"cores": 16}, {"torch_threads": 1}, {"torch": "2.2"}, {"onnxruntime": "1.21"}):
        assert choice_key({**machine, **change}, "cfg", "ckpt") != base, change
    assert choice_key(machine, "cfg2", "ckpt") != base and choice_key(machine, "cfg", "ckpt2") != base


def test_the_cache_file_round_trips_and_survives_damage(tmp_path):
    cache = ChoiceCache(tmp_path / "choice.json")
    assert cache.get("k") is None
    cache.put("k", {"seconds": {"torch": _stages(10)}})
    cache.put("j", {"seconds": {"torch": _stages(20)}})
    assert ChoiceCache(tmp_path / "choice.json").get("k")["seconds"]["torch"] == _stages(10)
    (tmp_path / "choice.json").write_text("{not json")
    assert cache.get("k") is None  # measured again, not an error


def test_no_graphs_and_no_build_means_torch_unmeasured(tmp_path, micro_checkpoints):
    probes = []
    choice = choose_cpu_backend(MICRO_CFG, str(micro_checkpoints["plain"]), "cpu", None, build=False,
                                cache=ChoiceCache(tmp_path / "c.json"), probe=probes.append)
    assert choice.name == "torch" and choice.backend.name == "torch"
    assert "not measured" in choice.reason and "--no_build_graphs" in choice.reason
    assert probes == [] and not (tmp_path / "c.json").exists()
    assert not (cache_dir() / "graphs").exists() or not any(
        (cache_dir() / "graphs").iterdir())


@pytest.fixture(scope="module")
def real_choice(tmp_path_factory, micro_checkpoints):
    """One real `--backend auto` on the micro model: graphs built into an empty user cache of
    this module's own (other test files must not find its choice), both backends' stages
    timed, the choice recorded."""
    import contextlib
    import io

    from sam2long.tools.cli import build_chosen_backend

    saved = {k: os.environ.get(k) for k in ("SAM2LONG_NO_BUILD_GRAPHS", "XDG_CACHE_HOME")}
    os.environ.pop("SAM2LONG_NO_BUILD_GRAPHS", None)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("auto_cache"))
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            backend = build_chosen_backend("auto", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu",
                                           None, "fp32")
        yield backend, out.getvalue()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_real_run_builds_graphs_once_times_both_and_records(real_choice, micro_checkpoints, monkeypatch, capsys):
    backend, note = real_choice
    assert "building this model's ONNX graphs once" in note
    line = [l for l in note.splitlines() if l.startswith(("NOTE: --backend auto: torch:",
                                                          "NOTE: --backend auto: onnx:",
                                                          "NOTE: --backend auto: mixed ("))]
    assert len(line) == 1 and " ms (image " in line[0] and "measured now" in line[0], note
    data = json.loads((cache_dir() / "backend_choice.json").read_text())
    (entry,) = [e for e in data.values() if e["checkpoint"] == str(micro_checkpoints["lively"])]
    assert set(entry["seconds"]) == {"torch", "onnx"}
    for seconds in entry["seconds"].values():
        assert set(seconds) == set(auto_backend.STAGES) and all(v > 0 for v in seconds.values())
    assert backend.name == decide(entry["seconds"])[0]
    graphs = list((cache_dir() / "graphs").glob("*/manifest.json"))
    assert len(graphs) == 1

    # again: nothing measured nor built, the same choice, and it says where the numbers come from
    from sam2long.export import build_engines
    from sam2long.tools.cli import build_chosen_backend

    def refuse(*a, **k):
        raise AssertionError("must not run again")
    monkeypatch.setattr(auto_backend, "probe_stage_seconds", refuse)
    monkeypatch.setattr(build_engines, "build_onnx", refuse)
    again = build_chosen_backend("auto", MICRO_CFG, str(micro_checkpoints["lively"]), "cpu", None, "fp32")
    assert again.name == backend.name
    assert "kept in" in capsys.readouterr().out


def test_fake_timings_choose_and_the_cache_is_per_model(real_choice, micro_checkpoints, tmp_path, monkeypatch):
    """With the graphs the real run built (as --engine_dir), fake stage timings decide; the
    second call with the same model reuses them, another checkpoint is measured anew."""
    graphs = next((cache_dir() / "graphs").glob("*/manifest.json")).parent
    calls = []

    def fake(backend):
        calls.append(backend.name)
        return _stages(40 if backend.name == "onnx" else 100)

    cache = ChoiceCache(tmp_path / "c.json")
    lively = str(micro_checkpoints["lively"])
    first = choose_cpu_backend(MICRO_CFG, lively, "cpu", str(graphs), cache=cache, probe=fake)
    assert first.name == "onnx" and first.backend.name == "onnx" and sorted(calls) == ["onnx", "torch"]
    assert "onnx 40 ms" in first.reason and "torch 100 ms" in first.reason
    second = choose_cpu_backend(MICRO_CFG, lively, "cpu", str(graphs), cache=cache, probe=fake)
    assert second.name == "onnx" and len(calls) == 2 and "kept in" in second.reason
    # the graphs are for the lively checkpoint: the plain one has none here, and is not built
    plain = choose_cpu_backend(MICRO_CFG, str(micro_checkpoints["plain"]), "cpu", str(graphs), cache=cache,
                               probe=fake, build=False)
    assert plain.name == "torch" and "cannot be used" in plain.reason and len(calls) == 2


def test_the_benchmark_dry_run_compares_the_pick_with_tracked_speed(real_choice, micro_checkpoints, tmp_path,
                                                                     monkeypatch):
    """benchmarks/bench_auto_choice.py --dry_run: auto's real pick against the tracked speed of
    each backend (the tracking runs' subprocesses are stood in for: they cost seconds each,
    and the timings themselves are the benchmark's job, not a test's)."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_auto_choice

    runs = []

    def fake_run_side(side, model, frames, prompts, num_pathway, engine_dir, reference_repo, out, python, args):
        runs.append(side)
        assert model[1] == str(micro_checkpoints["lively"]) and len(os.listdir(frames)) == 3
        return {"seconds": {"onnx": 1.0, "auto": 0.9}.get(side, 1.5), "num_frames": 3}
    monkeypatch.setattr(bench_auto_choice, "run_side", fake_run_side)

    graphs = next((cache_dir() / "graphs").glob("*/manifest.json")).parent
    out = tmp_path / "auto.json"
    assert bench_auto_choice.main(["--dry_run", "--engine_dir", str(graphs), "--checkpoint",
                                   str(micro_checkpoints["lively"]), "--json", str(out)]) == 0
    micro = json.loads(out.read_text())["micro"]
    assert micro["pick"] in ("torch", "onnx", "mixed")
    mixed = micro["pick"] == "mixed"  # the micro model's stages are a few ms: either can win
    assert micro["tracked_fps"] == {"torch": 2.0, "onnx": 3.0, **({"auto": 3 / 0.9} if mixed else {})}
    assert sorted(runs) == (["auto"] if mixed else []) + ["onnx", "torch"]
    assert micro["agrees"] == bench_auto_choice.verdict(micro["pick"], micro["tracked_fps"])
    assert bench_auto_choice.verdict("torch", {"torch": 10.0, "onnx": 10.2}).startswith("yes")
    assert bench_auto_choice.verdict("torch", {"torch": 10.0, "onnx": 12.0}) == "NO"
    assert bench_auto_choice.verdict("mixed", {"torch": 10.0, "onnx": 12.0, "auto": 12.5}) == "yes"
    assert bench_auto_choice.verdict("mixed", {"torch": 10.0, "onnx": 12.0, "auto": 11.8}).startswith("yes")
    assert bench_auto_choice.verdict("mixed", {"torch": 10.0, "onnx": 12.0, "auto": 10.5}) == "NO"


def test_a_failed_graph_build_falls_back_to_torch(tmp_path, micro_checkpoints, monkeypatch):
    """Building the graphs is an optimisation: a failure there (a full disk, an export error)
    runs torch with the reason, it does not stop the tool."""
    from sam2long.export import build_engines

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(build_engines, "build_onnx", broken)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    choice = choose_cpu_backend(MICRO_CFG, str(micro_checkpoints["plain"]), "cpu", None, build=True,
                                cache=ChoiceCache(tmp_path / "c.json"), say=lambda line: None)
    assert choice.name == "torch" and "failed" in choice.reason and "No space left" in choice.reason


def test_graphs_from_an_older_exporter_are_rebuilt_in_the_cache(real_choice, micro_checkpoints, tmp_path,
                                                                 monkeypatch):
    """auto's own graphs written by an older exporter are rebuilt when building is allowed;
    with building off they are not used (another format may compute other masks)."""
    from sam2long.export import build_engines

    manifest = next((cache_dir() / "graphs").glob("*/manifest.json"))
    original = manifest.read_text()
    older = json.loads(original)
    del older["graph_format"]  # as written before the field existed
    built = []

    def fake_build(cfg, ckpt, out, force=False, **kwargs):
        built.append(force)
        manifest.write_text(original)
        return Path(out)

    def fake_probe(backend):
        return _stages(40 if backend.name == "onnx" else 100)

    monkeypatch.setattr(build_engines, "build_onnx", fake_build)
    lively = str(micro_checkpoints["lively"])
    try:
        manifest.write_text(json.dumps(older))
        kept = choose_cpu_backend(MICRO_CFG, lively, "cpu", None, build=False,
                                  cache=ChoiceCache(tmp_path / "a.json"), probe=fake_probe)
        assert kept.name == "torch" and "cannot be used" in kept.reason and built == []
        rebuilt = choose_cpu_backend(MICRO_CFG, lively, "cpu", None, cache=ChoiceCache(tmp_path / "b.json"),
                                     probe=fake_probe)
        assert rebuilt.name == "onnx" and built == [True]
    finally:
        manifest.write_text(original)
