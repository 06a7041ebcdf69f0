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


def test_eager_chunked_path_matches_the_differentiable_core():
    # Tensor sizes that straddle chunk boundaries, a 1-element tensor; the large case has enough chunks (74) for two
    # threads to split them (MIN_CHUNKS_PER_THREAD), the small one runs on one.
    from loptim.optimizers.mlp import MIN_CHUNKS_PER_THREAD, ChunkPlan, MLPConfig

    plan = ChunkPlan.build([150, 1, 64, 37], 64)
    assert plan.starts == [0, 64, 128, 150, 151, 215] and plan.tensor_of_chunk.tolist() == [0, 0, 0, 1, 2, 3]
    g = torch.Generator().manual_seed(3)
    net = MLPOptimizerNet(MLPConfig(chunk=64), generator=g).double()  # float64: only the op order differs
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for sizes in ([150, 1, 64, 37], [4500, 1, 64, 37]):
            n = sum(sizes)
            plan = ChunkPlan.build(sizes, 64)
            assert (len(plan.starts) >= 2 * MIN_CHUNKS_PER_THREAD) == (sizes[0] == 4500)
            pure, eager = net.zero_state(n, torch.float64), net.zero_state(n, torch.float64)
            scratch = torch.ones(11, n, dtype=torch.float64)
            param = torch.randn(n, generator=g, dtype=torch.float64)
            for step in range(4):
                grad = torch.randn(n, generator=g, dtype=torch.float64) * 10.0 ** (step - 2)
                with torch.no_grad():
                    expected, pure = net.step_flat(meta, pure, grad, param, sizes, step)
                got = net.step_flat_eager(meta, eager, grad, param, plan, step, scratch)
                torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-15)
                for fast, slow in zip(eager["momenta"], pure["momenta"]):  # lerp rounds unlike b m + (1-b) g
                    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9 * float(slow.abs().max()))
                param = param + got
    finally:
        torch.set_num_threads(previous)
