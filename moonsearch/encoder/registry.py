"""Encoders by name. Model configs and weights are data files shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from moonsearch.encoder.base import Encoder
from moonsearch.errors import MoonsearchError
from moonsearch.jsonfiles import read_json

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_ENCODER = "moon-lite"


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def weights_file(name: str) -> Path:
    """A shipped encoder's weights by name, or weights written by `moonsearch train`, by path."""
    return Path(name) if str(name).endswith(".safetensors") else weights_path(name)


def available_encoders() -> list[str]:
    """Shipped encoders by name (a query head is part of its base model, and the photo identity
    network a channel of every index, not encoders)."""
    from moonsearch.encoder.photo_identity import NAME as IDENTITY
    from moonsearch.encoder.query_heads import is_head_weights

    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors") if not is_head_weights(p) and p.stem != IDENTITY)


RUNTIMES = ("auto", "onnx", "torch")


def onnx_runtime_for(device: str, runtime: str = "auto") -> bool:
    """Whether a moon-lite encoder on `device` runs on ONNX Runtime: on a CPU where it is
    installed (MOONSEARCH_ONNX=0 turns it off) unless torch is asked for; never on a GPU."""
    if runtime not in RUNTIMES:
        raise MoonsearchError(f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    from moonsearch.encoder import onnx_image

    if runtime == "onnx":
        if device != "cpu":
            raise MoonsearchError(f"the ONNX runtime runs on the CPU; device '{device}' needs runtime='torch'")
        if not onnx_image.available():
            raise MoonsearchError("the ONNX runtime was asked for, but onnxruntime is not installed or MOONSEARCH_ONNX=0")
        return True
    return runtime == "auto" and device == "cpu" and onnx_image.available()


def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu", weights: Path | None = None,
                 runtime: str = "auto") -> Encoder:
    """Load a shipped encoder by name, or one trained by the user from `weights`.

    `runtime`: "auto" runs moon-lite on ONNX Runtime on a CPU (no torch on the query path; the
    graphs are exported once, with torch, when the cache lacks them) and on torch elsewhere;
    "torch" asks for MoonEncoder itself (training, `.towers`, `.model`, token memos); "onnx"
    insists on ONNX Runtime. The other encoders always run on torch."""
    name = DEFAULT_ENCODER if name in (None, "", "default") else name
    if runtime not in RUNTIMES:
        raise MoonsearchError(f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    if name == "mllm" or (Path(name) / "moonsearch.json").is_file():
        # A trained MLLM encoder is a folder, named by `weights` (index manifests) or as the name.
        folder = Path(weights) if weights else (None if name == "mllm" else Path(name))
        if folder is None or not folder.exists():
            missing = f"; {folder} does not exist" if folder is not None else ""
            raise MoonsearchError("the MLLM encoder needs the folder of a trained model (`moonsearch train "
                                  f"--config mllm-qwen2vl`): pass --encoder PATH/TO/FOLDER{missing}")
        from moonsearch.encoder.mllm import MLLMEncoder

        return MLLMEncoder.load(folder, device=device)
    # a .safetensors name is the weights themselves (`moonsearch train` output, named by path)
    path = weights_file(name) if name.endswith(".safetensors") or not weights else Path(weights)
    if not path.is_file():
        known = ", ".join(available_encoders()) or "none"
        raise MoonsearchError(f"no weights for encoder '{name}' at {path} (shipped encoders: {known})")
    # What the weights are comes from the config saved beside them, not from their file name:
    # an index built with runs/shoes.safetensors records the name "shoes".
    if _encoder_kind(path) == "baseline":
        from moonsearch.encoder.baseline import BaselineEncoder

        return BaselineEncoder.load(path, device=device)
    if onnx_runtime_for(device, runtime):
        from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

        return OnnxMoonEncoder.load(path)
    from moonsearch.encoder.moon import MoonEncoder

    return MoonEncoder.load(path, device=device)


def _encoder_kind(weights: Path) -> str:
    """`moon-lite` or `baseline`, from the config `moonsearch train` saved beside the weights."""
    config = weights.with_suffix(".json")
    if not config.is_file():
        raise MoonsearchError(f"no model config beside {weights} (expected {config.name}, written with the weights by `moonsearch train`)")
    kind = read_json(config, "model config").get("training", {}).get("encoder")
    if kind not in ("moon-lite", "baseline"):
        raise MoonsearchError(f"{config} does not name a moon-lite or baseline encoder")
    return kind
