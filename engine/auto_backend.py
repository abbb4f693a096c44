"""`--backend auto` on a CPU: each stage in the faster of torch and ONNX Runtime, for this model
on this machine.

The two backends' speeds depend on the model and the machine together: one matrix product says
little about a run whose time goes to convolutions in the image encoder, an attention over full
memory slots and small decoder calls, and the libraries' kernels for each differ between CPUs.
So the choice times one frame's real stages in both backends -- the image encoder, the memory
attention with every slot full, the mask decoder and the memory encoder, on 1 object x 3
pathways at the model's shapes -- and keeps the numbers in the user's cache, keyed by the CPU,
its core count, torch's threads, the torch and onnxruntime versions and the config's and
checkpoint's hashes. Any change re-measures; the same machine and model never pays twice.
Each stage then runs where it ran faster (`stage_plan`): torch, onnx, or a mixed backend
(engine/mixed_backend.py) when the libraries win different stages.

ONNX Runtime needs the model's graphs. When none are given (`--engine_dir`), they are built once
into the same cache (a progress bar shows the export); `build=False` (`--no_build_graphs`, or
SAM2LONG_NO_BUILD_GRAPHS=1) keeps to torch unless graphs are there already.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from sam2long.engine.cpu_speed import best_seconds
from sam2long.engine.stages import STAGE_NAMES
from sam2long.resources import cache_dir

# Bump when the probe changes what it measures, or a backend's stage changes speed (3: torch's
# fused CPU image encoder): old timings are then ignored and measured again.
PROBE_VERSION = 3
PROBE_ROWS = 3  # one object x the default 3 pathways
STAGES = tuple(STAGE_NAMES)  # "image", "attention", "decoder", "memory"
# ONNX Runtime holds a little more memory (its arena keeps the largest stage's buffers):
# take it only for a clear gain.
ONNX_MARGIN = 1.05
NO_BUILD_ENV = "SAM2LONG_NO_BUILD_GRAPHS"


def build_graphs_allowed(flag_off: bool = False) -> bool:
    return not flag_off and os.environ.get(NO_BUILD_ENV, "").strip().lower() in ("", "0", "false", "no")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_identity() -> dict:
    import onnxruntime

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def choice_key(machine: dict, config_sha256: str, checkpoint_sha256: str) -> str:
    from sam2long.engine.manifest import GRAPH_FORMAT

    ident = {**machine, "config": config_sha256, "checkpoint": checkpoint_sha256,
             "rows": PROBE_ROWS, "probe": PROBE_VERSION, "graphs": GRAPH_FORMAT}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def graphs_dir(config_sha256: str, checkpoint_sha256: str) -> Path:
    """Where the model's ONNX graphs are built once (their manifest checks versions at load)."""
    return cache_dir() / "graphs" / f"{config_sha256[:16]}-{checkpoint_sha256[:16]}"


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (created): shards starting together build or record once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- the probe ---------------------------------------------------------------------------------
def probe_inputs(geo, rows: int = PROBE_ROWS):
    """A frame, and `rows` rows of memory with every frame and pointer slot full (the steady
    state of a long video), at the model's shapes; seeded."""
    from sam2long.engine.stages import MemoryInputs

    gen = torch.Generator().manual_seed(0)
    (h, w), m, k = geo.feat_hw, geo.num_maskmem, geo.max_obj_ptrs
    image = torch.randn(1, 3, geo.image_size, geo.image_size, generator=gen)
    memory = MemoryInputs(torch.randn(rows, m, h * w, geo.mem_dim, generator=gen),
                          torch.ones(rows, m, dtype=torch.bool), torch.arange(m).repeat(rows, 1),
                          torch.ones(rows, m), torch.randn(rows, k, geo.hidden_dim, generator=gen),
                          torch.ones(rows, k, dtype=torch.bool), torch.rand(rows, k, generator=gen),
                          torch.ones(rows, k))
    # Entry ids as a tracked video has them once its pathways have parted: every row holds
    # the conditioning frame and all but its newest two frames in common (lineages meet a
    # few frames back; micro's steady state shares 5 of 12 frame slots, this 4). The torch
    # backend attends to a shared frame once in layer one; the graphs attend to every slot.
    ids = torch.arange(m).repeat(rows, 1)
    ids[:, max(m - 2, 1):] += torch.arange(1, rows + 1)[:, None] * m
    return image, memory, ids


def probe_stage_seconds(backend, rows: int = PROBE_ROWS, repeats: int = 2) -> dict[str, float]:
    """Seconds per call of each stage as one tracked frame runs them, the best of `repeats`
    after one untimed frame (the warm-up): {"image", "attention", "decoder", "memory"}. On the
    micro model this is a few dozen milliseconds per backend on an idle CPU."""
    image, memory, ids = probe_inputs(backend.geometry, rows)
    with torch.inference_mode():
        feats = backend.encode_image(image)
        pix = backend.attend_memory(feats.feat, memory, ids)
        dec = backend.decode_masks(pix, feats)
        low = dec.masks[:, :1].contiguous()
        backend.encode_memory(feats.feat, low, dec.obj_score)
        calls = {
            "image": lambda: backend.encode_image(image),
            "attention": lambda: backend.attend_memory(feats.feat, memory, ids),
            "decoder": lambda: backend.decode_masks(pix, feats),
            "memory": lambda: backend.encode_memory(feats.feat, low, dec.obj_score),
        }
        # The frame above was every stage's warm-up.
        return {stage: best_seconds(call, repeats, warmup=False) for stage, call in calls.items()}


# -- the decision ------------------------------------------------------------------------------
def stage_plan(seconds: dict[str, dict[str, float]], torch_stages: tuple[str, ...] = ()) -> dict[str, str]:
    """{stage: "torch" or "onnx"}: each stage in the backend that runs it faster, onnx only
    when ONNX_MARGIN times faster there (its arena holds more memory), and all in torch
    unless that saves ONNX_MARGIN on the whole frame. `torch_stages` stay in torch."""
    torch_s, onnx_s = seconds["torch"], seconds.get("onnx")
    everything_torch = {stage: "torch" for stage in STAGES}
    if onnx_s is None:
        return everything_torch
    plan = {stage: "onnx" if stage not in torch_stages and torch_s[stage] > ONNX_MARGIN * onnx_s[stage]
            else "torch" for stage in STAGES}
    if ONNX_MARGIN * sum(seconds[plan[stage]][stage] for stage in STAGES) > sum(torch_s.values()):
        return everything_torch
    return plan


def plan_name(plan: dict[str, str]) -> str:
    """"torch", "onnx", or "mixed" when the stages are split."""
    names = set(plan.values())
    return names.pop() if len(names) == 1 else "mixed"


def decide(seconds: dict[str, dict[str, float]], torch_stages: tuple[str, ...] = ()) -> tuple[str, str]:
    """("torch", "onnx" or "mixed", the measured numbers in one line) from per-stage seconds
    per backend (`stage_plan`)."""
    plan = stage_plan(seconds, torch_stages)
    return plan_name(plan), explain(seconds, plan, torch_stages)


def explain(seconds: dict[str, dict[str, float]], plan: dict[str, str], torch_stages: tuple[str, ...] = ()) -> str:
    """The measured numbers behind `plan`, in one line."""
    choice = plan_name(plan)
    total = {name: sum(stages.values()) for name, stages in seconds.items()}
    parts = []
    for name in sorted(total, key=lambda n: n != choice):
        stages = ", ".join(f"{s} {seconds[name][s] * 1e3:.0f}" for s in STAGES if s in seconds[name])
        parts.append(f"{name} {total[name] * 1e3:.0f} ms ({stages})")
    why = (f"one tracked frame (1 object x {PROBE_ROWS} pathways, memory full): " + " against ".join(parts))
    if choice == "mixed":
        mixed = sum(seconds[plan[s]][s] for s in STAGES)
        why += (f"; each stage in the faster one ({', '.join(f'{s} {plan[s]}' for s in STAGES)}): "
                f"{mixed * 1e3:.0f} ms")
    elif choice == "torch" and "onnx" in total and total["onnx"] < total["torch"]:
        why += f" (onnx is less than {ONNX_MARGIN:.2f}x faster: not worth its extra memory)"
    if torch_stages and "onnx" in total:
        why += f" ({', '.join(torch_stages)} kept in torch: asked for)"
    return why


def build_planned(plan: dict[str, str], torch_backend, onnx) -> object:
    """The StageBackend for `plan` from the two built backends (either may be None when the
    plan does not use it); a mixed one frees what each side does not run."""
    name = plan_name(plan)
    if name != "mixed":
        return torch_backend if name == "torch" else onnx
    from sam2long.engine.mixed_backend import MixedBackend

    torch_backend.drop_stages([s for s in STAGES if plan[s] != "torch"])
    for stage in STAGES:
        if plan[stage] != "onnx":
            onnx.sessions.pop(STAGE_NAMES[stage], None)
    return MixedBackend({s: torch_backend if plan[s] == "torch" else onnx for s in STAGES})


@dataclass
class Choice:
    name: str  # "torch", "onnx" or "mixed"
    reason: str  # one line, with the measured numbers
    backend: object  # the StageBackend, built


class ChoiceCache:
    """The measured timings per machine and model: one JSON file in the user cache."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "backend_choice.json"

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # missing or damaged: measure again

    def get(self, key: str) -> dict | None:
        entry = self._read().get(key)
        if isinstance(entry, dict) and isinstance(entry.get("seconds"), dict):
            return entry
        return None

    def put(self, key: str, entry: dict) -> None:
        with locked(self.path.with_suffix(".lock")):
            data = self._read()
            data[key] = entry
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)


def choose_cpu_backend(sam2_cfg: str, sam2_checkpoint: str, device: str, engine_dir: str | None,
                       build: bool = True, cache: ChoiceCache | None = None,
                       say: Callable[[str], None] = print,
                       probe: Callable[[object], dict] | None = None,
                       torch_stages: tuple[str, ...] = ()) -> Choice:
    """The faster CPU backend for this model here, built: torch, onnx, or each stage in the
    faster of the two (`stage_plan`); timings measured once and cached. `probe` (default
    probe_stage_seconds): a backend's seconds per stage. `torch_stages`: stages that must run
    in torch (sam2's post-processing binarises prompt masks in torch's memory encoder)."""
    from sam2long.engine.factory import build_backend
    from sam2long.engine.file_hashes import known_sha256
    from sam2long.engine.manifest import EngineMismatchError
    from sam2long.engine.model_loading import resolve_config_path

    cache = cache or ChoiceCache()
    cfg_sha, ckpt_sha = known_sha256(resolve_config_path(sam2_cfg)), known_sha256(sam2_checkpoint)
    key = choice_key(machine_identity(), cfg_sha, ckpt_sha)
    graphs = Path(engine_dir) if engine_dir else graphs_dir(cfg_sha, ckpt_sha)

    def load_onnx(allow_build: bool, stages=None):
        """The onnx backend over `graphs` (the graphs of `stages`, default all), built first
        into the cache when allowed; None with why when it cannot be had."""
        stale = False
        try:
            if (graphs / "manifest.json").is_file():
                return build_backend("onnx", sam2_cfg, sam2_checkpoint, device, str(graphs), stages=stages), ""
            if engine_dir:
                return None, f"--engine_dir {engine_dir} has no graphs"
        except EngineMismatchError as e:
            if engine_dir or not allow_build:
                return None, f"the graphs in {graphs} cannot be used ({str(e).splitlines()[0]})"
            stale = True  # ours, from other versions (older graph formats too): rebuilt
        if not allow_build:
            return None, (f"no ONNX graphs for this model yet (building them is off: "
                          f"--no_build_graphs or {NO_BUILD_ENV})")
        from sam2long.export.build_engines import build_onnx

        say(f"NOTE: --backend auto: building this model's ONNX graphs once, into {graphs}")
        try:
            with locked(graphs.with_name(graphs.name + ".lock")):
                build_onnx(sam2_cfg, sam2_checkpoint, str(graphs), force=stale)
            return build_backend("onnx", sam2_cfg, sam2_checkpoint, device, str(graphs), stages=stages), ""
        except Exception as e:  # noqa: BLE001 -- an optimisation: torch runs whatever broke here
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return None, f"building the ONNX graphs into {graphs} failed ({first})"

    def chose(plan, why, torch_backend, onnx) -> Choice:
        backend = build_planned(plan, torch_backend, onnx)
        return Choice(plan_name(plan), f"{backend.describe()}: {why}", backend)

    entry = cache.get(key)
    if entry is not None:
        plan = stage_plan(entry["seconds"], torch_stages)
        why = (f"{explain(entry['seconds'], plan, torch_stages)} "
               f"[measured {entry.get('measured', 'before')}, kept in {cache.path}]")
        name = plan_name(plan)
        if name != "torch":
            onnx, missing = load_onnx(build, tuple(STAGE_NAMES[s] for s in STAGES if plan[s] == "onnx"))
            if onnx is not None:
                torch_backend = build_backend("torch", sam2_cfg, sam2_checkpoint, device) if name == "mixed" else None
                return chose(plan, why, torch_backend, onnx)
            why = f"{why}; but {missing}"
            plan = {stage: "torch" for stage in STAGES}
        return chose(plan, why, build_backend("torch", sam2_cfg, sam2_checkpoint, device), None)

    torch_backend = build_backend("torch", sam2_cfg, sam2_checkpoint, device)
    onnx, missing = load_onnx(build)
    if onnx is None:  # nothing to compare with: not recorded, so a later run measures
        return Choice("torch", f"torch: onnx not measured: {missing}", torch_backend)
    say("NOTE: --backend auto: timing one frame's stages in torch and in onnx (once per machine and model)")
    probe = probe or probe_stage_seconds
    seconds = {"torch": probe(torch_backend)}
    try:
        seconds["onnx"] = probe(onnx)
    except Exception as e:  # noqa: BLE001 -- onnx that cannot run the model is not a candidate
        return Choice("torch", f"torch: onnx failed on this model's stages ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''})", torch_backend)
    cache.put(key, {"seconds": seconds, "measured": time.strftime("%Y-%m-%d %H:%M"),
                    "machine": machine_identity(), "config": str(sam2_cfg), "checkpoint": str(sam2_checkpoint)})
    plan = stage_plan(seconds, torch_stages)
    return chose(plan, f"{explain(seconds, plan, torch_stages)} [measured now, kept in {cache.path}]",
                 torch_backend, onnx)
