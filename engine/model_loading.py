"""Build a SAM 2 model from a config and load an official-layout checkpoint, strictly.

Every failure here is a `ModelLoadError` that names the file and says what is wrong, so
users never see a traceback from deep inside hydra or torch.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sam2long.engine.errors import SAM2LongError

CHECKPOINT_HELP = (
    "Official SAM 2.1 checkpoints are published by facebookresearch/sam2 "
    "(see its checkpoints/download_ckpts.sh); pass one with --sam2_checkpoint."
)


class ModelLoadError(SAM2LongError, RuntimeError):
    """A config or checkpoint cannot be used; the message says which and why."""


def resolve_config_path(sam2_cfg: str) -> Path:
    """A path to a YAML file, or a config name inside the installed `sam2` package.

    Accepts the names the seed documents use (`configs/sam2.1/sam2.1_hiera_b+.yaml`), with
    or without the leading `configs/` and the `.yaml` suffix.
    """
    direct = Path(sam2_cfg).expanduser()
    if direct.is_file():
        return direct
    try:
        import sam2
    except ImportError as e:  # pragma: no cover - install problem
        raise ModelLoadError(f"the `sam2` package is not installed ({e})") from e
    package_dir = Path(sam2.__file__).parent
    name = sam2_cfg if sam2_cfg.endswith((".yaml", ".yml")) else sam2_cfg + ".yaml"
    candidates = [package_dir / name, package_dir / "configs" / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(
        str(p.relative_to(package_dir)) for p in (package_dir / "configs").rglob("*.yaml")
    )
    raise ModelLoadError(
        f"--sam2_cfg {sam2_cfg!r} is neither a YAML file nor a config of the sam2 package. "
        f"Package configs: {', '.join(known[:12])}"
    )


# torch.nn.init's in-place initialisers. The model is built only to be overwritten by a
# strict checkpoint load (every parameter and persistent buffer), so drawing random
# weights first is wasted start-up time (about a second for hiera tiny on two cores).
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "orthogonal_")


@contextlib.contextmanager
def _no_weight_init():
    """Within: torch.nn.init's initialisers leave tensors as allocated. Only for building a
    model whose weights a strict load then sets (load_checkpoint_strict)."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _instantiate_model(config_path: Path, init_weights: bool = True) -> torch.nn.Module:
    """The config's model; `init_weights=False` skips drawing its random weights (for a
    strict checkpoint load right after)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(config_path)
    except Exception as e:
        raise ModelLoadError(f"cannot parse config {config_path}: {e}") from e
    if "model" not in cfg:
        raise ModelLoadError(f"config {config_path} has no top-level `model:` section")
    # The tracker drives the modules itself, so the plain SAM2Base is all we need; no
    # post-processing overrides (the reference's vos_inference default).
    cfg.model["_target_"] = "sam2.modeling.sam2_base.SAM2Base"
    try:
        OmegaConf.resolve(cfg)
        with contextlib.nullcontext() if init_weights else _no_weight_init():
            model = instantiate(cfg.model, _recursive_=True)
    except Exception as e:
        raise ModelLoadError(f"cannot build the model of config {config_path}: {e}") from e
    return model


def _read_state_dict(checkpoint_path: Path) -> dict:
    if not checkpoint_path.is_file():
        raise ModelLoadError(f"checkpoint not found: {checkpoint_path}. {CHECKPOINT_HELP}")
    try:
        blob = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(
            f"cannot read checkpoint {checkpoint_path} as a torch file: {e}"
        ) from e
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise ModelLoadError(
            f"checkpoint {checkpoint_path} is not in the official SAM 2 layout "
            '{"model": state_dict}'
        )
    return blob["model"]


def _fmt_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint_strict(model: torch.nn.Module, checkpoint_path: Path, config_path: Path):
    """Load weights; missing, unexpected or mis-shaped keys are one clear error."""
    state = _read_state_dict(checkpoint_path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_fmt_keys(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_fmt_keys(unexpected)})")
        if mismatched:
            parts.append(
                f"{len(mismatched)} keys with other shapes, checkpoint vs config "
                f"({_fmt_keys(mismatched)})"
            )
        raise ModelLoadError(
            f"checkpoint {checkpoint_path} does not match config {config_path}: "
            + "; ".join(parts)
            + ". Pass the config the checkpoint was trained with (--sam2_cfg)."
        )
    # The loaded tensors become the parameters (assign): no second copy of the weights.
    # Cast first where the checkpoint's dtype differs, as a copying load would.
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)


def _check_supported(model, config_path: Path):
    """SAM2Long needs the SAM 2.1-style heads; refuse configs it was never defined for."""
    required = {
        "use_high_res_features_in_sam": True,
        "pred_obj_scores": True,
        "use_obj_ptrs_in_encoder": True,
        "use_mask_input_as_output_without_sam": True,
        "multimask_output_in_sam": True,
        "multimask_output_for_tracking": True,
        "use_multimask_token_for_obj_ptr": True,
        "fixed_no_obj_ptr": True,
        "soft_no_obj_ptr": False,
        "directly_add_no_mem_embed": True,
    }
    wrong = [
        f"{name}={getattr(model, name)!r} (needs {value!r})"
        for name, value in required.items()
        if getattr(model, name) != value
    ]
    if getattr(model.sam_mask_decoder, "dynamic_multimask_via_stability", False):
        wrong.append("sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true (needs false)")
    if model.num_maskmem < 2:
        wrong.append(f"num_maskmem={model.num_maskmem} (needs >= 2)")
    if wrong:
        raise ModelLoadError(
            f"config {config_path} is not a SAM 2.1-style video model SAM2Long supports: "
            + ", ".join(wrong)
        )


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    config_path: Path
    checkpoint_path: Path


def load_sam2_model(sam2_cfg: str, sam2_checkpoint: str | os.PathLike, device="cpu") -> LoadedModel:
    """Config name or path + checkpoint path -> eval-mode SAM2Base on `device`."""
    config_path = resolve_config_path(sam2_cfg)
    checkpoint_path = Path(sam2_checkpoint).expanduser()
    if not checkpoint_path.is_file():
        raise ModelLoadError(f"checkpoint not found: {checkpoint_path}. {CHECKPOINT_HELP}")
    model = _instantiate_model(config_path, init_weights=False)
    _check_supported(model, config_path)
    load_checkpoint_strict(model, checkpoint_path, config_path)
    model = model.to(device).eval()
    return LoadedModel(model=model, config_path=config_path, checkpoint_path=checkpoint_path)
