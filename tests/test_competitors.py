"""The untuned competitors: built as their authors recommend, switched to eval mode for validation, run by bench."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from loptim.cli import main
from loptim.evaluate.harness import run_one
from loptim.optimizers import competitors
from loptim.optimizers.baselines import ScheduledOptimizer
from loptim.optimizers.competitors import COMPETITORS, WARMUP_FRACTION, MissingPackageError, make_competitor
from loptim.tasks import get_task


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def params() -> list[torch.Tensor]:
    return [torch.zeros(3, requires_grad=True)]


def test_each_competitor_is_built_with_its_recommended_settings():
    import dadaptation
    import prodigyopt
    import schedulefree

    sf = make_competitor("schedulefree")(params(), total_steps=200)
    assert isinstance(sf, schedulefree.AdamWScheduleFree)
    group = sf.param_groups[0]
    assert group["lr"] == 0.0025 and group["warmup_steps"] == round(WARMUP_FRACTION * 200) == 10
    assert group["weight_decay"] == 0 and group["train_mode"] is True  # ready to step
    prodigy = make_competitor("prodigy")(params(), total_steps=100)
    assert isinstance(prodigy, ScheduledOptimizer) and isinstance(prodigy.optimizer, prodigyopt.Prodigy)
    lrs = []
    for _ in range(100):
        prodigy.step()
        lrs.append(prodigy.param_groups[0]["lr"])
    assert (
        lrs[0] == 1.0
        and lrs[50] == pytest.approx(0.5)
        and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(0.99 * math.pi)))
    )
    dadapt = make_competitor("dadapt")(params(), total_steps=10)
    assert isinstance(dadapt, dadaptation.DAdaptAdam) and dadapt.param_groups[0]["lr"] == 1.0
    adam = make_competitor("adam-default")(params(), total_steps=10)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["lr"] == 1e-3
    for spec in COMPETITORS.values():
        assert spec.installed_version() == spec.version or spec.package == ""  # the pins of the extra


def test_a_missing_package_is_one_line_naming_the_pip_command(monkeypatch, tmp_path, capsys):
    spec = COMPETITORS["prodigy"]
    monkeypatch.setitem(competitors.COMPETITORS, "prodigy", dataclasses.replace(spec, module="prodigyopt_not_here"))
    with pytest.raises(MissingPackageError, match=r'pip install "prodigyopt==1.1.2"'):
        make_competitor("prodigy")
    args = ["bench", "quadratic", "--optimizers", "prodigy", "--seeds", "1", "--steps", "3", "--workers", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "prodigy" in err
    assert not (tmp_path / "results.json").exists()


class ModeRecorder(torch.optim.SGD):
    """SGD with schedule-free's train()/eval() switches, recording the order of calls."""

    def __init__(self, params, log: list[str]) -> None:
        super().__init__(params, lr=0.01)
        self.log = log

    def train(self) -> None:
        self.log.append("train")

    def eval(self) -> None:
        self.log.append("eval")

    def step(self, closure=None):
        self.log.append("step")
        return super().step(closure)


def test_harness_switches_to_eval_for_every_validation_and_back():
    log: list[str] = []
    run_one(lambda p, total_steps: ModeRecorder(p, log), get_task("quadratic"), steps=3, seed=0)
    # Validation at steps 0..3 (every step for short runs), the run's model delivered in eval mode.
    assert log == ["eval", "train", "step", "eval", "train", "step", "eval", "train", "step", "eval", "train", "eval"]


def test_schedulefree_validates_at_its_averaged_point():
    # In eval mode the parameters are schedule-free's x (the average), which differs from y where it steps.
    task = get_task("quadratic")
    curve = run_one(make_competitor("schedulefree"), task, steps=20, seed=0)
    assert all(math.isfinite(v) for v in curve.valid_loss) and curve.valid_loss[-1] < curve.valid_loss[0]


def test_bench_runs_and_reports_the_competitors(tmp_path, monkeypatch, capsys):
    """The issue's acceptance command, with few steps: `bench fashion-mlp --optimizers adam,prodigy,schedulefree,
    dadapt --seeds 1`."""
    monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["bench", "fashion-mlp", "--optimizers", "adam,prodigy,schedulefree,dadapt", "--seeds", "1", "--steps", "8",
            "--workers", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert list(results["optimizers"]) == ["adam", "prodigy", "schedulefree", "dadapt"]
    for name, entry in results["optimizers"].items():
        assert name in printed
        assert entry["final_valid_loss"]["mean"] is not None and entry["timing"]["step_ms"] > 0
        untuned = name != "adam"
        assert (entry["hyperparameters"] == {}) is untuned
        grid = 7 * 7  # learning rates x schedules, one seed
        assert entry["tuning_runs"] == (0 if untuned else grid) and entry["cost_to_target"]["runs"] == (
            1 if untuned else grid + 1
        )
    adam = results["optimizers"]["adam"]
    assert adam["cost_to_target"]["steps"] == pytest.approx(grid * 8 + 8)  # tuned Adam reaches its own L* at the end
    assert adam["cost_to_target"]["seconds"] == pytest.approx(adam["cost_to_target"]["steps"] * adam["seconds"] / 8)
    cached = [p.parent.name for p in (tmp_path / "cache" / "runs").rglob("*.json")]
    assert {"prodigy@1.1.2", "schedulefree@1.4.1", "dadapt@3.2"} <= set(cached)  # competitors' runs keyed by version
