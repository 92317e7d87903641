"""Encoders by name. Model configs and weights are data files shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from moonsearch.encoder.base import Encoder
from moonsearch.errors import MoonsearchError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_ENCODER = "baseline"


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def available_encoders() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu", weights: Path | None = None) -> Encoder:
    """Load a shipped encoder by name, or one trained by the user from `weights`."""
    name = DEFAULT_ENCODER if name in (None, "", "default") else name
    path = Path(weights) if weights else weights_path(name)
    if not path.exists():
        known = ", ".join(available_encoders()) or "none"
        raise MoonsearchError(f"no weights for encoder '{name}' at {path} (shipped encoders: {known})")
    if name == "baseline":
        from moonsearch.encoder.baseline import BaselineEncoder

        return BaselineEncoder.load(path, device=device)
    if name == "moon-lite" or name.startswith("moon-lite"):
        from moonsearch.encoder.moon import MoonEncoder

        return MoonEncoder.load(path, device=device)
    raise MoonsearchError(f"unknown encoder '{name}' (known: baseline, moon-lite)")
