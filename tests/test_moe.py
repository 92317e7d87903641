import torch

from moonsearch.encoder.moe import MoEFeedForward, ObjectiveWeights


def test_top_k_routing_output_and_gates():
    torch.manual_seed(0)
    moe = MoEFeedForward(dim=8, hidden=16, experts=4, top_k=2)
    x = torch.randn(3, 5, 8)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[2, 3:] = False
    out = moe(x, mask)
    assert out.shape == x.shape
    assert torch.allclose(moe.last_gates.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert torch.all(out[2, 3:] == 0)  # padding tokens go to no expert
    # the output of a token is the gate-weighted sum of its two chosen experts
    gates = moe.last_gates[0, 0]
    top = gates.topk(2)
    expected = sum(w / top.values.sum() * moe.experts[int(z)](x[0, 0]) for w, z in zip(top.values, top.indices))
    assert torch.allclose(out[0, 0], expected, atol=1e-5)


def test_load_balance_is_one_when_routing_is_uniform_and_larger_when_collapsed():
    gates = torch.full((2, 4, 4), 0.25)
    index = torch.arange(4).repeat(2, 1).unsqueeze(-1)          # each expert gets a quarter
    mask = torch.ones(2, 4, dtype=torch.bool)
    assert torch.isclose(MoEFeedForward._load_balance(gates, index, mask), torch.tensor(1.0))
    collapsed = torch.zeros(2, 4, 4)
    collapsed[..., 0] = 1.0
    assert MoEFeedForward._load_balance(collapsed, torch.zeros(2, 4, 1, dtype=torch.long), mask) > 3.9


def test_dense_ablation_has_one_expert_and_no_router():
    moe = MoEFeedForward(dim=8, hidden=16, experts=1, top_k=2)
    x = torch.randn(2, 3, 8)
    assert moe.router is None
    assert torch.allclose(moe(x, torch.ones(2, 3, dtype=torch.bool)), moe.experts[0](x))


def test_objective_weights_are_distributions():
    weights = ObjectiveWeights(experts=3, objectives=4)
    assert torch.allclose(weights.p().sum(1), torch.ones(3))
    # uniform W*: entropy log(4) per expert; every objective gets weight 1/4
    assert torch.isclose(weights.sparsity(), torch.log(torch.tensor(4.0)))
    gates = torch.softmax(torch.randn(10, 3), dim=1)
    omegas = torch.stack([weights.omega(gates, m) for m in range(4)])
    assert torch.allclose(omegas, torch.full((4,), 0.25))
    with torch.no_grad():
        weights.w_star[:, 0] = 10.0
    assert weights.omega(gates, 0) > 0.99 and weights.sparsity() < 0.01
