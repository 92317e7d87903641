"""The training loop both query heads share (photo-query, text-query).

A query head is a copy of the base fusion model trained to put one kind of query on the frozen
base's product vectors (moonsearch.encoder.query_heads). The two trainers differ in what a batch
of queries is and which products count as right for it; the rest (starting from the base,
AdamW with warm-up and cosine decay, clipping, epoch checkpoints and resume, a validation score
per epoch) is this one loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from moonsearch.encoder.moon import MoonLite, Segment
from moonsearch.progress import console, progress_bar
from moonsearch.train.checkpoints import resume_checkpoint, save_checkpoint
from moonsearch.train.report import save_training_outputs
from moonsearch.train.schedule import plan_steps, warmup_cosine


def fit_head(saved: dict, tensors: dict, rows: np.ndarray, config: dict, catalog: Path, checkpoint: Path,
             queries: Callable[[np.ndarray, np.random.Generator], Segment],
             loss: Callable[[torch.Tensor, np.ndarray], torch.Tensor], bank: torch.Tensor,
             score: Callable[[MoonLite], dict], device: str = "cpu", resume: bool = True,
             started: float | None = None) -> tuple[MoonLite, list, float]:
    """Train a head that starts as the base (`saved` config, `tensors`) over `rows`.

    `queries(part, rng)` gives the query segment of a batch of rows; `loss(logits, part)` scores
    its logits against every product of `bank` (divided by the temperature); `score(head)` is
    the validation record of an epoch. Returns the head, the history (epoch 0 before training)
    and the wall seconds of this and earlier, resumed runs."""
    started = time.time() if started is None else started
    optim_cfg = config["optim"]
    torch.manual_seed(int(config.get("seed", 0)))
    head = MoonLite(**saved["model"])
    head.load_state_dict(tensors)
    head = head.to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    batch_size, steps_per_epoch, total_steps = plan_steps(rows, optim_cfg, catalog)
    scheduler = warmup_cosine(optimizer, total_steps)
    np_rng = np.random.default_rng(int(config.get("seed", 0)))
    history = [{"epoch": 0, **score(head)}]
    start_epoch, seconds_before = 0, 0.0
    restored = resume_checkpoint(checkpoint, config, device, head, optimizer, scheduler, np_rng) if resume else None
    if restored is not None:
        history, start_epoch, seconds_before = restored
    temperature = float(config["loss"]["temperature"])
    with progress_bar() as bar:
        task = bar.add_task(f"training {config.get('name', 'query head')}", total=total_steps,
                            completed=start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, optim_cfg["epochs"]):
            order = np_rng.permutation(rows)
            total = 0.0
            for step in range(steps_per_epoch):
                part = order[step * batch_size:(step + 1) * batch_size]
                query, _ = head([queries(part, np_rng).to(device)])
                value = loss(query @ bank.T / temperature, part)
                optimizer.zero_grad()
                value.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total += value.item()
                bar.advance(task)
            record = {"epoch": epoch + 1, "loss": round(total / steps_per_epoch, 4), **score(head)}
            history.append(record)
            console.log(record)
            save_checkpoint(checkpoint, config, head, optimizer, scheduler, history, epoch + 1, np_rng,
                            seconds_before + time.time() - started)
    return head, history, seconds_before + time.time() - started


def save_head(kind: str, head: MoonLite, saved: dict, base_id: str, config: dict, data: dict, history: list,
              cache_seconds: float, seconds: float, device: str, out: Path, checkpoint: Path) -> dict:
    """Write the head beside its base (weights, config naming the base, training report) and
    drop the epoch checkpoint; returns the report."""
    report = {"encoder": f"{kind}-query", "name": config.get("name"), "base": base_id, "data": data,
              "history": history, "wall_seconds": {"caches": round(cache_seconds, 1), "total": round(seconds, 1)},
              "device": device}
    save_training_outputs({k: v.cpu() for k, v in head.state_dict().items()},
                          {"model": saved["model"], "base": base_id, "training": config}, report, Path(out))
    checkpoint.unlink(missing_ok=True)
    return report
