"""LHOPT: the inner optimizer's known answers, exact actions and bounds, restart registers, unitless features
(invariant to the loss's scale and the absolute learning rate), and the torch.optim shell's exact round trip."""

import dataclasses
import io
import math

import pytest
import torch

from loptim.errors import DivergedError, WeightsError
from loptim.optimizers.lhopt import LHOPT, OBS_DIM, OBSERVATION_LAYOUT, ActorCritic, MissingLossError, PolicyConfig
from loptim.optimizers.lhopt.actions import (
    ACTION_HEADS,
    HEAD_SIZES,
    NOOP_ACTION,
    apply_action,
    apply_restart,
    empty_registers,
    hparam_features,
    randomize_hparams,
)
from loptim.optimizers.lhopt.features import (
    CDF_END_WEIGHTS,
    cdf_init,
    cdf_update,
    feature_scratch,
    features_from_stats,
    tensor_stats,
)
from loptim.optimizers.lhopt.inner import PLAIN_ADAMW, PUBLISHED, InnerHParams, init_inner_state, inner_step
from loptim.optimizers.lhopt.shell import DEFAULT_LR

HEAD = {head.name: i for i, head in enumerate(ACTION_HEADS)}


def _action(**choices):
    action = list(NOOP_ACTION)
    for name, index in choices.items():
        action[HEAD[name]] = index
    return action


def _tensors(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 4, generator=g, dtype=dtype), torch.randn(4, generator=g, dtype=dtype)]


def _grad_stream(seed, steps, like):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in like] for _ in range(steps)]


# ------------------------------------------------------------------------------------------- inner optimizer


def test_plain_mode_is_textbook_adamw():
    hp = InnerHParams(lr=3e-2, one_minus_beta1=0.1, one_minus_beta2=1e-3, eps=1e-8, weight_decay=0.1)
    ours, theirs = _tensors(0), [p.clone().requires_grad_() for p in _tensors(0)]
    reference = torch.optim.AdamW(theirs, lr=3e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    state = init_inner_state(ours)
    for grads in _grad_stream(1, 6, ours):
        inner_step(hp, PLAIN_ADAMW, state, ours, grads)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        reference.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


def test_running_bias_correction_stays_exact_when_betas_change():
    params = _tensors(2)
    grads = [torch.full_like(p, 0.3) for p in params]
    state = init_inner_state(params)
    for omb1, omb2 in ((0.1, 1e-2), (0.5, 1e-3), (0.02, 0.1), (0.9, 1e-5)):
        hp = InnerHParams(one_minus_beta1=omb1, one_minus_beta2=omb2)
        inner_step(hp, PLAIN_ADAMW, state, params, grads)
        for m, v in zip(state["exp_avg"], state["exp_avg_sq"]):  # a constant gradient: m_hat = g, v_hat = g^2
            torch.testing.assert_close(m / state["bias_correction1"], torch.full_like(m, 0.3), rtol=1e-12, atol=0)
            torch.testing.assert_close(v / state["bias_correction2"], torch.full_like(v, 0.09), rtol=1e-12, atol=0)


def test_rolling_max_clipping_and_adamax_denominator_known_values():
    config = dataclasses.replace(PUBLISHED, trust_ratio=False)
    hp = InnerHParams(clip_ratio=0.8, clip_one_minus_beta=0.01, one_minus_beta2=0.01, weight_decay=0.0)
    params = [torch.zeros(2, dtype=torch.float64)]
    state = init_inner_state(params)
    clipped, _ = inner_step(hp, config, state, params, [torch.tensor([3.0, 4.0], dtype=torch.float64)])
    coefficient = 0.8 * 5.0 / (5.0 + 1e-6)  # threshold 0.8 * rolling max 5 against ||g|| = 5
    assert clipped and state["rolling_max"] == 5.0
    g1 = torch.tensor([3.0, 4.0], dtype=torch.float64) * coefficient
    torch.testing.assert_close(state["exp_avg"][0], 0.1 * g1)
    torch.testing.assert_close(state["exp_avg_sq"][0], g1.abs())  # max(0.99 * 0, |g|)
    clipped, _ = inner_step(hp, config, state, params, [torch.tensor([0.3, -0.04], dtype=torch.float64)])
    assert not clipped and state["rolling_max"] == pytest.approx(4.95)  # max(0.5, 5 * 0.99)
    torch.testing.assert_close(state["exp_avg_sq"][0], torch.stack((0.99 * g1[0], 0.99 * g1[1])))


def test_trust_ratio_scales_matrices_only():
    config = dataclasses.replace(PUBLISHED, rolling_max_clip=False)
    hp = InnerHParams(lr=0.01, weight_decay=0.0)
    params = _tensors(3)
    before = [p.clone() for p in params]
    inner_step(hp, config, init_inner_state(params), params, _grad_stream(4, 1, params)[0])
    matrix_step = (params[0] - before[0]).norm()
    torch.testing.assert_close(matrix_step, 0.01 * before[0].norm())  # lr * ||p|| / ||u|| * ||u||
    # the vector moves by lr * u with u = m_hat / (|g| + eps) = sign(g) up to eps: ||step|| = lr * sqrt(4)
    torch.testing.assert_close(
        (params[1] - before[1]).norm(), torch.tensor(0.02, dtype=torch.float64), rtol=1e-5, atol=0
    )


# ----------------------------------------------------------------------------------------------------- actions


def test_actions_map_exactly():
    hp = InnerHParams()
    assert apply_action(hp, NOOP_ACTION) == hp
    for index, scale in enumerate(ACTION_HEADS[HEAD["lr"]].choices):
        assert apply_action(hp, _action(lr=index)).lr == hp.lr * scale
    for name in ("weight_decay", "eps", "one_minus_beta1", "one_minus_beta2"):
        for index, scale in enumerate((0.5, 1.0, 2.0)):
            assert getattr(apply_action(hp, _action(**{name: index})), name) == getattr(hp, name) * scale
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    for index, shift in enumerate((-1.0, -0.3, 0.0, 0.3, 1.0)):
        moved = apply_action(hp, _action(clip_ratio=index)).clip_ratio
        assert logit(moved) - logit(hp.clip_ratio) == pytest.approx(shift, abs=1e-12)
    changed = apply_action(hp, _action(lr=6, one_minus_beta2=0))
    assert changed.lr == 2e-3 and changed.one_minus_beta2 == 5e-3 and changed.eps == hp.eps


def test_actions_respect_bounds_and_keep_betas_valid():
    hp = InnerHParams()
    for _ in range(40):
        hp = apply_action(hp, _action(lr=0, one_minus_beta2=2, one_minus_beta1=2, clip_ratio=4))
    assert hp.lr == 1e-8 and hp.one_minus_beta2 == 0.1 and hp.one_minus_beta1 == 1.0 and hp.clip_ratio < 1.0
    g = torch.Generator().manual_seed(5)
    hp = randomize_hparams(InnerHParams(), g)
    for _ in range(500):
        action = [int(torch.randint(size, (), generator=g)) for size in HEAD_SIZES]
        hp = apply_action(hp, action)
        for head in ACTION_HEADS[:-1]:
            assert head.low <= getattr(hp, head.name) <= head.high
        assert 0.0 <= 1.0 - hp.one_minus_beta1 < 1.0 and 0.0 < 1.0 - hp.one_minus_beta2 < 1.0
        assert 0.0 < hp.clip_ratio < 1.0


def test_randomized_starts_follow_the_published_spreads():
    g = torch.Generator().manual_seed(6)
    lr_ratios = [randomize_hparams(InnerHParams(), g).lr / 1e-3 for _ in range(300)]
    assert 1e-2 <= min(lr_ratios) < 0.05 and 20 < max(lr_ratios) <= 1e2


def test_hparam_features_do_not_depend_on_the_absolute_learning_rate():
    g = torch.Generator().manual_seed(7)
    small, large = InnerHParams(lr=1e-4), InnerHParams(lr=1e-1)
    a, b = small, large
    for _ in range(6):
        action = [int(torch.randint(size, (), generator=g)) for size in HEAD_SIZES]
        a, b = apply_action(a, action), apply_action(b, action)
        torch.testing.assert_close(hparam_features(a, small), hparam_features(b, large), rtol=0, atol=1e-12)
    assert float(hparam_features(a, small).abs().sum()) > 0


# ------------------------------------------------------------------------------------------ restart registers


def _snapshot(value, loss=1.0):
    return {"params": [torch.full((3,), float(value))], "state": {"steps": int(value)}, "loss": loss, "progress": 0.1}


def test_restart_registers_save_load_swap():
    registers = empty_registers()
    registers, loaded = apply_restart(registers, 2, _snapshot(1))  # load from empty register 0: nothing
    assert loaded is None and registers == empty_registers()
    registers, loaded = apply_restart(registers, 1, _snapshot(1))  # save into register 0
    assert loaded is None and registers[0]["params"][0][0] == 1.0 and registers[1] is None
    registers, loaded = apply_restart(registers, 2, _snapshot(5))  # load register 0
    assert loaded["params"][0][0] == 1.0
    loaded["params"][0].fill_(9.0)
    assert registers[0]["params"][0][0] == 1.0  # a load hands out a copy
    registers, loaded = apply_restart(registers, 9, _snapshot(7))  # swap with empty register 2: a save
    assert loaded is None and registers[2]["params"][0][0] == 7.0
    registers, loaded = apply_restart(registers, 9, _snapshot(8))  # swap with register 2
    assert loaded["params"][0][0] == 7.0 and registers[2]["params"][0][0] == 8.0
    registers, loaded = apply_restart(registers, 0, _snapshot(3))  # no-op
    assert loaded is None and registers[0]["params"][0][0] == 1.0


# ---------------------------------------------------------------------------------------------------- features


def test_cdf_features_stay_in_unit_interval_and_track_a_streams_rank():
    g = torch.Generator().manual_seed(8)
    stream = 3.0 + 2.0 * torch.randn(3000, generator=g, dtype=torch.float64)
    state, errors = cdf_init(1), []
    for t, x in enumerate(stream):
        cdf, state = cdf_update(state, x.reshape(1), 1.0 / len(stream))
        assert bool(((cdf >= 0) & (cdf <= 1)).all())
        if t >= 1000:
            rank = float((stream[: t + 1] < x).double().mean())
            errors.append((cdf[0] - rank).abs())
    mean_error = torch.stack(errors).mean(0)
    assert bool((mean_error < 0.04).all()), mean_error  # every time scale tracks the rank
    for extreme in (1e30, -1e30, math.inf, -math.inf, math.nan):
        cdf, _ = cdf_update(state, torch.tensor([extreme]), 0.01)
        assert bool(((cdf >= 0) & (cdf <= 1)).all())
    rising, state = None, cdf_init(1)
    for t in range(50):
        rising, state = cdf_update(state, torch.tensor([float(t)]), 0.02)
    assert bool((rising > 0.75).all())
    assert len(CDF_END_WEIGHTS) == rising.shape[1]


def test_cdf_of_log_loss_is_invariant_to_the_loss_scale():
    g = torch.Generator().manual_seed(9)
    losses = torch.rand(200, generator=g, dtype=torch.float64) + 0.5
    a, b = cdf_init(1), cdf_init(1)
    for loss in losses:
        fa, a = cdf_update(a, torch.log(loss).reshape(1), 0.005)
        fb, b = cdf_update(b, torch.log(1000.0 * loss).reshape(1), 0.005)
        torch.testing.assert_close(fa, fb, rtol=0, atol=1e-9)


def per_tensor_features(*stats_args, lrs: torch.Tensor, scratch=None) -> torch.Tensor:
    """The reference path's features: `tensor_stats(*stats_args)` then `features_from_stats`."""
    sizes = torch.tensor([g.numel() for g in stats_args[0]], dtype=torch.float64)
    return features_from_stats(tensor_stats(*stats_args, scratch=scratch), sizes, lrs)


def test_per_parameter_features_match_a_direct_per_tensor_computation():
    params, (grads, exp_avg, v, updates) = _tensors(20), _grad_stream(21, 4, _tensors(20))
    v = [x.abs() for x in v]
    c1, eps, lrs = 0.19, 0.5, torch.tensor([1e-3, 2e-3], dtype=torch.float64)
    features = per_tensor_features(grads, exp_avg, c1, v, updates, params, eps, lrs=lrs)
    cos = lambda a, b: float((a * b).sum() / (a.norm() * b.norm()))  # noqa: E731
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    rows = []
    for g, m, s, u, p, lr in zip(grads, exp_avg, v, updates, params, lrs.tolist()):
        m_hat, root = m / c1, math.sqrt(g.numel())
        rows.append([
            float((s > eps).double().mean()), float(torch.log(u.abs() + 1e-8).mean()),
            math.log(m_hat.norm() / g.norm()), math.log(lr * u.norm() / p.norm()),
            math.log(m_hat.norm() / (m_hat - g).norm()), cos(g, m), cos(g, p), math.log(p.norm() / u.norm()),
            cos(g, u), logit(phi(cos(g, m) * root)), logit(phi(cos(g, u) * root)), phi(cos(g, p) * root),
        ])  # fmt: skip
    # tolerance: log-ratios floor the smaller norm at 1e-8 times the larger (lr ||u|| / ||p|| ~ 1e-3 here)
    torch.testing.assert_close(features, torch.tensor(rows, dtype=torch.float64).mean(0), rtol=1e-6, atol=3e-5)


def test_per_parameter_features_in_reused_scratch_are_bit_identical_and_leave_the_inputs_alone():
    params, (grads, exp_avg, v, updates) = _tensors(20), _grad_stream(21, 4, _tensors(20))
    v = [x.abs() for x in v]
    inputs = [grads, exp_avg, v, updates, params]
    before = [[t.clone() for t in group] for group in inputs]
    args = (grads, exp_avg, 0.19, v, updates, params, 0.5)
    lrs = torch.tensor([1e-3, 2e-3], dtype=torch.float64)
    fresh = per_tensor_features(*args, lrs=lrs)
    scratch = feature_scratch(params)
    for work in scratch[0] + scratch[1]:
        work.fill_(float("nan"))  # stale contents must not leak into the features
    assert torch.equal(per_tensor_features(*args, lrs=lrs, scratch=scratch), fresh)
    assert torch.equal(per_tensor_features(*args, lrs=lrs, scratch=scratch), fresh)  # reused
    assert torch.equal(
        per_tensor_features(*args, lrs=lrs, scratch=feature_scratch(params[:1])), fresh
    )  # mismatched: allocated
    for group, saved in zip(inputs, before):
        assert all(torch.equal(a, b) for a, b in zip(group, saved))


def _run_features(grads_stream, params, scale, eps):
    hp = InnerHParams(lr=0.01, eps=eps)
    state = init_inner_state(params)
    out = []
    for grads in grads_stream:
        _, features = inner_step(hp, PUBLISHED, state, params, [scale * g for g in grads], with_features=True)
        out.append(features)
    return torch.stack(out)


def test_per_parameter_features_are_invariant_to_the_loss_scale():
    stream = _grad_stream(10, 5, _tensors(11))
    base = _run_features(stream, _tensors(11), 1.0, 1e-6)
    scaled = _run_features(stream, _tensors(11), 1000.0, 1e-3)  # eps moves with the gradient's unit
    torch.testing.assert_close(base, scaled, rtol=1e-6, atol=1e-6)
    other = _run_features(stream, [3.0 * p for p in _tensors(11)], 1.0, 1e-6)  # the test can fail
    assert float((other - base).abs().max()) > 0.1


def _least_squares(seed=12):
    g = torch.Generator().manual_seed(seed)
    inputs, targets = torch.randn(64, 8, generator=g), torch.randn(64, 3, generator=g)
    weight, bias = torch.randn(8, 3, generator=g), torch.zeros(3)
    return inputs, targets, weight, bias


def _random_policy(seed=13):
    return ActorCritic(PolicyConfig(OBS_DIM, HEAD_SIZES), torch.Generator().manual_seed(seed))


def _train(opt, params, inputs, targets, steps, loss_scale=1.0, start=0):
    observations, losses = [], []
    for step in range(start, start + steps):
        loss = loss_scale * ((inputs @ params[0] + params[1] - targets) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step(loss=loss)
        losses.append(float(loss.detach()))
        if step % 10 == 9:
            opt.observe_validation(1.1 * float(loss.detach()))
        if opt.last_observation is not None and (not observations or opt.last_observation is not observations[-1]):
            observations.append(opt.last_observation)
    return observations, losses


def test_whole_run_and_every_observation_are_invariant_to_the_loss_scale():
    runs = []
    for scale in (1.0, 64.0):
        inputs, targets, weight, bias = _least_squares()
        params = [weight.requires_grad_(), bias.requires_grad_()]
        hparams = InnerHParams(lr=0.05, eps=1e-6 * scale)  # eps moves with the gradient's unit
        policy = _random_policy()
        opt = LHOPT(params, total_steps=60, decisions=12, policy=policy, sample_actions=True, hparams=hparams)
        observations, _ = _train(opt, params, inputs, targets, 60, loss_scale=scale)
        runs.append((observations, [p.detach() for p in params], opt.hparams))
    (obs_a, params_a, hp_a), (obs_b, params_b, hp_b) = runs
    assert len(obs_a) == len(obs_b) == 11 and all(o.shape == (OBS_DIM,) for o in obs_a)
    assert hp_a.lr == hp_b.lr and hp_a != InnerHParams(lr=0.05, eps=1e-6)  # same actions, and some were taken
    for a, b in zip(obs_a, obs_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------- torch.optim shell


def test_lhopt_trains_a_least_squares_problem_and_sees_validation():
    inputs, targets, weight, bias = _least_squares()
    params = [weight.requires_grad_(), bias.requires_grad_()]
    opt = LHOPT(params, total_steps=150, hparams=InnerHParams(lr=0.02))
    _, losses = _train(opt, params, inputs, targets, 150)
    assert losses[-1] < 0.25 * losses[0]
    sizes = [size for _, size in OBSERVATION_LAYOUT]
    valid = dict(zip([name for name, _ in OBSERVATION_LAYOUT], torch.split(opt.last_observation, sizes)))
    assert valid["valid_loss"][0] == 1.0 and valid["progress"][0] == pytest.approx(148 / 150)


def test_policy_is_consulted_every_total_steps_over_decisions():
    inputs, targets, weight, bias = _least_squares()
    params = [weight.requires_grad_(), bias.requires_grad_()]
    opt = LHOPT(params, total_steps=64, decisions=8)
    calls = []
    original = opt.policy.step
    opt.policy.step = lambda *args: calls.append(1) or original(*args)
    _train(opt, params, inputs, targets, 64)
    assert opt.interval == 8 and len(calls) == 7  # after steps 8, 16, ..., 56


def test_state_dict_round_trip_continues_bit_for_bit():
    inputs, targets, weight, bias = _least_squares(14)
    params = [weight.requires_grad_(), bias.requires_grad_()]
    make = lambda p: LHOPT(p, total_steps=100, decisions=25, policy=_random_policy(15), sample_actions=True)  # noqa: E731
    opt = make(params)
    _train(opt, params, inputs, targets, 40)
    assert any(r is not None for r in opt.controller["registers"])  # restarts were exercised
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    saved_params = [p.detach().clone() for p in params]
    _train(opt, params, inputs, targets, 30, start=40)

    params_b = [p.clone().requires_grad_() for p in saved_params]
    opt_b = make(params_b)
    buffer.seek(0)
    opt_b.load_state_dict(torch.load(buffer, weights_only=True))
    _train(opt_b, params_b, inputs, targets, 30, start=40)
    for a, b in zip(params, params_b):
        assert torch.equal(a, b)
    assert opt.hparams == opt_b.hparams and torch.equal(opt.last_observation, opt_b.last_observation)


def test_cooldown_is_a_linear_decay_to_zero_over_the_runs_last_fraction():
    from loptim.optimizers.lhopt.shell import cooldown_factor

    assert [cooldown_factor(s, 100, 0.2) for s in (0, 80, 90, 99, 100, 130)] == pytest.approx([1, 1, 0.5, 0.05, 0, 0])
    assert all(cooldown_factor(s, 100, 0.0) == 1.0 for s in (0, 99, 100, 130))


def test_cooldown_equals_the_same_multiplier_through_an_lr_scheduler():
    """LHOPT(cooldown=c) and LHOPT(cooldown=0) under a LambdaLR of the same factor are the same run, bit for bit:
    the cooldown multiplies what the policy chooses and nothing else."""
    from loptim.optimizers.lhopt.shell import cooldown_factor

    inputs, targets, weight, bias = _least_squares(16)
    runs = []
    for built_in in (True, False):
        params = [weight.clone().requires_grad_(), bias.clone().requires_grad_()]
        opt = LHOPT(params, total_steps=40, decisions=8, cooldown=0.25 if built_in else 0.0)
        scheduler = None
        if not built_in:
            scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cooldown_factor(step, 40, 0.25))
        for _ in range(40):
            loss = ((inputs @ params[0] + params[1] - targets) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step(loss=loss)
            if scheduler is not None:
                scheduler.step()
        runs.append((params, opt.hparams))
    (a, hparams_a), (b, hparams_b) = runs
    assert hparams_a == hparams_b and all(torch.equal(x, y) for x, y in zip(a, b))
    uncooled = [weight.clone().requires_grad_(), bias.clone().requires_grad_()]
    _train(LHOPT(uncooled, total_steps=40, decisions=8, cooldown=0.0), uncooled, inputs, targets, 40)
    assert not torch.equal(uncooled[0], a[0])  # and the cooldown changed the run


def test_applied_lrs_are_the_rates_the_steps_apply():
    """Known answers: at the start each group's own rate; in the cooldown the policy's rate scaled by the group's
    factor and the linear decay; at the end 0. And a step at the applied rate moves a parameter by lr times the
    first AdamW update, whose size is 1 per coordinate (m_hat / sqrt(v_hat) = sign g at step 1)."""
    from loptim.optimizers.lhopt.shell import cooldown_factor

    a, b = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    opt = LHOPT([{"params": [a]}, {"params": [b], "lr": 5e-3}], total_steps=20, decisions=4, cooldown=0.5,
                weight_decay=0.0)  # fmt: skip
    assert opt.applied_lrs() == pytest.approx([DEFAULT_LR, 5e-3])
    expected = opt.applied_lrs()
    ((a - 1.0) ** 2 + (b + 1.0) ** 2).sum().backward()
    opt.step(loss=1.0)
    assert a.detach() == pytest.approx(torch.full((4,), expected[0]), rel=1e-5)
    assert b.detach() == pytest.approx(torch.full((4,), -expected[1]), rel=1e-5)
    for _ in range(14):
        opt.zero_grad()
        ((a - 1.0) ** 2 + (b + 1.0) ** 2).sum().backward()
        opt.step(loss=1.0)
    factor = cooldown_factor(15, 20, 0.5)  # 0.5: five steps of ten left
    assert opt.applied_lrs() == pytest.approx([opt.hparams.lr * 3 * factor, opt.hparams.lr * 5 * factor])
    for _ in range(5):
        opt.zero_grad()
        ((a - 1.0) ** 2 + (b + 1.0) ** 2).sum().backward()
        opt.step(loss=1.0)
    assert opt.applied_lrs() == [0.0, 0.0]


def test_freeze_in_cooldown_keeps_the_policys_rate_through_the_cooldown_and_nothing_else():
    """Before the cooldown the frozen and the acting run are the same run, bit for bit; inside it the frozen one's
    hyperparameters stay where the cooldown found them (its decisions are no-ops)."""
    inputs, targets, weight, bias = _least_squares(16)
    runs = []
    for freeze in (False, True):
        params = [weight.clone().requires_grad_(), bias.clone().requires_grad_()]
        opt = LHOPT(params, total_steps=80, decisions=16, cooldown=0.5, freeze_in_cooldown=freeze)
        history = []
        for _ in range(80):
            _train(opt, params, inputs, targets, 1)
            history.append((opt.hparams, [p.detach().clone() for p in params]))
        runs.append(history)
    acting, frozen = runs
    for t in range(40):  # steps 1..40: the cooldown starts after step 40
        assert acting[t][0] == frozen[t][0] and all(torch.equal(a, b) for a, b in zip(acting[t][1], frozen[t][1]))
    assert all(frozen[t][0] == frozen[39][0] for t in range(40, 80))
    assert any(acting[t][0] != acting[39][0] for t in range(40, 80))  # the acting policy did move them


def test_bad_input_raises_clear_errors():
    weight = torch.randn(3, requires_grad=True)
    opt = LHOPT([weight], total_steps=10)
    (weight**2).sum().backward()
    with pytest.raises(DivergedError, match="non-finite"):
        opt.step(loss=torch.tensor(float("nan")))
    with pytest.raises(MissingLossError, match="observe_loss"):
        LHOPT([weight], total_steps=10).step()
    assert opt.step(lambda: (weight**2).sum()) is not None
    with pytest.raises(WeightsError, match="lhopt-nonexistent"):
        LHOPT([weight], "lhopt-nonexistent", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        LHOPT([weight], total_steps=0)
    with pytest.raises(ValueError, match="cooldown"):
        LHOPT([weight], total_steps=10, cooldown=1.0)
