"""Tracker settings, validated once: flags -> this frozen dataclass -> the tracker."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sam2long.engine.errors import ConfigError

MAX_PATHWAYS = 8


@dataclass(frozen=True)
class TrackerConfig:
    num_pathway: int = 3  # P: hypotheses kept per object
    iou_thre: float = 0.1  # a frame enters memory only with predicted IoU above this...
    uncertainty: float = 2.0  # ...and |object score| at or below this favours diversity

    def __post_init__(self):
        if not 1 <= self.num_pathway <= MAX_PATHWAYS:
            raise ConfigError(f"--num_pathway must be 1..{MAX_PATHWAYS}, got {self.num_pathway}")
        if not (math.isfinite(self.iou_thre) and 0.0 <= self.iou_thre < 1.0):
            raise ConfigError(f"--iou_thre must be in [0, 1), got {self.iou_thre}")
        if not (math.isfinite(self.uncertainty) and self.uncertainty >= 0):
            raise ConfigError(f"--uncertainty must be a finite number >= 0, got {self.uncertainty}")
