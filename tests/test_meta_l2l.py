"""Truncated backprop for L2L: the meta-gradient against finite differences, detached inner gradients, training
lowers the meta-loss, and an interrupted run resumes bit for bit."""

import dataclasses

import torch

from loptim.meta.estimators import TruncatedBackprop
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer
from loptim.meta.unroll import UnrollState, draw_truncation
from loptim.optimizers.lstm import LSTMOptimizerNet
from loptim.tasks.quadratic import QuadraticConfig, QuadraticTask


def _setup(steps):
    torch.set_num_threads(1)
    task = QuadraticTask(QuadraticConfig(dim=3, num_functions=2, function_seed=7, init_std=0.5))
    net = LSTMOptimizerNet(generator=torch.Generator().manual_seed(0)).double()
    meta = {k: v.detach().clone() for k, v in net.meta_params().items()}
    params = {k: v.double() for k, v in task.init(torch.Generator().manual_seed(1)).items()}
    state = net.zero_state(6, dtype=torch.float64)

    def fresh_unroll():
        return UnrollState(task, dict(params), dict(state), 0, steps, task.batches("train", torch.Generator()))

    return task, net, meta, fresh_unroll


def _estimate(net, meta, unroll, length):
    """TruncatedBackprop on one inner run: (meta-gradient, end state, stats)."""
    result = TruncatedBackprop().estimate(net, meta, [unroll], [draw_truncation(unroll, length, False)], None)
    return result.grads, result.unrolls[0], result.stats


class _Recorder:
    """Wraps the net's update to record the inner gradients it receives."""

    def __init__(self, net):
        self.net, self.grads = net, []

    def init_state(self, params):
        return self.net.init_state(params)

    def update(self, meta, state, params, grads, **kw):
        self.grads.append({k: g.detach().clone() for k, g in grads.items()})
        self.grad_fns = [g.grad_fn for g in grads.values()]
        return self.net.update(meta, state, params, grads, **kw)


def _replay(task, net, meta, unroll, recorded=None, create_graph=False):
    """sum_t f(theta_t) with the inner gradients fixed to `recorded` (the surrogate) or recomputed."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in unroll.params.items()}
    state, total = unroll.opt_state, 0.0
    batch = next(task.batches("train", torch.Generator()))
    for t in range(unroll.total_steps):
        loss = task.loss(params, batch)
        total = total + loss
        if recorded is not None:
            grads = recorded[t]
        else:
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)))
        params, state = net.update(meta, state, params, grads)
    return total


def test_tbptt_gradient_matches_finite_differences_of_the_surrogate():
    task, net, meta, fresh_unroll = _setup(steps=3)
    recorder = _Recorder(net)
    grads, _, _ = _estimate(recorder, meta, fresh_unroll(), 3)
    assert all(fn is None for fn in recorder.grad_fns)  # inner gradients carry no graph: no second derivatives
    recorded = recorder.grads
    h = 1e-6
    checked = 0
    for name in ("w1", "w2", "wout", "b1"):
        flat = meta[name].view(-1)
        for index in (0, flat.numel() // 2, flat.numel() - 1):
            plus = {k: v.clone() for k, v in meta.items()}
            minus = {k: v.clone() for k, v in meta.items()}
            plus[name].view(-1)[index] += h
            minus[name].view(-1)[index] -= h
            with torch.no_grad():
                fd = (_replay(task, net, plus, fresh_unroll(), recorded) - _replay(task, net, minus, fresh_unroll(),
                                                                                 recorded)) / (2 * h)  # fmt: skip
            torch.testing.assert_close(grads[name].view(-1)[index], fd, rtol=1e-5, atol=1e-8)
            checked += 1
    assert checked == 12
    assert max(g.abs().max() for g in grads.values()) > 1e-4  # the check compared real, non-zero gradients


def test_full_second_order_gradient_differs_so_the_test_can_fail():
    task, net, meta, fresh_unroll = _setup(steps=3)
    grads, _, _ = _estimate(net, meta, fresh_unroll(), 3)
    leaves = {k: v.clone().requires_grad_(True) for k, v in meta.items()}
    full = _replay(task, net, leaves, fresh_unroll(), create_graph=True)
    full_grads = dict(zip(leaves, torch.autograd.grad(full, list(leaves.values()))))
    difference = max((full_grads[k] - grads[k]).abs().max() for k in grads)
    assert difference > 1e-6


def test_truncations_carry_state_and_match_one_long_unroll_loss():
    task, net, meta, fresh_unroll = _setup(steps=4)
    unroll = fresh_unroll()
    _, unroll, first = _estimate(net, meta, unroll, 2)
    assert unroll.step == 2 and not unroll.done
    _, unroll, second = _estimate(net, meta, unroll, 2)
    assert unroll.done
    whole = _replay(task, net, meta, fresh_unroll()).detach()
    torch.testing.assert_close(torch.tensor(first["meta_loss"] + second["meta_loss"], dtype=torch.float64), whole)


def _tiny(epochs):
    return dataclasses.replace(RECIPES.get("tiny-quadratic"), epochs=epochs)


def test_meta_training_lowers_the_meta_loss(tmp_path):
    torch.set_num_threads(1)
    trainer = MetaTrainer(dataclasses.replace(_tiny(40), eval_every=1000), tmp_path)
    before = trainer.evaluate()
    trainer.run(progress=False)
    after = trainer.evaluate()
    assert after < 0.8 * before


def test_resume_after_interruption_is_bit_for_bit(tmp_path):
    torch.set_num_threads(1)
    whole = MetaTrainer(_tiny(6), tmp_path / "whole")
    whole.run(progress=False)

    first = MetaTrainer(_tiny(6), tmp_path / "split")
    assert not first.run(progress=False, stop_at_epoch=3)
    second = MetaTrainer(_tiny(6), tmp_path / "split")
    second.resume()
    assert second.epoch == 3
    assert second.run(progress=False)
    for k in whole.meta:
        assert torch.equal(whole.meta[k], second.meta[k]), k
    assert [h["meta_loss"] for h in whole.history] == [h["meta_loss"] for h in second.history]
    assert whole.best_score == second.best_score
