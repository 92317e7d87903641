"""`moonsearch train`'s library side: a config names the kind of encoder it trains, and that
picks the trainer, its default output and its device (the CLI only parses arguments)."""

from __future__ import annotations

from pathlib import Path

from moonsearch.errors import MoonsearchError

KINDS = ("baseline", "moon-lite", "mllm", "photo-query", "text-query", "photo-identity")
MLLM_MODELS_DIR = Path("models")   # MLLM encoders are folders too big for the package


def train_encoder(data: Path, config: str, out: Path | None = None, backbone_path: Path | None = None,
                  resume: bool = True, device: str = "auto", init: str | None = None) -> tuple[Path, dict]:
    """Train the encoder `config` describes on `data`'s train split; returns where it went and
    the training report. `init` (moon-lite, photo-identity) starts from those weights instead of
    the untrained ones."""
    from moonsearch.encoder.registry import WEIGHTS_DIR
    from moonsearch.train.baseline import load_config

    cfg = load_config(config)
    kind = cfg.get("encoder")
    if kind not in KINDS:
        raise MoonsearchError(f"config {config} trains '{kind}', which this version cannot train ({', '.join(KINDS)})")
    if backbone_path is not None and kind != "mllm":
        raise MoonsearchError(f"--backbone-path is for MLLM configs (such as mllm-qwen2vl); {config} trains '{kind}'")
    if init is not None and kind in ("photo-query", "text-query"):
        cfg["base"] = init      # the model the head is for
    elif init is not None:
        if kind not in ("moon-lite", "photo-identity"):
            raise MoonsearchError(f"--init is for moon-lite and photo-identity configs; {config} trains '{kind}'")
        cfg["init"] = init
    name = cfg.get("name") or Path(config).stem   # not the kind: baseline-heldout must not replace the shipped baseline
    if kind == "baseline":
        from moonsearch.train.baseline import train_baseline

        target = out or WEIGHTS_DIR / name
        return target, train_baseline(data, cfg, target)
    if kind == "photo-identity":
        from moonsearch.train.photo_identity import train_photo_identity

        target = out or WEIGHTS_DIR / name
        return target, train_photo_identity(data, cfg, target, resume=resume)
    if kind == "photo-query":
        from moonsearch.devices import placement_for
        from moonsearch.train.photo_query import default_output, train_photo_query

        target = out or default_output(cfg["base"])
        return target, train_photo_query(data, cfg, target, resume=resume, device=placement_for(device, "flat").encoder)
    if kind == "text-query":
        from moonsearch.devices import placement_for
        from moonsearch.train.text_query import default_output, train_text_query

        target = out or default_output(cfg["base"])
        return target, train_text_query(data, cfg, target, resume=resume, device=placement_for(device, "flat").encoder)
    if kind == "moon-lite":
        from moonsearch.devices import placement_for
        from moonsearch.train.moon import train_moon

        target = out or WEIGHTS_DIR / name
        return target, train_moon(data, cfg, target, resume=resume, device=placement_for(device, "flat").encoder)
    from moonsearch.train.mllm import train_mllm

    target = out or MLLM_MODELS_DIR / name
    return target, train_mllm(data, cfg, target, backbone_path=backbone_path, device=device)
