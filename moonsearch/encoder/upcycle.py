"""Dense FFN -> modality-driven MoE by upcycling (for the MLLM backbone).

Each chosen decoder layer's MLP is replaced by Z experts that start as exact copies of it, and
a token router that starts at zero (uniform gates). With the top-k gates renormalised to sum
to 1 and all experts identical, the layer's output equals the dense MLP's at initialisation,
so the pretrained MLLM is unchanged until training moves the experts and the router apart.

The MoE layer is a `MoEFeedForward` (same routing, `last_gates`, load-balance loss), so the
omega / L_aux / L_sparsity code written for moon-lite applies unchanged.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from moonsearch.encoder.moe import MoEFeedForward
from moonsearch.errors import MoonsearchError


class UpcycledMoE(MoEFeedForward):
    """Z copies of a pretrained MLP behind a zero-initialised router.

    The decoder layer calls `mlp(hidden_states)` without a token mask, so every token is routed
    here (padding included); the caller pools gates and the load-balance loss over real tokens
    with `masked_aux`. Keeping the layer mask-free also keeps it deterministic under gradient
    checkpointing, where it is run again during the backward pass.
    """

    def __init__(self, dense: nn.Module, experts: int, top_k: int, hidden_size: int):
        nn.Module.__init__(self)   # MoEFeedForward.__init__ would build fresh GELU experts
        weight = next(dense.parameters())
        self.experts = nn.ModuleList(copy.deepcopy(dense) for _ in range(experts))
        self.top_k = min(top_k, experts)
        self.router = None
        if experts > 1:
            self.router = nn.Linear(hidden_size, experts, bias=False, device=weight.device, dtype=weight.dtype)
            nn.init.zeros_(self.router.weight)
        self.last_gates: torch.Tensor | None = None
        self.last_aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        return super().forward(x, mask)

    def masked_aux(self, mask: torch.Tensor) -> torch.Tensor:
        """The load-balance loss of the last call, over the tokens where `mask` is True."""
        gates = self.last_gates
        if self.router is None or gates is None:
            return torch.zeros((), device=mask.device)
        top_index = gates.topk(self.top_k, dim=-1).indices
        return MoEFeedForward._load_balance(gates.float(), top_index, mask)


def select_layers(spec, count: int) -> list[int]:
    """Which decoder layers become MoE: "all", "last:N", "every:N" (every Nth, counted from the
    last one), "none", or an explicit list of indices (negative ones count from the end)."""
    if isinstance(spec, str):
        if spec == "all":
            return list(range(count))
        if spec == "none":
            return []
        kind, _, number = spec.partition(":")
        if kind in ("last", "every") and number.isdigit() and int(number) > 0:
            n = int(number)
            chosen = range(max(0, count - n), count) if kind == "last" else range(count - 1, -1, -n)
            return sorted(chosen)
        raise MoonsearchError(f"moe layers '{spec}': use all, none, last:N, every:N or a list of indices")
    if isinstance(spec, Iterable):
        chosen = sorted({int(i) % count for i in spec if -count <= int(i) < count})
        if len(chosen) != len(list(spec)):
            raise MoonsearchError(f"moe layers {spec}: indices must be distinct and within 0..{count - 1}")
        return chosen
    raise MoonsearchError(f"moe layers {spec!r}: use all, none, last:N, every:N or a list of indices")


def upcycle(layers: nn.ModuleList, experts: int, top_k: int, which, hidden_size: int) -> list[int]:
    """Replace `layer.mlp` of the chosen decoder layers in place; returns their indices."""
    chosen = select_layers(which, len(layers))
    if experts < 1 or top_k < 1:
        raise MoonsearchError(f"moe: experts ({experts}) and top_k ({top_k}) must be at least 1")
    for i in chosen:
        layer = layers[i]
        if isinstance(layer.mlp, UpcycledMoE):
            raise MoonsearchError(f"decoder layer {i} is already a MoE layer")
        layer.mlp = UpcycledMoE(layer.mlp, experts, top_k, hidden_size)
    return chosen


def moe_modules(model: nn.Module) -> list[UpcycledMoE]:
    return [m for m in model.modules() if isinstance(m, UpcycledMoE)]
