"""No output of any tool replaces, or lands inside, any input (issue 21 items 1-3).

One table: every tool, each of its outputs against each of its inputs, the output given as
the input through a relative path, a `..` path, a symbolic link and (files) a hard link.
Every case must be refused before the model loads (the loaders are replaced by a sentinel)
with a message naming the input, and every input's bytes must be unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MICRO_CFG, ROOT, synthetic_frame, synthetic_mask

SAMPLE = ROOT / "samples" / "shapes.mp4"


class Loaded(Exception):
    """The tool got past its checks to the model (or the scoring)."""


def _refuse_work(*args, **kwargs):
    raise Loaded()


@pytest.fixture(scope="module")
def ws(tmp_path_factory, micro_checkpoints):
    """One workspace of inputs, shared by every case (a refused case changes nothing)."""
    root = tmp_path_factory.mktemp("ws")
    (root / "video").mkdir()
    shutil.copy(SAMPLE, root / "video" / "in.mp4")
    frames = root / "frames" / "clip"
    frames.mkdir(parents=True)
    for t in range(2):
        Image.fromarray(synthetic_frame(t, 240, 320)).save(frames / f"{t:05d}.jpg")
    (root / "prompts").mkdir()
    Image.fromarray(synthetic_mask(0, 240, 320).astype(np.uint8)).save(root / "masks_in.png")
    (root / "prompts" / "p.json").write_text('[{"id": 1, "mask": "../masks_in.png"}]')
    (root / "model").mkdir()
    shutil.copy(MICRO_CFG, root / "model" / "cfg.yaml")
    shutil.copy(micro_checkpoints["plain"], root / "model" / "ckpt.pt")
    (root / "engines").mkdir()
    (root / "engines" / "manifest.json").write_text("{}")
    # A DAVIS-layout dataset (also the evaluator's ground truth) and predictions.
    davis = root / "DAVIS"
    for t in range(2):
        (davis / "JPEGImages" / "480p" / "v1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_frame(t)).save(davis / "JPEGImages" / "480p" / "v1" / f"{t:05d}.jpg")
    (davis / "Annotations" / "480p" / "v1").mkdir(parents=True)
    Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(davis / "Annotations" / "480p" / "v1" / "00000.png")
    (root / "lists").mkdir()
    (root / "lists" / "val.txt").write_text("v1\n")
    (root / "preds" / "v1").mkdir(parents=True)
    Image.fromarray(synthetic_mask(0).astype(np.uint8)).save(root / "preds" / "v1" / "00000.png")
    (root / "sub").mkdir()  # for the `..` paths
    return root


INPUTS = {  # name -> path in the workspace
    "video": "video/in.mp4", "frames": "frames/clip", "prompts": "prompts/p.json", "prompt_mask": "masks_in.png",
    "config": "model/cfg.yaml", "checkpoint": "model/ckpt.pt", "engine_dir": "engines",
    "base_video_dir": "DAVIS/JPEGImages/480p", "input_mask_dir": "DAVIS/Annotations/480p",
    "video_list": "lists/val.txt", "gt": "DAVIS", "preds": "preds",
}
_MODEL = ["--sam2_cfg", "{config}", "--sam2_checkpoint", "{checkpoint}", "--device", "cpu"]
TOOLS = {  # name -> (argv with {input} and {out} fields, outputs as (flag, kind), inputs it reads)
    "video": (["--video_path", "{video}", "--prompts", "{prompts}", *_MODEL, "--engine_dir", "{engine_dir}",
               "--backend", "torch", "--output_video", "{out}/o.mp4", "--output_mask_dir", "{out}/m"],
              [("--output_video", "file"), ("--output_mask_dir", "folder")],
              ["video", "prompts", "prompt_mask", "config", "checkpoint", "engine_dir"]),
    "video_frames": (["--video_path", "{frames}", "--prompts", "{prompts}", *_MODEL, "--output_video",
                      "{out}/o.mp4", "--output_mask_dir", "{out}/m"],
                     [("--output_video", "file"), ("--output_mask_dir", "folder")], ["frames"]),
    "dataset": (["--base_video_dir", "{base_video_dir}", "--input_mask_dir", "{input_mask_dir}",
                 "--video_list_file", "{video_list}", *_MODEL, "--engine_dir", "{engine_dir}",
                 "--output_mask_dir", "{out}/m", "--trace_dir", "{out}/t"],
                [("--output_mask_dir", "folder"), ("--trace_dir", "folder")],
                ["base_video_dir", "input_mask_dir", "video_list", "config", "checkpoint", "engine_dir"]),
    "evaluate": (["--benchmark", "davis", "--davis_path", "{gt}", "--pred_root", "{preds}",
                  "--json", "{out}/s.json", "--output_dir", "{out}/scores"],
                 [("--json", "file"), ("--output_dir", "folder")], ["gt", "preds"]),
    "build_engines": (["--sam2_cfg", "{config}", "--sam2_checkpoint", "{checkpoint}", "--out_dir", "{out}/e"],
                      [("--out_dir", "folder")], ["config", "checkpoint"]),
    "random_checkpoint": (["--sam2_cfg", "{config}", "--out", "{out}/r.pt"],
                          [("--out", "file")], ["config"]),
}
VARIANTS = ("relative", "dotdot", "symlink", "hardlink")


def _main(tool: str, monkeypatch):
    """The tool's main, with every way to the heavy work replaced by the sentinel."""
    from sam2long.export import build_engines
    from sam2long.tools import cli, evaluate, make_random_checkpoint, video_inference, vos_inference

    monkeypatch.setattr(cli, "load_backend", _refuse_work)
    monkeypatch.setattr(video_inference, "load_backend", _refuse_work)
    monkeypatch.setattr(evaluate, "score_run", _refuse_work)
    monkeypatch.setattr(build_engines, "build", _refuse_work)
    monkeypatch.setattr(make_random_checkpoint, "write_checkpoint", _refuse_work)
    return {"video": video_inference.main, "video_frames": video_inference.main, "dataset": vos_inference.main,
            "evaluate": evaluate.main, "build_engines": build_engines.main,
            "random_checkpoint": make_random_checkpoint.main}[tool]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _cases():
    for tool, (_, outputs, inputs) in TOOLS.items():
        for flag, kind in outputs:
            for name in inputs:
                for variant in VARIANTS if kind == "file" else VARIANTS[:3]:  # no hard links to folders
                    yield pytest.param(tool, flag, kind, name, variant, id=f"{tool}:{flag}={name}:{variant}")


def _target(ws: Path, name: str, kind: str) -> Path:
    """What the output is pointed at: the input itself, a file in an input folder (a file
    output), or the folder holding an input file (a folder output)."""
    path = ws / INPUTS[name]
    if kind == "file" and path.is_dir():
        return next(p for p in sorted(path.rglob("*")) if p.is_file())
    if kind == "folder" and path.is_file():
        return path.parent
    return path


def _spell(target: Path, ws: Path, variant: str, tmp_path: Path) -> str:
    if variant == "relative":
        return os.path.relpath(target, os.getcwd())
    if variant == "dotdot":
        return str(ws / "sub" / ".." / target.relative_to(ws))
    if variant == "symlink":
        link = tmp_path / f"link_{target.name}"
        link.symlink_to(target)
        return str(link)
    link = tmp_path / f"hard_{target.name}"
    os.link(target, link)
    return str(link)


@pytest.mark.parametrize("tool,flag,kind,name,variant", list(_cases()))
def test_no_output_replaces_an_input(ws, tmp_path, monkeypatch, capsys, tool, flag, kind, name, variant):
    monkeypatch.chdir(tmp_path)
    template, _, _ = TOOLS[tool]
    out = tmp_path / "out"
    argv = [a.format(out=out, **{k: ws / v for k, v in INPUTS.items()}) for a in template]
    target = _target(ws, name, kind)
    argv[argv.index(flag) + 1] = _spell(target, ws, variant, tmp_path)
    before = _digest(ws)
    rc = _main(tool, monkeypatch)(argv)  # the sentinel (Loaded) would fail the test here
    err = capsys.readouterr().err
    assert rc in (1, 2) and "input" in err, (rc, err)
    assert _digest(ws) == before


@pytest.mark.parametrize("tool", list(TOOLS))
def test_the_table_s_commands_reach_the_work(ws, tmp_path, monkeypatch, tool):
    """The control: with outputs of their own, each command passes every check."""
    monkeypatch.chdir(tmp_path)
    template, _, _ = TOOLS[tool]
    argv = [a.format(out=tmp_path / "out", **{k: ws / v for k, v in INPUTS.items()}) for a in template]
    with pytest.raises(Loaded):
        _main(tool, monkeypatch)(argv)
