"""Write what a training run ships: weights, the config that made them, and its report."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from moonsearch.errors import MoonsearchError


def prepare_output(out: Path) -> Path:
    """Make the folder the outputs go to before any work starts: a run must not cache and train
    for an hour and then fail to write its first checkpoint."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MoonsearchError(f"cannot write training outputs under {out.parent}: {exc.strerror}") from exc
    return out


def save_training_outputs(state_dict: dict, config: dict, report: dict, out: Path) -> None:
    """`out` without suffix: writes out.safetensors, out.json and out.report.json atomically."""
    from safetensors.torch import save_file

    out = prepare_output(out)
    report = {**report, "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                    "processor": platform.machine(), "threads": torch.get_num_threads()}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    targets = {
        out.with_suffix(".safetensors"): None,
        out.with_suffix(".json"): json.dumps(config, indent=2),
        out.with_suffix(".report.json"): json.dumps(report, indent=2),
    }
    for target, text in targets.items():
        tmp = target.with_name(target.name + ".tmp")
        if text is None:
            save_file(tensors, str(tmp))
        else:
            tmp.write_text(text + "\n")
        tmp.replace(target)
