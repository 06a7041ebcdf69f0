"""The Metz 2019 MLP optimizer: known answers, differentiability in the meta-parameters, exact state round trip."""

import torch

from loptim.optimizers.mlp import MLPOptimizer, MLPOptimizerNet


def _net(seed=0):
    return MLPOptimizerNet(generator=torch.Generator().manual_seed(seed)).double()


def test_update_formula_on_constructed_meta_parameters():
    net = _net()
    meta = {k: torch.zeros_like(v) for k, v in net.meta_params().items()}
    meta["b3"] = torch.tensor([2.0, 300.0], dtype=torch.float64)  # d = 2, m = 300 for every coordinate
    params = {"a": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(5, dtype=torch.float64)}
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    new, _ = net.update(meta, net.init_state(params), params, grads, step=7)
    expected = -1e-3 * 2.0 * torch.exp(torch.tensor(1e-3 * 300.0, dtype=torch.float64))
    for k in params:
        torch.testing.assert_close(new[k] - params[k], torch.full_like(params[k], float(expected)))


def test_update_is_differentiable_in_meta_params_against_finite_differences():
    torch.set_num_threads(1)
    net = _net(1)
    g = torch.Generator().manual_seed(2)
    params = {
        "w": torch.randn(4, 3, generator=g, dtype=torch.float64),
        "b": torch.randn(3, generator=g, dtype=torch.float64),
    }
    grads = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in params.items()}
    state = net.init_state(params)
    state["rms"] += 0.1

    def objective(meta):
        new, new_state = net.update(meta, state, params, grads, step=3)
        return sum((v**2).sum() for v in new.values()) + new_state["momenta"].sum()

    meta = {k: v.detach().clone().requires_grad_(True) for k, v in net.meta_params().items()}
    grads_meta = dict(zip(meta, torch.autograd.grad(objective(meta), list(meta.values()))))
    h = 1e-6
    for name in ("w1", "w1_time", "w2", "b3"):
        for index in (0, meta[name].numel() - 1):
            plus = {k: v.detach().clone() for k, v in meta.items()}
            minus = {k: v.detach().clone() for k, v in meta.items()}
            plus[name].view(-1)[index] += h
            minus[name].view(-1)[index] -= h
            fd = (objective(plus) - objective(minus)) / (2 * h)
            torch.testing.assert_close(grads_meta[name].view(-1)[index], fd.detach(), rtol=1e-5, atol=1e-9)


def test_state_dict_round_trip_continues_bit_for_bit():
    torch.set_num_threads(1)

    def fresh():
        g = torch.Generator().manual_seed(4)
        return [torch.randn(6, 3, generator=g).requires_grad_(), torch.randn(3, generator=g).requires_grad_()]

    def train(opt, params, steps, seed):
        target = torch.randn(6, 3, generator=torch.Generator().manual_seed(seed))
        for _ in range(steps):
            opt.zero_grad()
            (((params[0] - target) ** 2).sum() + (params[1] ** 2).sum()).backward()
            opt.step()
        return [p.detach().clone() for p in params]

    params = fresh()
    opt = MLPOptimizer(params)
    train(opt, params, 4, 0)
    saved, saved_params = opt.state_dict(), [p.detach().clone() for p in params]
    expected = train(opt, params, 4, 1)
    restored = [p.clone().requires_grad_() for p in saved_params]
    opt2 = MLPOptimizer(restored)
    opt2.load_state_dict(saved)
    for a, b in zip(expected, train(opt2, restored, 4, 1)):
        assert torch.equal(a, b)
    assert opt2.step_count == 8
    assert not torch.equal(expected[0], saved_params[0])
