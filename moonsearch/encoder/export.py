"""Exports moon-lite's three networks to ONNX, with torch, for the torch-free query runtime
(moonsearch/encoder/onnx_moon.py). Only imported when a cached graph is missing or damaged.

- text tower: MiniLM (input_ids, attention_mask, token_type_ids) -> last_hidden_state, free
  batch and sequence axes;
- image tower: onnx_image's export (shared with Towers, which runs it at indexing time);
- fusion: MoonLite as one graph over a text segment and an image segment, each with a mask.

MoonLite's MoE routes tokens in a loop with a Python branch on the routed count and index_add_;
the graph has the same routing without the branch (an expert on zero rows is a no-op), so only
real tokens pay for the two experts each is routed to. (Computing all four experts densely,
tried first, made the one-pass three-view batch twice as slow as torch's three passes.)
Attention is written out (q k^T with the key padding mask, softmax, v) so the export does not
depend on which kernel nn.MultiheadAttention picks under tracing.

Every file is written under a temporary name and renamed into place, so two processes
exporting at once never load half a file; then checked against torch on a small batch.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moonsearch.encoder.moon import IMAGE, IMAGE_TOKENS, TEXT, MoonLite
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM
from moonsearch.errors import MoonsearchError

OPSET = 17


class RoutedMoE(nn.Module):
    """MoEFeedForward at inference, traceable: each expert runs on the tokens routed to it
    (NonZero, Gather, ScatterElements-add in the graph), weighted by the renormalised top-k gate.
    Masked tokens (padding, an absent segment) are routed nowhere, as in MoEFeedForward, so a
    batch padded for several views pays their FFN only for real tokens."""

    def __init__(self, moe):
        super().__init__()
        self.moe = moe

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        experts = self.moe.experts
        if self.moe.router is None:
            return experts[0](x)
        flat = x.reshape(-1, x.shape[-1])
        gates = torch.softmax(self.moe.router(flat), dim=-1)
        top_values, top_index = gates.topk(self.moe.top_k, dim=-1)
        top_values = top_values / top_values.sum(-1, keepdim=True)
        weights = torch.zeros_like(gates).scatter(-1, top_index, top_values)            # (N, Z)
        valid = mask.reshape(-1)
        out = torch.zeros_like(flat)
        for z, expert in enumerate(experts):
            rows = torch.nonzero((top_index == z).any(-1) & valid).reshape(-1)
            y = expert(flat.index_select(0, rows)) * weights.index_select(0, rows)[:, z:z + 1]
            out = out.scatter_add(0, rows.unsqueeze(1).expand(-1, flat.shape[1]), y)
        return out.reshape(x.shape)


class FusionGraph(nn.Module):
    """MoonLite.forward for a (text, image) pair of segments -> (B, dim) unit embeddings."""

    def __init__(self, model: MoonLite):
        super().__init__()
        self.model = model.eval()
        self.moes = nn.ModuleList(RoutedMoE(block.ffn) for block in model.blocks)

    def attend(self, attention: nn.MultiheadAttention, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = h.shape
        heads = attention.num_heads
        q, k, v = nn.functional.linear(h, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dim // heads)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, length, dim)
        return attention.out_proj(out)

    def forward(self, text_states, text_mask, image_tokens, image_mask):
        m = self.model
        text = m.text_in(text_states) + m.kind.weight[TEXT]
        image = m.image_in(image_tokens) + m.image_position[:IMAGE_TOKENS] + m.kind.weight[IMAGE]
        x = torch.cat([text, image], dim=1)
        mask = torch.cat([text_mask, image_mask], dim=1)
        empty = ~mask.any(1, keepdim=True)        # no token at all: attend to one dummy slot, as MoonLite does
        mask = torch.cat([mask[:, :1] | empty, mask[:, 1:]], dim=1)
        for block, moe in zip(m.blocks, self.moes):
            x = x + self.attend(block.attention, block.norm1(x), mask)
            x = x + moe(block.norm2(x), mask)
        x = m.norm(x)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


class TextGraph(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.net(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids).last_hidden_state


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    """torch.onnx.export to a temporary name beside `path`, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), args, str(tmp), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check(name: str, path: Path, expected: np.ndarray, got: np.ndarray, tolerance: float) -> None:
    """A graph that does not reproduce torch is deleted, not kept for the next query."""
    a = expected.reshape(len(expected), -1).astype(np.float64)
    b = got.reshape(len(got), -1).astype(np.float64)
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    if not np.isfinite(cosine).all() or cosine.min() < tolerance:
        path.unlink(missing_ok=True)
        raise MoonsearchError(f"the ONNX export of the {name} does not match torch (cosine {cosine.min():.6f}); "
                              "set MOONSEARCH_ONNX=0 to query with torch")


def export_fusion(weights_path: Path, path: Path) -> None:
    """moon-lite's fusion model from its weights file -> one graph at `path`."""
    from moonsearch.encoder.base import read_weights
    from moonsearch.encoder.moon import Segment

    config, tensors = read_weights(weights_path)
    model = MoonLite(**config["model"])
    model.load_state_dict(tensors)
    graph = FusionGraph(model.eval())
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(3, 7, TEXT_FEATURE_DIM, generator=generator)
    text_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [False] * 7])
    image = torch.randn(3, IMAGE_TOKENS, IMAGE_FEATURE_DIM, generator=generator).abs()
    image_mask = torch.tensor([[True] * IMAGE_TOKENS, [False] * IMAGE_TOKENS, [True] * IMAGE_TOKENS])
    _export(graph, (text, text_mask, image, image_mask), path,
            ["text_states", "text_mask", "image_tokens", "image_mask"], ["embedding"],
            {"text_states": {0: "batch", 1: "text_length"}, "text_mask": {0: "batch", 1: "text_length"},
             "image_tokens": {0: "batch"}, "image_mask": {0: "batch"}, "embedding": {0: "batch"}})
    with torch.no_grad():   # the reference: MoonLite itself, each row with only its own segments
        expected = torch.cat([model([Segment(text[:1], text_mask[:1], TEXT), Segment(image[:1], image_mask[:1], IMAGE)])[0],
                              model([Segment(text[1:2, :4], text_mask[1:2, :4], TEXT)])[0],
                              model([Segment(image[2:], image_mask[2:], IMAGE)])[0]]).numpy()
    got = _session(path).run(None, {"text_states": text.numpy(), "text_mask": text_mask.numpy(),
                                    "image_tokens": image.numpy(), "image_mask": image_mask.numpy()})[0]
    _check("fusion model", path, expected, got, 0.9999)


def export_text(model_dir: Path, path: Path) -> None:
    """all-MiniLM-L6-v2 from its package folder -> token states graph at `path`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    net = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    batch = tokenizer(["a red cotton dress for women", "shoes"], padding=True, return_tensors="pt")
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    axes = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "token_type_ids",
                                                         "last_hidden_state")}
    _export(TextGraph(net), args, path, ["input_ids", "attention_mask", "token_type_ids"],
            ["last_hidden_state"], axes)
    with torch.no_grad():
        expected = net(**batch).last_hidden_state
    got = _session(path).run(None, {k: v.numpy() for k, v in batch.items()})[0]
    keep = batch["attention_mask"].bool().numpy()
    _check("text tower", path, expected.numpy()[keep], got[keep], 0.9999)


def export_image(weights_file: Path, path: Path, size: tuple[int, int]) -> None:
    """EfficientNet-Lite0 feature maps, as onnx_image exports them for Towers."""
    from moonsearch.encoder import onnx_image
    from moonsearch.encoder.towers import ImageTower

    onnx_image.export(ImageTower().net, path, size)
