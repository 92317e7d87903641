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


def starting_weights(init: str, kind: str, label: str, model_config: dict,
                     shape_keys: tuple[str, ...] | None = None) -> tuple[dict, dict, dict]:
    """What a run that goes on from trained weights starts from (config key "init": a shipped
    name, or a .safetensors path written by `moonsearch train`): (tensors, {"weights": name@hash},
    the starting point's own training report or {}, so the report can give the whole bill).
    The weights must be of `kind` and of the config's shape (`shape_keys` of the model config,
    or all of it): a model can only go on learning in its own shape."""
    from moonsearch.encoder.base import file_sha256, read_weights
    from moonsearch.encoder.registry import weights_file
    from moonsearch.errors import MoonsearchError
    from moonsearch.jsonfiles import read_json

    path = weights_file(str(init))
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise MoonsearchError(f"init: no weights at {path} (no {label} weights: a shipped name or a .safetensors path)")
    saved, tensors = read_weights(path)
    if saved.get("training", {}).get("encoder") != kind:
        raise MoonsearchError(f"init: {path} is not a {label} model, so {label} training cannot start from it")
    have, wanted = saved["model"], model_config
    if shape_keys is not None:
        have, wanted = ({k: model.get(k) for k in shape_keys} for model in (have, wanted))
    if have != wanted:
        named = f" ({'/'.join(shape_keys)})" if shape_keys else ""
        raise MoonsearchError(f"init: {path} has the model {have}{named}, but the config asks for {wanted}")
    earlier = path.with_suffix(".report.json")
    prior = read_json(earlier, "training report") if earlier.is_file() else {}
    return tensors, {"weights": f"{path.stem}@{file_sha256(path)[:16]}"}, prior
