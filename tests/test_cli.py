"""The `loptim` command end to end: bench on a tiny configuration, tasks, data, and clear errors."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from loptim.cli import main
from loptim.evaluate.harness import Curve
from loptim.evaluate.results import load_results
from loptim.evaluate.speedup import mean_curve, speedup
from loptim.optimizers.baselines import BASELINES, baseline_spec
from loptim.tasks import TASKS
from loptim.tasks.suite import SUITE_CORE

CURVE_KEYS = {"seed", "step", "train_loss", "valid_step", "valid_loss"}  # schema 2: losses only, no seconds
ENTRY_KEYS = {
    "hyperparameters",
    "final_train_loss",
    "final_valid_loss",
    "final_test_loss",
    "metrics",
    "speedup_vs_tuned_adam",
    "wallclock_speedup_vs_tuned_adam",
    "reached",
    "final_loss_ratio",
    "seconds",
    "optimizer_seconds_fraction",
    "timing",
    "cost_to_target",
    "tuning_runs",
    "curves",
}


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()  # bench runs in-process with --workers 1 and sets one thread per run
    yield
    torch.set_num_threads(threads)


def bench_args(task: str, out, *extra: str, steps: int = 20, optimizers: str = "sgd") -> list[str]:
    return ["bench", task, "--optimizers", optimizers, "--seeds", "2", "--steps", str(steps), "--schedules",
            "constant", "--lr-points", "3", "--workers", "1", "--out", str(out), *extra]  # fmt: skip


def check_stats(stats: dict, values: list[float]) -> None:
    assert set(stats) == {"mean", "std"}
    assert stats["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert stats["std"] == pytest.approx(float(torch.tensor(values, dtype=torch.float64).std(correction=0)), abs=1e-12)


def test_bench_quadratic_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOPTIM_CACHE", str(tmp_path / "cache"))  # quadratic needs no data: isolate the run cache
    out = tmp_path / "out"
    assert main(bench_args("quadratic", out)) == 0
    printed = capsys.readouterr().out
    assert "adam" in printed and "sgd" in printed and "results.json" in printed

    results = json.loads((out / "results.json").read_text())
    assert load_results(out / "results.json") == results
    assert results["schema"] == 2 and results["task"] == "quadratic" and results["steps"] == 20
    assert results["seeds"] == [0, 1] and results["reference"] == "adam"
    assert list(results["optimizers"]) == ["adam", "sgd"]  # tuned Adam is always included, and first

    for name, entry in results["optimizers"].items():
        assert ENTRY_KEYS <= set(entry), name
        hyper = entry["hyperparameters"]
        assert hyper["schedule"] == "constant" and hyper["lr"] in baseline_spec(name).lr_grid(3)
        curves = entry["curves"]
        assert [c["seed"] for c in curves] == [0, 1]
        for c in curves:
            assert CURVE_KEYS <= set(c)
            assert c["step"] == list(range(20)) and len(c["train_loss"]) == 20
            assert c["valid_step"] == list(range(21)) and len(c["valid_loss"]) == 21 and "seconds" not in c
            assert all(math.isfinite(v) for v in c["train_loss"] + c["valid_loss"])
        check_stats(entry["final_valid_loss"], [c["valid_loss"][-1] for c in curves])
        check_stats(entry["final_test_loss"], [c["test_loss"] for c in curves])
        check_stats(entry["final_train_loss"], [Curve.from_json(c).final_train_loss() for c in curves])
        timing = entry["timing"]  # measured side by side in this run; a whole run's seconds follow from it
        assert timing["per_step_ms"] == pytest.approx(timing["forward_backward_ms"] + timing["step_ms"])
        assert entry["seconds"] == pytest.approx(20 * timing["per_step_ms"] / 1e3)
        assert entry["optimizer_seconds_fraction"] == pytest.approx(timing["optimizer_share"])
        assert 0.0 < timing["optimizer_share"] < 1.0
        assert entry["tuning_runs"] == 3 * 2  # 3 learning rates x 2 seeds
        assert entry["metrics"] == {}

    adam, sgd = results["optimizers"]["adam"], results["optimizers"]["sgd"]
    assert adam["speedup_vs_tuned_adam"] == 1.0 and adam["wallclock_speedup_vs_tuned_adam"] == 1.0
    assert adam["reached"] is True and adam["final_loss_ratio"] == 1.0
    # The written speedup agrees with one recomputed from the written curves.
    reference = mean_curve([Curve.from_json(c) for c in adam["curves"]])
    recomputed = speedup(reference, mean_curve([Curve.from_json(c) for c in sgd["curves"]]))
    assert sgd["reached"] is recomputed.reached
    assert sgd["speedup_vs_tuned_adam"] == (None if recomputed.steps is None else pytest.approx(recomputed.steps))
    assert sgd["final_loss_ratio"] == pytest.approx(sgd["final_valid_loss"]["mean"] / adam["final_valid_loss"]["mean"])

    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 500_000

    cached = list((tmp_path / "cache" / "runs").rglob("*.json"))
    assert len(cached) == 2 * 3 * 2  # 2 baselines x 3 learning rates x 2 seeds
    assert all("seconds" not in json.loads(path.read_text()) for path in cached)  # the cache keeps losses only
    assert main(bench_args("quadratic", tmp_path / "again")) == 0  # served from the cache: same numbers
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    for name in ("adam", "sgd"):
        first, second = results["optimizers"][name], again["optimizers"][name]
        assert first["hyperparameters"] == second["hyperparameters"] and first["curves"] == second["curves"]
        assert first["timing"] != second["timing"]  # timed anew in each run, never read from the cache


def test_bench_on_mnist_records_accuracy(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(bench_args("mnist-mlp", out, "--no-cache", steps=5, optimizers="adam")) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["optimizers"]) == ["adam"]
    adam = results["optimizers"]["adam"]
    assert set(adam["metrics"]) == {"accuracy"} and 0.0 <= adam["metrics"]["accuracy"]["mean"] <= 1.0
    assert adam["final_valid_loss"]["mean"] < math.log(10)
    assert (out / "curves.png").stat().st_size < 500_000


def table_rows(printed: str) -> list[list[str]]:
    lines = printed.strip().splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}, "the second line is the header rule"
    return [line.split() for line in lines[2:]]


def test_tasks_lists_names_data_and_sizes(capsys):
    assert main(["tasks"]) == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    names = [row[0] for row in rows]
    assert len(rows) >= 6 and names == TASKS.names()
    assert {"quadratic", "mnist-mlp", "fashion-cnn", "shakespeare-char", "movielens-gmf"} <= set(names)
    for source in ("mnist", "fashion-mnist", "shakespeare", "movielens-100k", "brown", "fsdd", "diamonds"):
        assert source in printed, source
    assert {row[0] for row in rows if row[2] == "suite"} >= set(SUITE_CORE)
    mlp = next(row for row in rows if row[0] == "mnist-mlp")
    assert mlp[-3:] == ["15910", "100", "128"]  # params, default steps, batch size


def test_data_lists_every_data_set(capsys):
    assert main(["data"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["mnist", "fashion-mnist", "shakespeare", "moby-dick", "movielens-100k",
                                        "brown", "fsdd", "diamonds", "health-insurance", "doctor-contacts", "sotu",
                                        "us-births", "spam-assassin"]  # fmt: skip
    assert all(row[1] in ("yes", "no") for row in rows)


def test_unknown_task_is_an_error_naming_the_known_ones(tmp_path, capsys):
    assert main(bench_args("mnsit-mlp", tmp_path, "--no-cache")) == 2
    captured = capsys.readouterr()
    assert "UnknownNameError" in captured.err and "'mnsit-mlp'" in captured.err
    assert all(name in captured.err for name in TASKS.names())
    assert not (tmp_path / "results.json").exists()


def test_unknown_optimizer_is_an_error_naming_the_known_ones(tmp_path, capsys):
    assert main(bench_args("quadratic", tmp_path, "--no-cache", optimizers="sgd,adma")) == 2
    err = capsys.readouterr().err
    assert "'adma'" in err and all(name in err for name in BASELINES)
    assert not (tmp_path / "results.json").exists()


def test_unknown_schedule_is_an_error(tmp_path, capsys):
    args = bench_args("quadratic", tmp_path, "--no-cache")
    args[args.index("--schedules") + 1] = "constant,cosin"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "'cosin'" in err and "cosine-10" in err


def test_bench_with_lhopt_tunes_adamw_and_reports_speedups_over_it(tmp_path):
    out = tmp_path / "lhopt"
    assert main(bench_args("quadratic", out, optimizers="lhopt")) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["optimizers"]) == ["adam", "adamw", "lhopt"]  # LHOPT's reference is tuned AdamW
    adamw, lhopt = results["optimizers"]["adamw"], results["optimizers"]["lhopt"]
    assert adamw["speedup_vs_tuned_adamw"] == 1.0 and adamw["adamw_configs_better"] == 0
    reference = mean_curve([Curve.from_json(c) for c in adamw["curves"]])
    recomputed = speedup(reference, mean_curve([Curve.from_json(c) for c in lhopt["curves"]]))
    assert lhopt["reached_tuned_adamw"] is recomputed.reached
    assert lhopt["final_loss_ratio_vs_tuned_adamw"] == pytest.approx(recomputed.final_loss_ratio)
    scores = [g["score"] for g in adamw["grid"]]
    assert len(scores) == lhopt["adamw_configs"] == 3 and min(scores) == adamw["final_valid_loss"]["mean"]
    assert lhopt["adamw_configs_better"] == sum(s < lhopt["final_valid_loss"]["mean"] for s in scores)


def test_optimizer_labels_carry_a_learned_optimizers_options():
    """`name[:weights][:option=value...]`: the options reach the optimizer; bad ones fail before any run."""
    from loptim.errors import UnknownNameError
    from loptim.optimizers.registry import check_optimizer_label, label_factory, parse_label

    assert parse_label("lhopt") == ("lhopt", {})
    assert parse_label("lhopt:lhopt-small:cooldown=0") == ("lhopt", {"weights": "lhopt-small", "cooldown": 0.0})
    assert parse_label("lhopt:cooldown=0.1") == ("lhopt", {"cooldown": 0.1})
    assert parse_label("mlp:runs/lr=0.1/best.safetensors") == ("mlp", {"weights": "runs/lr=0.1/best.safetensors"})
    params = [torch.zeros(3, requires_grad=True)]
    assert label_factory("lhopt:lhopt-small:cooldown=0")(params, total_steps=10).cooldown == 0.0
    assert label_factory("lhopt:lhopt-small")(params, total_steps=10).cooldown > 0.0
    assert label_factory("lhopt:lr=0.001")(params, total_steps=10).param_groups[0]["lr"] == 0.001
    assert label_factory("lhopt")(params, total_steps=10).param_groups[0]["lr"] == 3e-3  # LHOPT's starting rate
    assert label_factory("lhopt:freeze_in_cooldown=1")(params, total_steps=10).freeze_in_cooldown is True
    for bad, says in [
        ("lhopt:lhopt-small:cooldown=2", "[0, 1)"),
        ("lhopt:lhopt-small:warmup=1", "no option warmup"),
        ("adam:cooldown=0", "only learned optimizers"),
        ("lhopt:lhopt-small:cooldown", "name[:weights][:option=value...]"),
    ]:
        with pytest.raises(UnknownNameError, match=re.escape(says)):
            check_optimizer_label(bad)
