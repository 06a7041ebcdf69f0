"""The three learned optimizers keep torch.optim's rules: skipped parameters, param groups, schedulers,
state_dict layout and exact resume, dtypes, non-finite input, default weights and how the loss arrives."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import loptim
from loptim.errors import DivergedError, WeightsError
from loptim.optimizers.flat import DEFERRED_CHECK_EVERY, all_finite, meta_sha256
from loptim.optimizers.lhopt import MissingLossError
from loptim.optimizers.versions import StateDictError
from loptim.pretrained import load_learned

KINDS = ("lstm", "mlp", "lhopt")
TOTAL = 24


def make(kind: str, params, **options):
    if kind == "lstm":
        return loptim.LSTMOptimizer(params, **options)
    if kind == "mlp":
        return loptim.MLPOptimizer(params, **options)
    return loptim.LHOPT(params, total_steps=TOTAL, decisions=6, **options)


def model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A tiny classifier with a frozen layer and a parameter the loss never uses."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    net.unused = nn.Parameter(torch.ones(4, dtype=dtype))
    return net


def data(dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=g).to(dtype), torch.randint(0, 3, (32,), generator=g)


def train(opt, net: nn.Module, steps: int, *, start: int = 0, dtype=torch.float32, how: str = "loss=") -> list[float]:
    x, y = data(dtype)
    losses = []
    for t in range(start, start + steps):
        rows = slice((t * 8) % 32, (t * 8) % 32 + 8)

        def closure(rows=rows):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[rows]).float(), y[rows])
            loss.backward()
            return loss

        if how == "closure":
            losses.append(float(opt.step(closure).detach()))
            continue
        loss = closure()
        if how == "positional":
            opt.step(loss)
        elif how == "observe":
            opt.observe_loss(loss) if hasattr(opt, "observe_loss") else None
            opt.step()
        else:
            opt.step(loss=loss)
        losses.append(float(loss.detach()))
    return losses


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_and_unused_parameters_stay_bit_identical(kind):
    net = model()
    net[2].requires_grad_(False)
    before = snapshot(net)
    opt = make(kind, net.parameters())
    train(opt, net, 8)
    after = snapshot(net)
    for name in ("2.weight", "2.bias", "unused"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["0.weight"], after["0.weight"])
    frozen = net[2].weight
    if kind == "lhopt":
        assert torch.equal(opt.state[frozen]["exp_avg"], torch.zeros_like(frozen))  # the state did not advance
    else:
        assert float(opt.state[frozen]["step"]) == 0 and float(opt.state[net[0].weight]["step"]) == 8


@pytest.mark.parametrize("kind", KINDS)
def test_an_lr_scheduler_at_zero_leaves_the_model_unchanged(kind):
    net = model()
    opt = make(kind, net.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.0)
    before = snapshot(net)
    for _ in range(6):
        train(opt, net, 1)
        scheduler.step()
    for name, value in snapshot(net).items():
        assert torch.equal(before[name], value), name


@pytest.mark.parametrize("kind", ("lstm", "mlp"))
def test_lr_and_decoupled_weight_decay_follow_the_documented_formula(kind):
    """p <- p (1 - lr wd) + lr D, D being the learned step the same gradients give at lr 1, wd 0."""
    weight = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    grads = [torch.randn(5, 4, generator=torch.Generator().manual_seed(10 + t)) for t in range(3)]
    plain, scaled = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    opt_plain, opt_scaled = make(kind, [plain]), make(kind, [scaled], lr=0.5, weight_decay=0.1)
    if kind == "mlp":  # its features read the parameter: keep both trajectories on the same parameters
        for grad in grads:
            reference = scaled.detach().clone()
            plain.data.copy_(reference)
            plain.grad, scaled.grad = grad.clone(), grad.clone()
            opt_plain.step()
            opt_scaled.step()
            step = plain.detach() - reference
            torch.testing.assert_close(scaled.detach(), reference * (1 - 0.05) + 0.5 * step, rtol=0, atol=1e-6)
        return
    previous = weight.clone()
    for grad in grads:
        plain.grad, scaled.grad = grad.clone(), grad.clone()
        before_plain = plain.detach().clone()
        opt_plain.step()
        opt_scaled.step()
        step = plain.detach() - before_plain
        previous = previous * (1 - 0.05) + 0.5 * step
        torch.testing.assert_close(scaled.detach(), previous, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_add_param_group_parameters_are_trained(kind):
    net = model()
    opt = make(kind, [p for name, p in net.named_parameters() if not name.startswith("4.")])
    train(opt, net, 3)
    head = snapshot(net)
    opt.add_param_group({"params": list(net[4].parameters())})
    train(opt, net, 3, start=3)
    assert not torch.equal(head["4.weight"], net[4].weight.detach())
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_has_torch_layout_and_resumes_bit_for_bit_through_torch_save(kind):
    net = model()
    opt = make(kind, net.parameters())
    train(opt, net, 10)
    saved = opt.state_dict()
    assert set(saved) >= {"state", "param_groups"} and saved["param_groups"][0]["params"] == list(range(7))
    assert saved["loptim"]["version"] == loptim.__version__ and saved["loptim"]["meta_sha256"]
    assert "meta_params" not in saved["loptim"]  # shipped weights travel by name and hash
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    parameters = snapshot(net)
    expected = train(opt, net, 10, start=10)
    end = snapshot(net)

    fresh = model(seed=5)
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            p.copy_(parameters[name])
    opt2 = make(kind, fresh.parameters())
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert train(opt2, fresh, 10, start=10) == expected
    for name, value in snapshot(fresh).items():
        assert torch.equal(end[name], value), name


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_checks_shapes_per_parameter_and_old_formats(kind):
    net = model()
    opt = make(kind, net.parameters())
    train(opt, net, 2)
    saved = opt.state_dict()
    other = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    other.unused = nn.Parameter(torch.ones(2, 2))  # parameter 0: same count of coordinates, another shape
    with pytest.raises(ValueError, match="parameter 0"):
        make(kind, other.parameters()).load_state_dict(saved)
    with pytest.raises(StateDictError, match="loptim 0.1.0"):
        opt.load_state_dict({"name": kind, "weights": None, "step_count": 3, "flat_state": {}, "controller": {}})


@pytest.mark.parametrize("kind", ("lstm", "mlp"))
def test_state_of_untrained_weights_carries_the_meta_parameters(kind):
    net = model()
    opt = make(kind, net.parameters(), weights=None)
    train(opt, net, 2)
    saved = opt.state_dict()
    assert saved["loptim"]["weights"] is None and saved["loptim"]["meta_params"]
    # loading replaces shipped weights of the same design (the untrained MLP is Metz's) with the saved ones
    shipped = make(kind, model().parameters(), **({"weights": "mlp-mnist"} if kind == "mlp" else {}))
    shipped.load_state_dict(saved)
    assert meta_sha256(shipped.meta_params) == saved["loptim"]["meta_sha256"]
    if kind == "mlp":  # the default (generalist) design cannot take a Metz network's state: a one-line error
        with pytest.raises(WeightsError, match="build the optimizer with the design it was saved with"):
            make(kind, model().parameters()).load_state_dict(saved)


@pytest.mark.parametrize("kind", KINDS)
def test_opt_state_holds_live_per_parameter_views(kind):
    net = model()
    opt = make(kind, net.parameters())
    train(opt, net, 3)
    weight = net[0].weight
    state = opt.state[weight]
    key = "exp_avg" if kind == "lhopt" else next(k for k in state if k != "step")
    assert state[key].shape[-2:] == weight.shape
    before = state[key].clone()
    train(opt, net, 1, start=3)
    assert not torch.equal(before, opt.state[weight][key])  # the same tensor, updated in place by the step


@pytest.mark.parametrize("kind", KINDS)
def test_a_bfloat16_model_trains_and_stays_bfloat16(kind):
    net = model(dtype=torch.bfloat16)
    opt = make(kind, net.parameters())
    losses = train(opt, net, 16, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    assert all(torch.isfinite(p.float()).all() for p in net.parameters())
    assert min(losses[-4:]) < losses[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_float64_model_keeps_float64(kind):
    net = model(dtype=torch.float64)
    opt = make(kind, net.parameters())
    train(opt, net, 4, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in net.parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", ("gradient", "loss"))
def test_non_finite_input_never_reaches_the_model(kind, bad):
    net = model()
    opt = make(kind, net.parameters())
    train(opt, net, 2)
    x, y = data()
    loss = nn.functional.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    if bad == "gradient":
        net[0].weight.grad[0, 0] = float("nan")
    else:
        loss = loss * float("inf")
    before = snapshot(net)
    with pytest.raises(DivergedError, match="nonfinite='skip'"):
        opt.step(loss=loss)
    for name, value in snapshot(net).items():
        assert torch.equal(before[name], value), name

    skipping = make(kind, net.parameters(), nonfinite="skip")
    skipping.step(loss=loss)
    for name, value in snapshot(net).items():
        assert torch.equal(before[name], value), name
    assert skipping.skipped_steps == 1
    train(skipping, net, 2)  # and it goes on
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_all_finite_is_exact_where_the_cheap_sum_overflows():
    """The shells' finiteness check sums first; finite entries whose sum overflows must still count as finite."""
    huge = torch.full((4,), 3e38)
    assert not torch.isfinite(huge.sum())
    assert bool(all_finite(huge))
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = torch.randn(1000)
        values[517] = bad
        assert not bool(all_finite(values))
    assert bool(all_finite(torch.randn(1000)))


@pytest.mark.parametrize("kind", ("lstm", "mlp"))
def test_deferred_non_finite_check_neutralizes_on_the_device_and_raises_at_the_next_step(kind):
    """The accelerator path (forced here on the CPU): no host read in the bad step, the model unchanged, the
    error within DEFERRED_CHECK_EVERY steps."""
    net = model()
    opt = make(kind, net.parameters())
    opt._defer_nonfinite = True
    train(opt, net, 2)
    x, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    net[0].weight.grad.fill_(float("inf"))
    before = snapshot(net)
    opt.step()
    for name, value in snapshot(net).items():
        assert torch.equal(before[name], value), name
    assert all(torch.isfinite(v).all() for v in opt.flat_state.values())
    with pytest.raises(DivergedError, match="found on the device"):
        for _ in range(DEFERRED_CHECK_EVERY):  # the device-side counter is read every DEFERRED_CHECK_EVERY steps
            opt.step()
    assert opt.step_count <= 2 + DEFERRED_CHECK_EVERY


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_the_shipped_weights_and_none_is_untrained_without_touching_the_global_rng(kind):
    shipped = {"lstm": "lstm-mnist", "mlp": "mlp-generalist-fold", "lhopt": "lhopt-wider-e285"}[kind]
    params = [nn.Parameter(torch.zeros(3))]
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    default = make(kind, params)
    untrained, again = make(kind, params, weights=None), make(kind, params, weights=None)
    assert torch.equal(rng, torch.get_rng_state())
    if kind == "lhopt":
        reference = load_learned("lhopt", shipped).state_dict()
        for k, v in default.policy.state_dict().items():
            assert torch.equal(v, reference[k]), k
        assert default.weights == shipped
        untrained_hash = meta_sha256(untrained.policy.state_dict())
        assert untrained_hash == meta_sha256(again.policy.state_dict()) != meta_sha256(reference)
        return
    reference = load_learned(kind, shipped).meta_params()
    for k, v in default.meta_params.items():
        assert torch.equal(v, reference[k]), k
    assert meta_sha256(untrained.meta_params) == meta_sha256(again.meta_params) != meta_sha256(reference)


@pytest.mark.parametrize("kind", KINDS)
def test_the_loss_may_arrive_as_closure_positional_keyword_or_observed(kind):
    results = {}
    for how in ("loss=", "closure", "positional", "observe"):
        net = model()
        opt = make(kind, net.parameters())
        train(opt, net, 8, how=how)
        results[how] = snapshot(net)
    for how in ("closure", "positional", "observe"):
        for name, value in results[how].items():
            assert torch.equal(results["loss="][name], value), (how, name)


def test_lhopt_without_any_loss_names_the_hook_and_then_uses_the_latest_loss():
    net = model()
    opt = make("lhopt", net.parameters())
    x, y = data()
    nn.functional.cross_entropy(net(x), y).backward()
    with pytest.raises(MissingLossError, match="observe_loss"):
        opt.step()
    opt.step(loss=1.5)
    opt.step()  # a lagged loss: the latest one seen
    assert opt.step_count == 2


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_gradients_get_a_one_line_error(kind):
    embedding = nn.Embedding(10, 3, sparse=True)
    opt = make(kind, embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse=False"):
        opt.step(loss=1.0)


@pytest.mark.parametrize("kind", KINDS)
def test_maximize_climbs(kind):
    weight = nn.Parameter(torch.zeros(4))
    opt = make(kind, [weight], maximize=True)
    for _ in range(TOTAL - 1):
        opt.zero_grad()
        value = -((weight - 1.0) ** 2).sum()  # the objective to maximize
        value.backward()
        opt.step(loss=-value)
    assert float(-((weight.detach() - 1.0) ** 2).sum()) > -4.0


def test_bad_hyperparameters_and_weights_get_one_line_errors():
    weight = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr must be"):
        loptim.LSTMOptimizer(weight, lr=-1.0)
    with pytest.raises(ValueError, match="nonfinite must be"):
        loptim.MLPOptimizer(weight, nonfinite="ignore")
    with pytest.raises(ValueError, match="weight_decay must be"):
        loptim.LHOPT(weight, total_steps=4, weight_decay=-0.1)
    with pytest.raises(WeightsError, match="no shipped weights"):
        loptim.MLPOptimizer(weight, weights="mlp-nonexistent")
