"""What the tools share: the model, backend and tracker flags, loading the backend the user
asked for, and one way to end with an error.

Every tool's `main` goes through `run_main`: a `SAM2LongError` (or an operating-system
error such as a full disk) becomes one line `error: ...` and exit code 2; Ctrl-C becomes
one line and exit code 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sam2long.engine.errors import ConfigError, SAM2LongError
from sam2long.engine.stages import PRECISIONS
from sam2long.resources import cache_dir, config_file

BACKEND_CHOICES = ("auto", "torch", "onnx", "trt")
DEFAULT_CFG = "configs/sam2.1/sam2.1_hiera_b+.yaml"
DEFAULT_CHECKPOINT = "./checkpoints/sam2.1_hiera_base_plus.pt"
RANDOM_CFG = str(config_file())


def random_checkpoint() -> Path:
    """Where --random_weights keeps its checkpoint: the user's cache, made once."""
    return cache_dir() / "micro_random_seed0.pt"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs kept as written; defaults shown where there is one."""

    def _get_help_string(self, action):
        text = action.help or ""
        # By identity: a default of 0 or 0.0 is a value to show, though it equals False.
        hidden = action.default is None or action.default is False or action.default in (argparse.SUPPRESS, [])
        if not hidden and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


# -- argparse types ------------------------------------------------------------------------
def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


# -- flags -----------------------------------------------------------------------------------
def add_model_args(parser, checkpoint_default: str = DEFAULT_CHECKPOINT, random_weights: bool = True):
    parser.add_argument("--sam2_cfg", default=DEFAULT_CFG,
                        help="SAM 2 config: a name inside the sam2 package or a path to a YAML file")
    parser.add_argument("--sam2_checkpoint", default=checkpoint_default,
                        help='checkpoint in the official layout {"model": state_dict}; an official '
                             "one that is missing is downloaded first")
    if random_weights:
        parser.add_argument("--random_weights", action="store_true",
                            help="offline check of the whole pipeline: a seeded random micro model "
                                 "instead of SAM 2.1 (the masks are meaningless); its checkpoint is "
                                 "written once into $XDG_CACHE_HOME/sam2long (~/.cache/sam2long)")


def add_backend_args(parser, default: str = "auto"):
    """--backend --engine_dir --device --precision --cuda_graphs."""
    parser.add_argument("--backend", default=default, choices=BACKEND_CHOICES,
                        help="torch: the PyTorch reference (CPU or CUDA); onnx: ONNX Runtime over the "
                             "graphs in --engine_dir; trt: TensorRT engines built for this GPU in "
                             "--engine_dir; auto: on a GPU, trt when TensorRT and engines for this GPU "
                             "are there, else torch; on a CPU (fp32), the faster of torch and onnx for "
                             "this model, or each stage in the faster of the two (mixed), measured by "
                             "timing one frame's stages in both (once per "
                             "machine and model, kept in ~/.cache/sam2long), with the graphs of "
                             "--engine_dir or, when none are given, graphs built once into that cache "
                             "(see --no_build_graphs); it prints the numbers it chose by")
    parser.add_argument("--engine_dir", default=None,
                        help="folder written by export/build_engines.py (for onnx and trt)")
    parser.add_argument("--no_build_graphs", action="store_true",
                        help="with --backend auto on a CPU: do not build the model's ONNX graphs into "
                             "the cache when there are none (then torch is used, unmeasured); also "
                             "SAM2LONG_NO_BUILD_GRAPHS=1")
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA when available), "
                                                         "cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 reproduces the original's masks; bf16/fp16: faster on GPUs "
                             "(torch autocast, or TensorRT engines built with that --precision)")
    parser.add_argument("--cuda_graphs", action="store_true",
                        help="on CUDA: capture each frame's work as CUDA graphs (less launch overhead)")


def add_tracker_args(parser):
    parser.add_argument("--num_pathway", type=int, default=3, help="SAM2Long pathways per object (1..8)")
    parser.add_argument("--iou_thre", type=finite_float, default=0.1,
                        help="a frame enters memory only if its predicted IoU is above this")
    parser.add_argument("--uncertainty", type=finite_float, default=2.0,
                        help="when every |object score| is at most this, favour diverse masks")


def tracker_config(args):
    from sam2long.runtime.config import TrackerConfig

    return TrackerConfig(args.num_pathway, args.iou_thre, args.uncertainty)


# -- the backend -----------------------------------------------------------------------------
def build_chosen_backend(backend: str, sam2_cfg: str, sam2_checkpoint: str, device: str,
                         engine_dir: str | None, precision: str, build_graphs: bool = True,
                         torch_stages: tuple[str, ...] = ()):
    """build_backend, with `auto` resolved (engine.factory.build_auto_backend)."""
    from sam2long.engine.factory import build_auto_backend, build_backend

    if backend != "auto":
        return build_backend(backend, sam2_cfg, sam2_checkpoint, device, engine_dir, precision)
    return build_auto_backend(sam2_cfg, sam2_checkpoint, device, engine_dir, precision, build_graphs, torch_stages)


def model_files(args) -> tuple[str, str]:
    """(config, checkpoint) the user asked for: the random micro model (written once), or
    a checkpoint, downloading an official one that is missing."""
    if getattr(args, "random_weights", False):
        from sam2long.tools.make_random_checkpoint import write_checkpoint

        checkpoint = random_checkpoint()
        if not checkpoint.is_file():
            write_checkpoint(checkpoint, RANDOM_CFG, seed=0)
        print("NOTE: --random_weights: a random micro model, the masks are meaningless.")
        return RANDOM_CFG, str(checkpoint)
    checkpoint = Path(args.sam2_checkpoint)
    if not checkpoint.is_file():
        from sam2long.tools.download_checkpoints import OFFICIAL, download

        if checkpoint.name not in OFFICIAL:
            raise ConfigError(
                f"checkpoint not found: {checkpoint}. Official SAM 2.1 checkpoints: "
                f"python tools/download_checkpoints.py ({', '.join(OFFICIAL)})")
        print(f"{checkpoint} is missing: downloading the official checkpoint")
        download(checkpoint.name, checkpoint.parent)
    return args.sam2_cfg, str(checkpoint)


def model_inputs(args) -> list[str]:
    """The files and folders the model flags read (config, checkpoint, engine folder): no
    output of any tool may be, hold or lie inside one of them."""
    if getattr(args, "random_weights", False):
        paths = [RANDOM_CFG, str(random_checkpoint())]
    else:
        paths = [args.sam2_cfg, args.sam2_checkpoint]
    paths.append(getattr(args, "engine_dir", None))
    return [p for p in paths if p and os.path.exists(p)]


def load_backend(args, torch_stages: tuple[str, ...] = ()):
    """The backend the flags ask for (add_model_args + add_backend_args); with --backend auto,
    `torch_stages` stay in torch."""
    cfg, checkpoint = model_files(args)
    return build_chosen_backend(args.backend, cfg, checkpoint, args.device, args.engine_dir, args.precision,
                                build_graphs=not getattr(args, "no_build_graphs", False),
                                torch_stages=torch_stages)


def make_tracker(args, backend):
    """A tracker with the flags' settings (add_tracker_args + --cuda_graphs)."""
    from sam2long.runtime.tracker import SAM2LongTracker

    if args.cuda_graphs and backend.device.type != "cuda":
        raise ConfigError(f"--cuda_graphs needs a CUDA device; the backend runs on {backend.device}")
    return SAM2LongTracker(backend, tracker_config(args), cuda_graphs=bool(args.cuda_graphs))


# -- ending ------------------------------------------------------------------------------------
def report_error(e: BaseException) -> str:
    """One line for a failure the user can act on."""
    if isinstance(e, OSError) and not isinstance(e, SAM2LongError):
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return f"{e.strerror or e}{where}"
    return str(e)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled job, `kill`): unwinds like Ctrl-C, so partial outputs are removed."""


def _raise_terminated(signum, frame):
    raise Terminated()


def run_main(body: Callable[[], int], interrupted: str = "nothing was written") -> int:
    """Run a tool's body: user errors are one line and exit 2, Ctrl-C one line and 130,
    SIGTERM one line and 143."""
    import signal
    import threading

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return body()
    except KeyboardInterrupt as e:
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{what}: {interrupted} (nothing half-written is left)", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except (SAM2LongError, OSError) as e:
        print(f"error: {report_error(e)}", file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
