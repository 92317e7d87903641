"""Modality-driven Mixture-of-Experts (MOON2.0): expert FFNs, a token router, and the
objective matrix W* that turns routing into per-objective loss weights omega.

- Router: G = softmax(W_g h) per token; the top-k experts run and their gates are renormalised.
- W* in R^{Z x M}: softmax over the M objectives gives p_{z,m}, which objectives expert z serves.
- omega_m = mean over objective m's samples of sum_z p_{z,m} G_{z,b} (G averaged over tokens).
- L_aux (Switch-style load balance) and L_sparsity = (1/Z) sum_z entropy(p_{z,.}).
"""

from __future__ import annotations

import torch
from torch import nn


class ExpertFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MoEFeedForward(nn.Module):
    """Z experts with top-k token routing; `experts=1` is a plain dense FFN (the w/o-MoE ablation)."""

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int, dropout: float = 0.0):
        super().__init__()
        self.experts = nn.ModuleList(ExpertFFN(dim, hidden, dropout) for _ in range(experts))
        self.top_k = min(top_k, experts)
        self.router = nn.Linear(dim, experts, bias=False) if experts > 1 else None
        self.last_gates: torch.Tensor | None = None   # (B, T, Z) full softmax gates of the last call
        self.last_aux: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.router is None:
            self.last_gates = torch.ones(*x.shape[:2], 1, device=x.device)
            self.last_aux = x.new_zeros(())
            return self.experts[0](x)
        gates = torch.softmax(self.router(x), dim=-1)                       # (B, T, Z)
        top_values, top_index = gates.topk(self.top_k, dim=-1)
        top_values = top_values / top_values.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        flat_x = x.reshape(-1, x.shape[-1])
        flat_out = out.view(-1, x.shape[-1])
        flat_index = top_index.reshape(-1, self.top_k)
        flat_weight = top_values.reshape(-1, self.top_k)
        valid = mask.reshape(-1)
        for z, expert in enumerate(self.experts):
            chosen = (flat_index == z) & valid[:, None]
            token_rows, slot = chosen.nonzero(as_tuple=True)
            if token_rows.numel():
                flat_out.index_add_(0, token_rows, expert(flat_x[token_rows]) * flat_weight[token_rows, slot, None])
        self.last_gates = gates
        self.last_aux = self._load_balance(gates, top_index, mask)
        return out

    @staticmethod
    def _load_balance(gates: torch.Tensor, top_index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Z * sum_z (share of tokens routed to z) * (mean gate of z): 1.0 when balanced."""
        z = gates.shape[-1]
        weights = mask.to(gates.dtype)
        tokens = weights.sum().clamp(min=1.0)
        routed = nn.functional.one_hot(top_index[..., 0], z).to(gates.dtype)
        share = (routed * weights[..., None]).sum((0, 1)) / tokens
        mean_gate = (gates * weights[..., None]).sum((0, 1)) / tokens
        return z * (share * mean_gate).sum()


class ObjectiveWeights(nn.Module):
    """W* (Z x M) and the dynamic weights omega it gives each alignment objective."""

    def __init__(self, experts: int, objectives: int):
        super().__init__()
        self.w_star = nn.Parameter(torch.zeros(experts, objectives))

    def p(self) -> torch.Tensor:
        return torch.softmax(self.w_star, dim=1)                            # (Z, M)

    def omega(self, sample_gates: torch.Tensor, objective: int) -> torch.Tensor:
        """omega_m for the samples of objective m; sample_gates (B, Z) are token-averaged G."""
        return (sample_gates @ self.p()[:, objective]).mean()

    def sparsity(self) -> torch.Tensor:
        p = self.p()
        return -(p * torch.log(p.clamp(min=1e-9))).sum(1).mean()
