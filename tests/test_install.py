"""`pip install .` (not editable) gives a working install, run from another folder.

The wheel is built from a copy of this checkout and installed with `--no-deps` into a fresh
venv. That venv sees the project's dependencies (torch, sam2, ...) through a `.pth` path line
to this interpreter's site-packages: a path line only adds the folder to `sys.path`, so the
`.pth` files inside it, among them the editable install's import hook, are not run and cannot
shadow the wheel (the test checks where `sam2long` comes from). About 30 s on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

# What a build must not see: local environments, outputs and caches of a working checkout.
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "outputs", "checkpoints", "engines", "build",
                                     "test-artifacts", ".reference", ".whl", "*.egg-info",
                                     "__pycache__", ".pytest_cache", "dist")


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, env for running it): the project's wheel installed non-editable."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE, symlinks=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", tmp / "dist", source])
    wheel = next((tmp / "dist").glob("sam2long_engine-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "project_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, env, elsewhere, Path(purelib)


def test_wheel_is_one_package_with_its_data(installed):
    python, env, elsewhere, purelib = installed
    done = _run([python, "-c", """
import importlib.util, sam2long
from sam2long.resources import config_file, sample_file
from sam2long.tools import video_inference, vos_inference, gradio_app, evaluate
from sam2long.export import build_engines
from sam2long.runtime.tracker import SAM2LongTracker
print(sam2long.__file__)
print(len(sam2long.__path__))
print(config_file().is_file(), sample_file().is_file(), config_file())
print([m for m in ("tools", "engine", "runtime", "export", "configs", "samples") if importlib.util.find_spec(m)])
"""], cwd=elsewhere, env=env)
    where, paths, data, generic = done.stdout.strip().splitlines()
    # The wheel's package, not the editable install of the checkout beside the dependencies.
    assert Path(where).parent == purelib / "sam2long", where
    assert paths == "1"
    assert data.startswith("True True ") and str(purelib) in data, data
    assert generic == "[]", generic


def test_installed_tools_run_the_main_job_from_another_folder(installed):
    python, env, elsewhere, purelib = installed
    scripts = python.parent
    for tool in ("sam2long-video", "sam2long-vos", "sam2long-evaluate", "sam2long-build-engines",
                 "sam2long-download", "sam2long-random-checkpoint", "sam2long-demo"):
        done = _run([scripts / tool, "--version"], cwd=elsewhere, env=env)
        assert done.stdout.strip().endswith("(sam2long) 0.1.0"), (tool, done.stdout)
    done = _run([scripts / "sam2long-video", "--sample", "--random_weights", "--device", "cpu",
                 "--num_pathway", "1", "--backend", "torch", "--output_mask_dir", "outputs/shapes_masks"],
                cwd=elsewhere, env=env)
    assert "wrote outputs/shapes_sam2long.mp4" in done.stdout, done.stdout
    # stderr is a pipe here, as in a redirected log: plain progress lines, no redraws.
    assert "tracking:" in done.stderr and "\r" not in done.stderr and "\x1b" not in done.stderr, done.stderr
    assert (elsewhere / "outputs" / "shapes_sam2long.mp4").stat().st_size > 0
    assert len(list((elsewhere / "outputs" / "shapes_masks").glob("*.png"))) == 24
    # The random checkpoint went to the user cache, not into the working folder.
    assert (Path(env["XDG_CACHE_HOME"]) / "sam2long" / "micro_random_seed0.pt").is_file()
    assert not (elsewhere / "outputs" / "checkpoints").exists()
