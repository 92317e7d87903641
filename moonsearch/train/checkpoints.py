"""Epoch checkpoints shared by the trainers: an interrupted run resumes where it stopped, with the
same random streams, so it ends with the weights an uninterrupted run would have."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from moonsearch.progress import console


def save_checkpoint(path: Path, config: dict, model, optimizer, scheduler, history: list, epoch: int,
                    np_rng: np.random.Generator, seconds: float, rng: random.Random | None = None) -> None:
    """Written to a temporary file and moved into place: a kill mid-write leaves the last one."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history, "epoch": epoch, "config": config, "np_rng": np_rng.bit_generator.state,
             "torch_rng": torch.get_rng_state(), "seconds": seconds}
    if rng is not None:
        state["rng"] = rng.getstate()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def resume_checkpoint(path: Path, config: dict, device, model, optimizer, scheduler,
                      np_rng: np.random.Generator, rng: random.Random | None = None) -> tuple[list, int, float] | None:
    """Load the checkpoint of the same config into the given objects -> (history, epochs done,
    earlier runs' wall time), or None when there is none (or it belongs to another config)."""
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False, map_location=device)
    if state["config"] != config:
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    np_rng.bit_generator.state = state["np_rng"]
    if rng is not None:
        rng.setstate(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    console.log(f"resumed from {path} after epoch {state['epoch']}")
    # earlier runs' wall time, so the report covers them all
    return state["history"], state["epoch"], state.get("seconds", 0.0)
