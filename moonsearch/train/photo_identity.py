"""Train the photo identity network (issue 16): `moonsearch train --config photo-identity`.

Instance discrimination, SSCD-style: each step takes B training products, embeds each one's
catalog photo and V photo-like views of it (moonsearch.photos: crops, mirror, small rotations on
white, JPEG, upscale + blur, canvases, light), and pulls each view to its own catalog photo and
away from the other products of the batch (InfoNCE both ways, plus view to view). Batches are
made of runs of products of the same article type and colour, so the negatives are the products
a photo is actually confused with.

Cost on a 2-core CPU: the frozen prefix of the tower (stem .. block cut-1) runs on ONNX Runtime
(~8x torch), the trained rest on torch. Decoded catalog photos are cached once as a uint8 array
under runs/, so steps never decode JPEGs. The run is sized in steps (not epochs); a checkpoint is
written every `checkpoint_every` steps and a killed run resumes from it with the same batches and
views (each step's batch and views are seeded by the step number).

Validation products (train products after myntra.VALIDATION_SKIP, the myntra-val set) are left
out of training, so the model is chosen on them.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from moonsearch import photos
from moonsearch.encoder.photo_identity import whitened
from moonsearch.encoder.pixels import IMAGE_SIZE, images_to_batch
from moonsearch.errors import MoonsearchError
from moonsearch.progress import console
from moonsearch.train.checkpoints import starting_weights

CACHE_SIZE = (60, 80)   # the Myntra photos' own size: the cache loses nothing there


def identity_view(image, rng: random.Random):
    """A training view of a catalog photo: half the time one change of the benchmark's families,
    half the time two to four of them composed (photos.random_photo); mirrored half the time."""
    if rng.random() < 0.5:
        view = photos.compose(image, rng, 1, wide=True)
    else:
        view = photos.random_photo(image, rng)
    if rng.random() < 0.5:
        from PIL import ImageOps

        view = ImageOps.mirror(view)
    return view


def training_products(data: Path) -> list:
    """Train-split products minus the myntra-val range (kept for choosing)."""
    from moonsearch.eval.protocols import myntra

    train = myntra.load_split(Path(data), split="train")
    skip, size = myntra.VALIDATION_SKIP, myntra.VALIDATION_SIZE
    return train[:skip] + train[skip + size:]


def image_cache(products: list, path: Path) -> tuple[np.ndarray, list[int]]:
    """(N, H, W, 3) uint8 catalog photos at CACHE_SIZE (letterboxed on white) and the product rows
    they belong to; built once (atomically) and memory-mapped afterwards."""
    from moonsearch.catalog.inputs import model_input
    from moonsearch.encoder.pixels import letterbox

    rows_file = path.with_suffix(".rows.npy")
    if path.is_file() and rows_file.is_file():
        return np.load(path, mmap_mode="r"), np.load(rows_file).tolist()
    started = time.time()
    arrays, rows = [], []
    for row, product in enumerate(products):
        image = model_input(product).image
        if image is None:
            continue
        arrays.append(np.asarray(letterbox(image.convert("RGB"), CACHE_SIZE), np.uint8))
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.stack(arrays))
    tmp.replace(path)
    np.save(rows_file, np.asarray(rows))
    console.log(f"cached {len(rows)} photos in {time.time() - started:.0f} s -> {path}")
    return np.load(path, mmap_mode="r"), rows


def epoch_order(groups: list[str], seed: int, epoch: int, run: int) -> np.ndarray:
    """Indexes in an order where runs of `run` come from one group (article type + colour): hard
    negatives inside every batch. Seeded by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    chunks = []
    for members in by_group.values():
        members = rng.permutation(members).tolist()
        chunks += [members[i:i + run] for i in range(0, len(members), run)]
    order = rng.permutation(len(chunks))
    return np.asarray([i for c in order for i in chunks[c]])


def batch_rows(groups: list[str], step: int, batch: int, seed: int, run: int, _memo: dict = {}) -> np.ndarray:
    per_epoch = max(1, len(groups) // batch)
    epoch, offset = divmod(step, per_epoch)
    key = (tuple(groups), seed, epoch, run)
    if key not in _memo:
        _memo.clear()
        _memo[key] = epoch_order(groups, seed, epoch, run)
    return _memo[key][offset * batch:(offset + 1) * batch]


def identity_loss(clean: torch.Tensor, views: torch.Tensor, temperature: float) -> torch.Tensor:
    """clean (B, d), views (V, B, d): InfoNCE view -> catalog photos, catalog photo -> views,
    and between views."""
    target = torch.arange(len(clean))
    ce = torch.nn.functional.cross_entropy
    terms = []
    for v in range(len(views)):
        logits = views[v] @ clean.T / temperature
        terms += [ce(logits, target), ce(logits.T, target)]
        for w in range(v + 1, len(views)):
            terms.append(ce(views[v] @ views[w].T / temperature, target))
    return torch.stack(terms).mean()


def starting_identity(init: str, model_config: dict) -> tuple[dict, dict]:
    """The tensors a continued run starts from ("photo-identity" for the shipped weights, or a
    .safetensors path written by this trainer) and their identity, with the steps and wall time
    its own report gives. The network's shape (cut, dim) must be the config's own."""
    tensors, start, prior = starting_weights(init, "photo-identity", "photo identity", model_config, ("cut", "dim"))
    if prior:
        start.update(steps=(prior.get("history") or [{}])[-1].get("step"),
                     wall_seconds=prior.get("wall_seconds", {}).get("training"))
    return {k: torch.as_tensor(v) for k, v in tensors.items()}, start


def train_photo_identity(data: Path, config: dict, out: Path, resume: bool = True, device: str = "cpu",
                         work: Path | None = None, fail_after_steps: int | None = None) -> dict:
    """Train on `data`'s train split (less myntra-val) and write `out`.safetensors (the trained
    tensors only, float16), .json and .report.json. `work` holds the photo cache, the prefix graph
    and the checkpoint (default runs/photo-identity); `fail_after_steps` simulates a crash (tests)."""
    from moonsearch.encoder.identity_net import IdentityNet, export_onnx
    from moonsearch.train.checkpoints import resume_checkpoint, save_checkpoint
    from moonsearch.train.report import prepare_output, save_training_outputs
    from moonsearch.train.schedule import warmup_cosine

    out = prepare_output(Path(out))
    work = Path(work or Path("runs") / "photo-identity")
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model_cfg, optim_cfg, loss_cfg = config["model"], config["optim"], config["loss"]
    seed = int(config.get("seed", 0))
    products = training_products(data)
    if config.get("data", {}).get("limit"):
        products = products[:int(config["data"]["limit"])]
    # checked before anything slow: a wrong init fails at once
    initial, start = starting_identity(config["init"], model_cfg) if config.get("init") else (None, None)
    images, rows = image_cache(products, work / f"photos-{len(products)}.npy")
    def groups_by(fields) -> list[str]:
        return ["|".join(str(products[r].attributes.get(f)) for f in fields) for r in rows]

    # Which products share batches, by step: a list of {"fields": [...], "until": step} (the last
    # without "until"). Same article type and colour gives the hardest negatives on detail; same
    # type across colours teaches colour, which the first alone leaves out.
    schedule = optim_cfg.get("group_by") or [{"fields": ["articleType", "baseColour"]}]
    groupings = [(int(g.get("until", 1 << 60)), groups_by(g["fields"])) for g in schedule]
    groups = groupings[0][1]
    if len(rows) < 2:
        raise MoonsearchError(f"{data}: {len(rows)} training photos; need at least 2")
    cache_seconds = time.time() - started

    torch.manual_seed(seed)
    net = IdentityNet(cut=int(model_cfg["cut"]), dim=int(model_cfg["dim"]), gem_p=float(model_cfg.get("gem_p", 3.0)))
    if initial is not None:
        net.load_trained(initial)
    size = tuple(model_cfg.get("size", IMAGE_SIZE))
    prefix_path = work / f"prefix-cut{net.cut}-{size[0]}x{size[1]}.onnx"
    if not prefix_path.is_file():
        export_onnx(net.prefix, prefix_path, size, "features")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    prefix = ort.InferenceSession(str(prefix_path), options, providers=["CPUExecutionProvider"])

    backbone = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("net.")]
    head = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("net.")]
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": optim_cfg["lr"]},
                                   {"params": head, "lr": optim_cfg["head_lr"]}], weight_decay=optim_cfg["weight_decay"])
    steps = int(optim_cfg["steps"])
    batch = min(int(optim_cfg["batch_size"]), len(rows))
    views = int(loss_cfg["views"])
    temperature = float(loss_cfg["temperature"])
    scheduler = warmup_cosine(optimizer, steps, warmup_fraction=float(optim_cfg.get("warmup", 0.05)))
    np_rng = np.random.default_rng(seed)
    checkpoint = work / f"{out.name}.checkpoint.pt"
    history, done, seconds_before = [], 0, 0.0
    # A run resumes under a changed step count (lengthened or shortened to fit the time there
    # is): the schedule then follows the new length from the step it resumes at.
    same_run = {**config, "optim": {k: v for k, v in optim_cfg.items() if k not in ("steps", "group_by")}}
    restored = resume_checkpoint(checkpoint, same_run, device, net, optimizer, scheduler, np_rng) if resume else None
    if restored is not None:
        history, done, seconds_before = restored
    net.train()
    net.net.eval()   # BatchNorm keeps the pretrained statistics (the query and the index see one model)
    run_started, window, window_start = time.time(), [], time.time()
    every = int(optim_cfg.get("checkpoint_every", 50))
    from PIL import Image

    for step in range(done, steps):
        groups = next(g for until, g in groupings if step < until)
        part = batch_rows(groups, step, batch, seed, int(optim_cfg.get("group_run", 8)))
        rng = random.Random(f"identity:{seed}:{step}")
        clean = [Image.fromarray(np.asarray(images[i])) for i in part]
        # whitened as the index and the queries are (photo_identity.whitened): a dimmed view is
        # learnt as the query path will show it
        shown = whitened(clean + [identity_view(im, rng) for _ in range(views) for im in clean])
        features = prefix.run(None, {"pixels": images_to_batch(shown, size)})[0]
        z = net.suffix(torch.from_numpy(features))
        value = identity_loss(z[:len(part)], z[len(part):].reshape(views, len(part), -1), temperature)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_([*backbone, *head], 1.0)
        optimizer.step()
        scheduler.step()
        window.append(value.item())
        if (step + 1) % every == 0 or step + 1 == steps:
            record = {"step": step + 1, "loss": round(float(np.mean(window)), 4),
                      "images_per_s": round(len(window) * len(shown) / (time.time() - window_start), 1),
                      "gem_p": round(float(net.gem_p.detach()), 3)}
            history.append(record)
            console.log(record)
            with open(work / f"{out.name}.progress.jsonl", "a") as handle:   # readable while it runs
                handle.write(json.dumps(record) + "\n")
            window, window_start = [], time.time()
            save_checkpoint(checkpoint, same_run, net, optimizer, scheduler, history, step + 1, np_rng,
                            seconds_before + time.time() - run_started)
        if fail_after_steps is not None and step + 1 - done >= fail_after_steps:
            raise RuntimeError("simulated failure during training")
    seconds = seconds_before + time.time() - run_started
    report = {"encoder": "photo-identity", "name": config.get("name"), "data": {"photos": len(rows),
              "left_out": "myntra-val (train products 20000..24499)"}, "history": history,
              "wall_seconds": {"caches": round(cache_seconds, 1), "training": round(seconds, 1),
                               "total": round(cache_seconds + seconds, 1)},
              "device": device}
    if start is not None:
        report["started_from"] = start
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in net.trained_state().items()}
    save_training_outputs(state, {"model": {**model_cfg, "size": list(size)}, "training": config}, report, out)
    checkpoint.unlink(missing_ok=True)
    return report
