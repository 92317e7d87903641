"""Steps and learning-rate schedule of a training run, shared by the trainers."""

from __future__ import annotations

import math

import numpy as np
import torch

from moonsearch.errors import MoonsearchError


def plan_steps(train_rows: np.ndarray, optim_cfg: dict, where) -> tuple[int, int, int]:
    """-> (batch size, steps per epoch, total steps). The batch shrinks to a small catalog's
    size rather than leaving an epoch with no step; fewer than 2 products cannot be contrasted."""
    if len(train_rows) < 2:
        raise MoonsearchError(f"{where}: {len(train_rows)} training products with an image; need at least 2")
    batch_size = min(int(optim_cfg["batch_size"]), len(train_rows))
    steps_per_epoch = len(train_rows) // batch_size
    return batch_size, steps_per_epoch, max(1, optim_cfg["epochs"] * steps_per_epoch)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05):
    """Linear warm-up over the first `warmup_fraction` of the steps, then cosine decay to 0."""
    warmup = max(1, int(warmup_fraction * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps))))
