"""The MLLM backbone encoder: MOON2.0 on a Qwen2-VL / Qwen2.5-VL checkpoint from a local folder.

- The LLM's FFN layers (all, or the ones chosen in the config) become modality-driven MoE layers
  by upcycling (upcycle.py): experts start as copies of the dense FFN, so the pretrained model
  is unchanged at initialisation.
- A product or query is one sequence: each image as <|vision_start|> image tokens
  <|vision_end|>, then its text(s). The embedding is the mean of the last hidden states over
  all tokens of the sequence (as the paper states), L2-normalised.
- Saved models are folders: the transformers config, tokenizer and image-processor files,
  `model.safetensors` (the upcycled backbone and W*) and `moonsearch.json` (MoE layout,
  preprocessing, training config, weights hash). Nothing is ever downloaded.

Inputs are built here rather than by the transformers processor: Qwen2VLProcessor insists on a
video processor, which needs torchvision, and building the ids ourselves also gives
`product_tokens` the kind of every token for free.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from moonsearch.encoder.base import Encoder, file_sha256, l2_normalize
from moonsearch.encoder.moe import ObjectiveWeights
from moonsearch.encoder.moon import OBJECTIVES
from moonsearch.encoder.upcycle import moe_modules, upcycle
from moonsearch.errors import MoonsearchError

KIND = "mllm"
FORMAT = 1
META_FILE = "moonsearch.json"
WEIGHTS_FILE = "model.safetensors"
# model_type -> (checkpoint class, the class we keep: vision tower + LLM without the LM head)
FAMILIES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLModel"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLModel"),
}
DEFAULT_MOE = {"experts": 4, "top_k": 2, "layers": "last:8"}
DEFAULT_PREPROCESS = {"min_pixels": 56 * 56, "max_pixels": 448 * 448, "max_text_tokens": 128}


@dataclass
class Part:
    """One typed run of a batch's inputs: `kind` "text" or "image", one item (or None) per sample.
    The MLLM counterpart of moon-lite's Segment: the trainer's batches are lists of Parts."""

    kind: str
    items: list

    def to(self, device) -> "Part":
        """Raw texts and images stay on the host; the model moves its own tensors."""
        return self


class Preprocessor:
    """Texts and PIL images -> Qwen-VL input ids, attention mask, pixel values and grids."""

    def __init__(self, tokenizer, image_processor, config, min_pixels: int, max_pixels: int, max_text_tokens: int):
        self.tokenizer, self.image_processor = tokenizer, image_processor
        self.image_token = int(config.image_token_id)
        self.vision_start = int(config.vision_start_token_id)
        self.vision_end = int(config.vision_end_token_id)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad = int(pad if pad is not None else 0)
        self.merge = int(config.vision_config.spatial_merge_size)
        self.size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
        self.max_text_tokens = int(max_text_tokens)
        self.settings = {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels),
                         "max_text_tokens": int(max_text_tokens)}

    def text_ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_text_tokens)
        return [list(ids) for ids in encoded["input_ids"]]

    def __call__(self, samples: Sequence[tuple[list, list[str]]]) -> dict:
        """samples: per sample (images, texts). Images come first in the sequence, then texts.
        Returns model inputs plus `kinds` (per sample, per token: text / image / special)."""
        images = [im.convert("RGB") for ims, _ in samples for im in ims]
        grids = None
        batch: dict = {}
        if images:
            pixels = self.image_processor(images=images, size=self.size, return_tensors="pt")
            batch["pixel_values"], grids = pixels["pixel_values"], pixels["image_grid_thw"]
            batch["image_grid_thw"] = grids
        flat_texts = [t for _, texts in samples for t in texts]
        flat_ids = iter(self.text_ids(flat_texts))
        grid_iter = iter(grids.tolist() if grids is not None else [])
        rows, kinds = [], []
        for ims, texts in samples:
            ids, kind = [], []
            for _ in ims:
                t, h, w = next(grid_iter)
                count = t * h * w // (self.merge ** 2)
                ids += [self.vision_start] + [self.image_token] * count + [self.vision_end]
                kind += ["special"] + ["image"] * count + ["special"]
            for _ in texts:
                piece = next(flat_ids)
                ids += piece
                kind += ["text"] * len(piece)
            if not ids:   # nothing to read (an absent view in a training batch): one pad token
                ids, kind = [self.pad], ["special"]
            rows.append(ids)
            kinds.append(kind)
        longest = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, ids in enumerate(rows):   # right padding: causal attention keeps real tokens exact
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[i, : len(ids)] = 1
        batch.update(input_ids=input_ids, attention_mask=mask,
                     mm_token_type_ids=(input_ids == self.image_token).int() * mask.int())
        batch["kinds"] = kinds
        return batch


def _samples(parts: Sequence[Part]) -> list[tuple[list, list[str]]]:
    n = len(parts[0].items)
    out = []
    for i in range(n):
        images = [p.items[i] for p in parts if p.kind == "image" and p.items[i] is not None]
        texts = [p.items[i] for p in parts if p.kind == "text" and p.items[i] is not None and str(p.items[i]).strip()]
        out.append((images, texts))
    return out


class MoonMLLM(nn.Module):
    """Backbone (vision tower + LLM with upcycled MoE FFNs) + W*; called like moon-lite's model:
    `model(parts) -> (normalised embeddings (B, D), token-averaged router gates (B, Z))`."""

    def __init__(self, backbone: nn.Module, preprocessor: Preprocessor, moe: dict):
        super().__init__()
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.moe = dict(moe)
        self.moe_layers = moe_modules(backbone)
        experts = self.moe["experts"] if self.moe_layers else 1
        self.objectives = ObjectiveWeights(experts, len(OBJECTIVES))
        self.dim = int(backbone.config.text_config.hidden_size)
        self.autocast_dtype: torch.dtype | None = None   # bf16 on GPU (the trainer sets it)
        self.eval_batch_size = 16
        self._last_mask: torch.Tensor | None = None

    @property
    def family(self) -> str:
        return self.backbone.config.model_type

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def run(self, samples: Sequence[tuple[list, list[str]]]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """One forward pass: last hidden states (B, T, D) float32, attention mask, inputs."""
        batch = self.preprocessor(samples)
        device = self.device
        inputs = {k: v.to(device) for k, v in batch.items() if k != "kinds"}
        for layer in self.moe_layers:
            layer.last_gates = None
        with self._autocast():
            out = self.backbone(**inputs, use_cache=False)
        return out.last_hidden_state.float(), inputs["attention_mask"], batch

    def _forward(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask, _ = self.run(samples)
        weights = mask.unsqueeze(-1).float()
        count = weights.sum(1).clamp(min=1.0)
        pooled = (hidden * weights).sum(1) / count
        if self.moe_layers:
            gates = torch.stack([m.last_gates.float() for m in self.moe_layers]).mean(0)
            sample_gates = (gates * weights).sum(1) / count
        else:
            sample_gates = torch.ones(len(samples), 1, device=hidden.device)
        self._last_mask = mask.bool()
        return nn.functional.normalize(pooled, dim=-1), sample_gates

    def forward(self, parts: Sequence[Part]) -> tuple[torch.Tensor, torch.Tensor]:
        samples = _samples(parts)
        if torch.is_grad_enabled() or len(samples) <= self.eval_batch_size:
            return self._forward(samples)
        # No graph to keep: run in chunks so validation and indexing fit in memory.
        chunks = [self._forward(samples[i:i + self.eval_batch_size])
                  for i in range(0, len(samples), self.eval_batch_size)]
        return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])

    def aux_loss(self) -> torch.Tensor:
        """L_aux of the last call, averaged over the MoE layers, over real (non-pad) tokens."""
        if not self.moe_layers or self._last_mask is None:
            return torch.zeros((), device=self.device)
        return torch.stack([m.masked_aux(self._last_mask) for m in self.moe_layers]).mean()


# --- loading and saving ------------------------------------------------------------------

def _read_config(folder: Path):
    import transformers
    from transformers import AutoConfig

    if int(transformers.__version__.split(".")[0]) < 5:
        raise MoonsearchError(f"the MLLM backbone needs transformers 5 (tested with 5.24); this is "
                              f"{transformers.__version__}: pip install -U 'transformers>=5'")
    if not folder.is_dir():
        raise MoonsearchError(f"no model folder at {folder} (give a local Qwen2-VL / Qwen2.5-VL checkpoint folder)")
    if not (folder / "config.json").exists():
        raise MoonsearchError(f"{folder} has no config.json: it is not a transformers model folder")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type not in FAMILIES:
        raise MoonsearchError(f"{folder} holds a '{config.model_type}' model; the MLLM backbone supports "
                              f"{', '.join(FAMILIES)} (Qwen2-VL, Qwen2.5-VL)")
    return config


def _preprocessor(folder: Path, config, settings: dict) -> Preprocessor:
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MoonsearchError(f"{folder}: cannot load its tokenizer / image processor files ({exc})") from None
    return Preprocessor(tokenizer, image_processor, config, **{**DEFAULT_PREPROCESS, **settings})


def load_backbone(path: Path | str, moe: dict | None = None, preprocess: dict | None = None) -> MoonMLLM:
    """A local Qwen2-VL / Qwen2.5-VL checkpoint folder -> MoonMLLM with upcycled MoE layers.

    A folder saved by moonsearch (it has moonsearch.json) is loaded as it is, to train further.
    """
    folder = Path(path)
    if (folder / META_FILE).exists():
        return load_mllm(folder)
    import transformers

    config = _read_config(folder)
    checkpoint_class = getattr(transformers, FAMILIES[config.model_type][0])
    full = checkpoint_class.from_pretrained(folder, local_files_only=True, dtype=torch.float32,
                                            attn_implementation="sdpa")
    backbone = full.model        # the LM head is not used: the embedding is the mean hidden state
    del full
    moe = {**DEFAULT_MOE, **(moe or {})}
    chosen = upcycle(backbone.language_model.layers, moe["experts"], moe["top_k"], moe["layers"],
                     backbone.config.text_config.hidden_size)
    moe["layers"] = chosen
    return MoonMLLM(backbone, _preprocessor(folder, backbone.config, preprocess or {}), moe)


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META_FILE
    if not path.exists():
        raise MoonsearchError(f"{folder} is not a saved moonsearch MLLM encoder (no {META_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("kind") != KIND or meta.get("format") != FORMAT:
        raise MoonsearchError(f"{path}: kind {meta.get('kind')} format {meta.get('format')}; "
                              f"this moonsearch reads kind {KIND} format {FORMAT}")
    return meta


def load_mllm(folder: Path | str) -> MoonMLLM:
    """A folder written by `save_mllm` -> the same model (float32, on the CPU)."""
    import transformers
    from safetensors.torch import load_file
    from transformers.initialization import no_init_weights

    folder = Path(folder)
    meta = read_meta(folder)
    config = _read_config(folder)
    base_class = getattr(transformers, FAMILIES[config.model_type][1])
    with no_init_weights():   # every tensor is overwritten from model.safetensors below
        backbone = base_class._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    moe = meta["moe"]
    upcycle(backbone.language_model.layers, moe["experts"], moe["top_k"], moe["layers"],
            backbone.config.text_config.hidden_size)
    model = MoonMLLM(backbone, _preprocessor(folder, config, meta["preprocess"]), moe)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise MoonsearchError(f"{folder} has no {WEIGHTS_FILE}")
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.eval()


def save_mllm(model: MoonMLLM, folder: Path | str, training: dict | None = None,
              report: dict | None = None) -> Path:
    """Write the model folder; moonsearch.json goes last, so a folder with it is complete."""
    from safetensors.torch import save_file

    import moonsearch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    model.backbone.config.save_pretrained(folder)
    model.preprocessor.tokenizer.save_pretrained(folder)
    model.preprocessor.image_processor.save_pretrained(folder)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / WEIGHTS_FILE)
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    meta = {
        "kind": KIND, "format": FORMAT, "family": model.family, "dim": model.dim,
        "moe": model.moe, "preprocess": model.preprocessor.settings, "objectives": list(OBJECTIVES),
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE), "moonsearch_version": moonsearch.__version__,
        "training": training,
    }
    tmp = folder / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    tmp.replace(folder / META_FILE)
    return folder


# --- the Encoder ---------------------------------------------------------------------------

class MLLMEncoder(Encoder):
    """Inference: raw texts and PIL images -> MoonMLLM -> vectors, in batches."""

    name = KIND

    def __init__(self, model: MoonMLLM, meta: dict | None = None, folder: Path | None = None,
                 device: str = "cpu", batch_size: int | None = None):
        self.device = device
        if device == "cuda":   # bf16 weights halve GPU memory; vectors come back as float32
            model = model.to(device=device, dtype=torch.bfloat16)
        self.model = model.to(device).eval()
        self.model.eval_batch_size = batch_size or (32 if device == "cuda" else 8)
        self.meta = meta or {}
        self.dim = model.dim
        self.weights_path = Path(folder).resolve() if folder is not None else None

    @classmethod
    def load(cls, folder: Path | str, device: str = "cpu", batch_size: int | None = None) -> "MLLMEncoder":
        folder = Path(folder)
        if folder.is_file() and folder.name == META_FILE:   # the manifest may name the file itself
            folder = folder.parent
        return cls(load_mllm(folder), read_meta(folder), folder, device=device, batch_size=batch_size)

    @property
    def encoder_id(self) -> str:
        """kind@hash of model.safetensors (recorded at save time: re-hashing GBs at every load
        would be slow), so an index refuses a differently trained model."""
        digest = self.meta.get("weights_sha256")
        return f"{self.name}@{digest[:16]}" if digest else self.name

    @torch.inference_mode()
    def encode(self, texts: Sequence[str | None], images: Sequence[Image.Image | None]) -> np.ndarray:
        if len(texts) != len(images):
            raise ValueError("texts and images must be parallel lists")
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        embeddings, _ = self.model([Part("image", list(images)), Part("text", list(texts))])
        return l2_normalize(embeddings.float().cpu().numpy())

    @torch.inference_mode()
    def product_tokens(self, text: str | None, image: Image.Image | None):
        """The product's last-layer token states and what each token is (for `moonsearch explain`)."""
        from moonsearch.encoder.tokens import TokenBreakdown

        samples = _samples([Part("image", [image]), Part("text", [text])])
        hidden, mask, batch = self.model.run(samples)
        states = hidden[0][mask[0].bool()].cpu().numpy().astype(np.float32)
        kinds = batch["kinds"][0]
        ids = batch["input_ids"][0, : len(kinds)].tolist()
        tokenizer = self.model.preprocessor.tokenizer
        pieces = [tokenizer.decode([i]) for i, k in zip(ids, kinds) if k == "text"]
        specials = [tokenizer.convert_ids_to_tokens(i) for i, k in zip(ids, kinds) if k == "special"]
        grid = None
        if "image_grid_thw" in batch:
            _, h, w = batch["image_grid_thw"][0].tolist()
            merge = self.model.preprocessor.merge
            grid = (h // merge, w // merge)
        extra = {"special_pieces": specials} if "special_pieces" in {f.name for f in fields(TokenBreakdown)} else {}
        return TokenBreakdown(states=states, kinds=kinds, text_pieces=pieces, image_grid=grid, **extra)
