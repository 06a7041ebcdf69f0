"""The L2L optimizer (Andrychowicz et al. 2016): preprocessing, the LSTM core, the torch.optim shell and weights."""

import math

import pytest
import torch

from loptim.errors import WeightsError
from loptim.optimizers.lstm import LSTMConfig, LSTMOptimizer, LSTMOptimizerNet, preprocess_gradient
from loptim.pretrained import load_learned, save_learned


def test_preprocessing_matches_appendix_a_on_edge_values():
    p = 10.0
    grads = torch.tensor([0.0, 1e-6, -1e-6, math.exp(-p), 1e3, -1e3, -0.5, 1e-30], dtype=torch.float64)
    out = preprocess_gradient(grads, p)
    # |g| < e^-p: (-1, e^p g); else (log|g| / p, sign g)
    expected_log = [-1.0, -1.0, -1.0, -1.0, math.log(1e3) / p, math.log(1e3) / p, math.log(0.5) / p, -1.0]
    expected_sign = [0.0, math.exp(p) * 1e-6, -math.exp(p) * 1e-6, 1.0, 1.0, -1.0, -1.0, math.exp(p) * 1e-30]
    torch.testing.assert_close(out[0], torch.tensor(expected_log, dtype=torch.float64))
    torch.testing.assert_close(out[1], torch.tensor(expected_sign, dtype=torch.float64))
    assert torch.isfinite(out).all()


def _reference_update(meta, grad):
    """The same two-layer LSTM written with torch.nn.LSTMCell (gate order i, f, g, o) as a known answer."""
    units = 20
    cells = [torch.nn.LSTMCell(2, units, dtype=grad.dtype), torch.nn.LSTMCell(units, units, dtype=grad.dtype)]

    def reorder(w):  # ours: i, f, o, g
        return torch.cat([w[:units], w[units : 2 * units], w[3 * units :], w[2 * units : 3 * units]])

    with torch.no_grad():
        for cell, w, b, split in ((cells[0], meta["w1"], meta["b1"], 2), (cells[1], meta["w2"], meta["b2"], units)):
            cell.weight_ih.copy_(reorder(w[:, :split]))
            cell.weight_hh.copy_(reorder(w[:, split:]))
            cell.bias_ih.copy_(reorder(b))
            cell.bias_hh.zero_()
        h1, _ = cells[0](preprocess_gradient(grad).t())
        h2, _ = cells[1](h1)
        return 0.1 * (h2 @ meta["wout"].t() + meta["bout"]).squeeze(1)


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_core_matches_lstmcell_reference_across_chunks(grad_enabled):
    torch.set_num_threads(1)
    net = LSTMOptimizerNet(generator=torch.Generator().manual_seed(0)).double()
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    grad = torch.randn(5000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.01
    state = net.zero_state(5000, dtype=torch.float64)
    with torch.set_grad_enabled(grad_enabled):
        delta, _ = net.step_flat(meta, state, grad, chunk=1536)  # 4 chunks, the last one shorter
    torch.testing.assert_close(delta, _reference_update(meta, grad))


def _train(opt, params, steps, seed):
    target = torch.randn(params[0].shape, generator=torch.Generator().manual_seed(seed))
    for _ in range(steps):
        opt.zero_grad()
        loss = ((params[0] - target) ** 2).sum() + (params[1] ** 2).sum()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in params]


def test_state_dict_round_trip_continues_bit_for_bit(tmp_path):
    torch.set_num_threads(1)
    weights = tmp_path / "w.safetensors"
    net = LSTMOptimizerNet(generator=torch.Generator().manual_seed(3))
    save_learned(weights, "lstm", net, {}, {"test": True})

    def fresh():
        g = torch.Generator().manual_seed(4)
        return [torch.randn(7, 3, generator=g).requires_grad_(), torch.randn(5, generator=g).requires_grad_()]

    params = fresh()
    opt = LSTMOptimizer(params, weights=str(weights))
    _train(opt, params, 5, seed=0)
    saved_params = [p.detach().clone() for p in params]
    saved = opt.state_dict()
    expected = _train(opt, params, 5, seed=1)

    restored = [p.clone().requires_grad_() for p in saved_params]
    opt2 = LSTMOptimizer(restored, weights=str(weights))
    opt2.load_state_dict(saved)
    got = _train(opt2, restored, 5, seed=1)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    assert not torch.equal(expected[0], saved_params[0])  # the steps really moved the parameters


def test_weights_errors_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="no shipped weights"):
        load_learned("lstm", "lstm-nonexistent")
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_learned("lstm", str(corrupt))
    mismatched = tmp_path / "small.safetensors"
    save_learned(mismatched, "lstm", LSTMOptimizerNet(LSTMConfig(hidden=8)), {"hidden": 20}, {})
    with pytest.raises(WeightsError, match="does not fit"):
        load_learned("lstm", str(mismatched))


def test_saved_weights_round_trip(tmp_path):
    net = LSTMOptimizerNet(LSTMConfig(hidden=12), generator=torch.Generator().manual_seed(5))
    path = tmp_path / "w.safetensors"
    save_learned(path, "lstm", net, {"hidden": 12}, {"recipe": "x"})
    loaded = load_learned("lstm", str(path))
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert path.with_suffix(".json").exists()


def test_functional_update_is_pure_without_grad():
    net = LSTMOptimizerNet(generator=torch.Generator().manual_seed(0))
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    state = net.zero_state(100)
    before = {k: v.clone() for k, v in state.items()}
    params = {"w": torch.zeros(10, 10)}
    grads = {"w": torch.randn(10, 10, generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        new_params, new_state = net.update(meta, state, params, grads)
    for k in state:
        assert torch.equal(state[k], before[k]), k
        assert not torch.equal(new_state[k], before[k]), k
    assert torch.equal(params["w"], torch.zeros(10, 10))
    assert not torch.equal(new_params["w"], params["w"])


def test_eager_path_gives_the_same_bits_on_one_or_two_threads():
    net = LSTMOptimizerNet(generator=torch.Generator().manual_seed(0))
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    grad = torch.randn(10_000, generator=torch.Generator().manual_seed(1)) * 0.01
    results = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                results.append(net.step_flat(meta, net.zero_state(10_000), grad, chunk=1024, threads=threads))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][0], results[1][0])
    for k in results[0][1]:
        assert torch.equal(results[0][1][k], results[1][1][k])
