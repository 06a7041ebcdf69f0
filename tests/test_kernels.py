"""The fused CPU kernels (loptim/kernels) against the reference updates they accelerate. Where a C++ compiler is on
PATH the kernel must build: these tests skip only on a machine without one (then the reference runs everywhere)."""

import itertools
import os
import shutil

import pytest
import torch

from loptim.errors import DivergedError
from loptim.features import NORMALIZER_EPS
from loptim.kernels import fused
from loptim.optimizers.mlp import MLPConfig, MLPOptimizer, MLPOptimizerNet, generalist_config

SIZES = [150, 1, 64, 37, 4500]  # tiles straddle tensor ends; a 1-element tensor; enough tiles for two threads
DESIGNS = {"metz2019-32": MLPConfig(), "metz2019-8": MLPConfig(hidden=8), "generalist-8": generalist_config(),
           "generalist-16": generalist_config(16)}  # fmt: skip


@pytest.fixture(autouse=True)
def kernel_built(monkeypatch):
    """Kernels on for every test here (each may switch them off); a build failure fails instead of skipping."""
    monkeypatch.setenv("LOPTIM_KERNELS", "1")
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler on PATH: the kernels are off and the reference updates run")
    assert fused.available(True, torch.zeros(1)), "a C++ compiler is on PATH but the kernel did not build"


def _meta(config, seed):
    g = torch.Generator().manual_seed(seed)
    net = MLPOptimizerNet(config, generator=g)
    # The generalist starts with a zero output layer (exactly Adam): perturb it so that every term is exercised.
    meta = {k: v.detach() + 0.3 * torch.randn(v.shape, generator=g) for k, v in net.meta_params().items()}
    return net, meta, g


def _call(net, meta, step: int, offsets, threads: int, total_steps: int = 50) -> fused.MLPKernelCall:
    weights, hyper = net.kernel_inputs(meta, step, total_steps)
    config = net.config
    return fused.MLPKernelCall(config.design, config.hidden, offsets, weights, hyper, NORMALIZER_EPS, threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_kernel_matches_the_reference_update(design, threads):
    net, meta, g = _meta(DESIGNS[design], 3)
    n = sum(SIZES)
    offsets = torch.tensor([0, *itertools.accumulate(SIZES)])
    reference, state = net.zero_state(n), net.zero_state(n)
    param = torch.randn(n, generator=g)
    for step in range(6):  # gradients from 1e-3 to 1e2: the normalizers and the accumulators move over decades
        grad = torch.randn(n, generator=g) * 10.0 ** (step - 3)
        with torch.no_grad():
            expected, reference = net.step_flat(meta, reference, grad, param, SIZES, step, 50)
        call = _call(net, meta, step, offsets, threads)
        got = fused.mlp_update(call, grad, param, state["momenta"], state["rms"])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
        for key in state:
            torch.testing.assert_close(
                state[key], reference[key], rtol=1e-4, atol=1e-6 * float(reference[key].abs().max())
            )
        param = param + expected


def test_kernel_is_deterministic_and_in_place():
    net, meta, g = _meta(generalist_config(), 4)
    n = sum(SIZES)
    offsets = torch.tensor([0, *itertools.accumulate(SIZES)])
    grad, param = torch.randn(n, generator=g), torch.randn(n, generator=g)
    runs = []
    for _ in range(2):
        state = net.zero_state(n)
        out = fused.mlp_update(_call(net, meta, 3, offsets, 2, total_steps=0), grad, param, state["momenta"],
                               state["rms"])  # fmt: skip
        assert state["rms"].abs().sum() > 0  # the state advanced in place
        runs.append((out, state))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1]["momenta"], runs[1][1]["momenta"])


def _train(monkeypatch, kernels: str, weights, dtype=torch.float32, steps=10):
    monkeypatch.setenv("LOPTIM_KERNELS", kernels)
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.3)
    x, y = torch.randn(32, 6, generator=g, dtype=dtype), torch.randn(32, 3, generator=g, dtype=dtype)
    opt = MLPOptimizer(model.parameters(), weights=weights, total_steps=steps)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("weights", ["mlp-mnist", None])
def test_the_shell_runs_the_kernel_and_agrees_with_the_reference(monkeypatch, weights):
    fast = _train(monkeypatch, "1", weights)
    reference = _train(monkeypatch, "0", weights)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_kernel_takes_the_meta_parameters_a_loaded_state_brings(monkeypatch):
    """The shell keeps the kernel's weights between steps; a state_dict made with other meta-parameters replaces
    them, so the kernel then steps as the reference does with the loaded ones."""

    def run(kernels: str) -> list[torch.Tensor]:
        monkeypatch.setenv("LOPTIM_KERNELS", kernels)
        g = torch.Generator().manual_seed(1)
        models = [torch.nn.Linear(6, 3) for _ in range(2)]
        with torch.no_grad():
            for p in (p for m in models for p in m.parameters()):
                p.copy_(torch.randn(p.shape, generator=g))
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)
        source, target = (MLPOptimizer(m.parameters(), weights=w, total_steps=20)
                          for m, w in zip(models, ("mlp-generalist", "mlp-generalist-scale")))  # fmt: skip
        for step in range(5):
            if step == 2:
                target.load_state_dict(source.state_dict())
            for model, opt in zip(models, (source, target)):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
        return [p.detach().clone() for p in models[1].parameters()]

    for a, b in zip(run("1"), run("0")):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_an_ablated_generalist_runs_the_reference_update(monkeypatch, tmp_path):
    """The kernel computes the full design only: an ablation must not be run through it."""
    from loptim.pretrained import save_learned

    config = MLPConfig(hidden=8, design="generalist", ablation="normalization")
    net, meta, _ = _meta(config, 6)
    with torch.no_grad():
        for k, p in net.named_parameters():
            p.copy_(meta[k])
    path = tmp_path / "ablated.safetensors"
    save_learned(path, "mlp", net, vars(config), {})
    assert not net.has_kernel and MLPOptimizerNet(generalist_config()).has_kernel
    fast, reference = _train(monkeypatch, "1", str(path)), _train(monkeypatch, "0", str(path))
    for a, b in zip(fast, reference):
        assert torch.equal(a, b)


def test_float64_and_unknown_widths_run_the_reference():
    assert not fused.available(True, torch.zeros(3, dtype=torch.float64))
    assert not MLPOptimizerNet(MLPConfig(hidden=12)).has_kernel
    assert not fused.available(True, torch.zeros(4)[::2])  # not contiguous


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("design", ["metz2019-8", "generalist-8"])
def test_the_direct_kernel_steps_each_tensor_as_the_flat_kernel_does(design, threads):
    """loptim_mlp_direct reads each tensor's own gradient and writes p <- decay p + lr D in place: the flat
    kernel's D, per tensor, and the same state."""
    net, meta, g = _meta(DESIGNS[design], 7)
    offsets = torch.tensor([0, *itertools.accumulate(SIZES)])
    flat_state, direct_state = net.zero_state(sum(SIZES)), net.zero_state(sum(SIZES))
    params = [torch.randn(n, generator=g) for n in SIZES]
    lr = [0.5, 1.0, 2.0, 1.0, 0.25]
    decay = [1.0, 0.99, 1.0, 0.9, 0.999]
    for step in range(4):
        grads = [torch.randn(n, generator=g) * 10.0 ** (step - 2) for n in SIZES]
        call = _call(net, meta, step, offsets, threads)
        delta = fused.mlp_update(call, torch.cat(grads), torch.cat(params), flat_state["momenta"], flat_state["rms"])
        expected = [p * d + r * piece for p, d, r, piece in zip(params, decay, lr, torch.split(delta, SIZES))]
        done = fused.mlp_update_direct(call, params, grads, lr, decay, direct_state["momenta"], direct_state["rms"])
        assert done
        for got, want in zip(params, expected):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        for key in flat_state:
            assert torch.equal(direct_state[key], flat_state[key])
        params = expected


def _grouped_run(monkeypatch, kernels: str, case: str, steps: int = 8):
    """Two parameter groups (lr 0.5 with weight decay; the defaults) trained by the shipped generalist; `case`
    "all" (every tensor has a gradient), "frozen" (one has none; both take the direct kernel) or "maximize" (the
    flat kernel). Returns the parameters at the start and at the end, and the kernel calls made."""
    monkeypatch.setenv("LOPTIM_KERNELS", kernels)
    calls = {"mlp_update": 0, "mlp_update_direct": 0}
    for name in calls:
        original = getattr(fused, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(fused, name, counted)
    g = torch.Generator().manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(6, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    initial = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)
    maximize = case == "maximize"
    groups = [{"params": list(model[0].parameters()), "lr": 0.5, "weight_decay": 0.1, "maximize": maximize},
              {"params": list(model[2].parameters())}]  # fmt: skip
    opt = MLPOptimizer(groups, total_steps=steps)
    if case == "frozen":
        model[2].bias.requires_grad_(False)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        (-loss if maximize else loss).backward()
        opt.step()
    return initial, [p.detach().clone() for p in model.parameters()], calls


@pytest.mark.parametrize("case", ["all", "frozen", "maximize"])
def test_both_kernel_paths_of_the_shell_agree_with_the_reference(monkeypatch, case):
    initial, fast, calls = _grouped_run(monkeypatch, "1", case)
    _, reference, reference_calls = _grouped_run(monkeypatch, "0", case)
    direct = case != "maximize"
    assert calls == {"mlp_update": 0 if direct else 8, "mlp_update_direct": 8 if direct else 0}
    assert reference_calls == {"mlp_update": 0, "mlp_update_direct": 0}
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if case == "frozen":
        assert torch.equal(fast[-1], initial[-1])  # the bias without a gradient never moved


def test_the_direct_kernel_leaves_everything_as_it_was_on_a_non_finite_gradient():
    g = torch.Generator().manual_seed(3)
    model = torch.nn.Linear(70, 3)  # 210 weights: the bad entry sits in a later tile than the first
    x, y = torch.randn(16, 70, generator=g), torch.randn(16, 3, generator=g)
    for nonfinite in ("raise", "skip"):
        opt = MLPOptimizer(model.parameters(), total_steps=10, nonfinite=nonfinite)
        for step in range(3):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            if step == 2:
                model.weight.grad[2, 5] = float("inf")
                before = [p.detach().clone() for p in model.parameters()]
                state = {k: v.clone() for k, v in opt.flat_state.items()}
                versions = [p._version for p in model.parameters()]
                if nonfinite == "raise":
                    with pytest.raises(DivergedError):
                        opt.step()
                else:
                    opt.step()
                    assert opt.skipped_steps == 1
                assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
                assert all(torch.equal(state[k], opt.flat_state[k]) for k in state)
                assert [p._version for p in model.parameters()] == versions
                assert opt.step_count == 2
            else:
                versions = [p._version for p in model.parameters()]
                opt.step()
                assert all(p._version > v for p, v in zip(model.parameters(), versions))  # autograd sees the write


@pytest.mark.parametrize("threads, n", [(1, 2 * 4096 + 77), (2, 2 * 4096 + 77), (2, 5), (2, 513)])
def test_lstm_kernel_matches_the_reference_update(threads, n):
    from loptim.optimizers.lstm import LSTMOptimizerNet, _scaled

    g = torch.Generator().manual_seed(5)
    net = LSTMOptimizerNet(generator=g)
    meta = {k: v.detach() for k, v in net.meta_params().items()}
    # n: 16 panels of 512 and a partial tile; less than a tile; one coordinate past a panel
    reference, state = net.zero_state(n), net.zero_state(n)
    for step in range(6):  # gradients around the preprocessing threshold e^-10 and far above it
        grad = torch.randn(n, generator=g) * 10.0 ** (step - 5)
        grad[:50] = 0.0
        with torch.no_grad():
            expected, reference = net.step_flat(meta, reference, grad, differentiable=False)
        got = fused.lstm_update(20, grad, state, _scaled(meta, 20), net.config.p, net.config.output_scale, threads)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
        for key in state:
            torch.testing.assert_close(state[key], reference[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weights", ["lstm-mnist", None])
def test_the_lstm_shell_runs_the_kernel_and_agrees_with_the_reference(monkeypatch, weights):
    from loptim.optimizers.lstm import LSTMOptimizer

    runs = []
    for kernels in ("1", "0"):
        monkeypatch.setenv("LOPTIM_KERNELS", kernels)
        g = torch.Generator().manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 40), torch.nn.Tanh(), torch.nn.Linear(40, 3))
        x, y = torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        opt = LSTMOptimizer(model.parameters(), weights=weights)
        for _ in range(10):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        runs.append([p.detach().clone() for p in model.parameters()])
    # Per step the two agree to ~1e-5 (above); ten steps of training amplify that through log|g| and the cell state.
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


LHOPT_SIZES = [(130, 300), (7,), (40000,), (1,)]  # blocks of 16,384 straddle the 40,000; a 1-element tensor


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config_name", ["published", "plain"])
def test_lhopt_inner_step_kernel_matches_the_reference(monkeypatch, config_name, threads):
    """Moments, parameters, clipping, trust-ratio EMA and every per-parameter feature over steps whose gradients
    span decades (clipping engages when they grow), with per-tensor learning-rate scales and weight decays."""
    from loptim.optimizers.lhopt.inner import PLAIN_ADAMW, PUBLISHED, InnerHParams, init_inner_state, inner_step

    config = PUBLISHED if config_name == "published" else PLAIN_ADAMW
    monkeypatch.setattr(fused, "threads_for", lambda n: threads)
    g = torch.Generator().manual_seed(5)
    params = [torch.randn(*shape, generator=g) for shape in LHOPT_SIZES]
    calls = []
    step_kernel = fused.lhopt_step
    monkeypatch.setattr(fused, "lhopt_step", lambda *a, **k: calls.append(1) or step_kernel(*a, **k))
    runs = {}
    for kernels in ("1", "0"):
        monkeypatch.setenv("LOPTIM_KERNELS", kernels)
        g.manual_seed(6)
        ours = [p.clone() for p in params]
        state = init_inner_state(ours)
        trace = []
        for step in range(8):
            grads = [torch.randn(p.shape, generator=g) * 10.0 ** (step % 4 - 2) for p in ours]
            hparams = InnerHParams(lr=1e-2, weight_decay=0.1 if step % 2 else 0.0)
            scales = {"lr_scales": [1.0, 0.5, 2.0, 1.0], "weight_decays": [0.1, 0.0, 0.2, 0.1]}
            clipped, features = inner_step(hparams, config, state, ours, grads, with_features=step % 3 == 0, **scales)
            trace.append((clipped, features))
        runs[kernels] = (ours, state, trace)
    assert len(calls) == 8  # every step of the first run went through the kernel, none of the reference's
    (got, got_state, got_trace), (want, want_state, want_trace) = runs["1"], runs["0"]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for key in ("exp_avg", "exp_avg_sq"):
        for a, b in zip(got_state[key], want_state[key]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))
    torch.testing.assert_close(got_state["update_norm_ema"], want_state["update_norm_ema"], rtol=1e-5, atol=0.0)
    assert [c for c, _ in got_trace] == [c for c, _ in want_trace]
    assert any(c for c, _ in want_trace) == config.rolling_max_clip
    for (_, a), (_, b) in zip(got_trace, want_trace):
        assert (a is None) == (b is None)
        if a is not None:  # the reference sums log(|u| + 1e-8) + 18.4 in float32: mean_log_abs_update to ~1e-4
            torch.testing.assert_close(a, b, rtol=1e-4, atol=3e-4)


def _lhopt_run(monkeypatch, kernels: str) -> tuple[list[torch.Tensor], list[list[int]]]:
    """30 steps of loptim.LHOPT (shipped policy, 10 decisions) on a small regression with two param groups."""
    import loptim

    monkeypatch.setenv("LOPTIM_KERNELS", kernels)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 3e-3, "weight_decay": 0.0}]
    opt = loptim.LHOPT(groups, total_steps=30, decisions=10)
    actions = []
    opt._act, act = (lambda obs: actions.append(act(obs)) or actions[-1]), opt._act
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 6, generator=g), torch.randn(64, 1, generator=g)
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step(loss)
    assert (opt.loop.scratch is None) == (kernels == "1")  # the features' scratch memory serves the reference only
    return [p.detach().clone() for p in model.parameters()], actions


def test_the_lhopt_shell_runs_the_kernel_and_agrees_with_the_reference(monkeypatch):
    calls = []
    step_kernel = fused.lhopt_step
    monkeypatch.setattr(fused, "lhopt_step", lambda *a, **k: calls.append(1) or step_kernel(*a, **k))
    fast, fast_actions = _lhopt_run(monkeypatch, "1")
    assert len(calls) == 30
    reference, reference_actions = _lhopt_run(monkeypatch, "0")
    assert len(calls) == 30 and len(fast_actions) == 9
    assert fast_actions == reference_actions  # the policy saw the same observations, to its choices
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
