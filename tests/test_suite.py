"""`loptim suite`: the listing, the per-seed judgement and summaries on constructed curves, `--quick` end to end
(and resumed from its cache), and schema-1 results still readable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from loptim.cli import main
from loptim.evaluate import tuning
from loptim.evaluate.bench import format_table
from loptim.evaluate.harness import Curve
from loptim.evaluate.plots import plot_results
from loptim.evaluate.results import load_results
from loptim.evaluate.speedup import mean_curve, speedup
from loptim.evaluate.suite import DEFAULT_OPTIMIZERS, SUITE_CORE, SUITE_QUICK, SuiteConfig
from loptim.evaluate.suite_report import (
    SuiteTask,
    interquartile_mean,
    judge,
    performance_profile,
    summarize_suite,
    verdict,
)
from loptim.evaluate.timing import StepTimes
from loptim.tasks import get_task
from loptim.tasks.partition import part_of
from loptim.tasks.suite import META_VALID_TASKS

REPO = Path(__file__).resolve().parents[1]
VERDICTS = {"reference", "above 1", "below 1", "within noise", "never"}


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_list_prints_every_suite_task(capsys):
    assert main(["suite", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["task", "tier", "modality", "params", "steps"] and set(lines[1]) <= {"-", " "}
    rows = [line.split()[:3] for line in lines[2:]]  # name, tier, first word of the modality
    assert [r[0] for r in rows if r[1] == "core"] == list(SUITE_CORE) and len(SUITE_CORE) >= 6
    assert [r[0] for r in rows if r[1] == "quick"] == list(SUITE_QUICK) and len(SUITE_QUICK) == 2
    assert len({r[2] for r in rows if r[1] == "quick"}) == 2  # the quick tasks are of two modalities
    # the meta-valid tier runs the protocol on meta-valid data only, never on the held-out suite's
    valid = [r[0] for r in rows if r[1] == "meta-valid"]
    assert valid == list(META_VALID_TASKS) and {part_of(get_task(t).data_source) for t in valid} == {"meta-valid"}
    assert SuiteConfig(tier="meta-valid").task_names() == META_VALID_TASKS


def test_verdict_claims_above_1_only_when_every_seed_is():
    assert verdict([1.2, 1.1, 1.5]) == "above 1"
    assert verdict([1.2, 0.9, 1.5]) == "within noise"
    assert verdict([1.2, None, 1.5]) == "within noise"  # a seed that never reached is no speedup
    assert verdict([0.5, 0.9, None]) == "below 1"
    assert verdict([None, None, None]) == "never"
    assert verdict([1.0, 1.2, 1.3]) == "within noise"


def test_interquartile_mean_drops_a_quarter_at_each_end():
    assert interquartile_mean([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]) == pytest.approx(3.5)  # mean of 2..5
    assert interquartile_mean([1.0, 2.0, 3.0]) == pytest.approx(2.0)  # int(0.75) = 0 dropped
    assert interquartile_mean([]) is None


def curve(seed: int, valid_loss: list[float]) -> Curve:
    return Curve(seed=seed, step=list(range(40)), train_loss=[1.0] * 40, valid_step=[0, 10, 20, 30, 40],
                 valid_loss=list(valid_loss), test_loss=valid_loss[-1])  # fmt: skip


def constructed_task() -> SuiteTask:
    # Tuned Adam's seed mean ends at 1.0 (L*) and reaches it at step 40; the candidate's seeds reach 1.0 at steps
    # 20, 10 and never; its step costs 3x Adam's per step (2 ms fwd+bwd, 1 vs 4 ms step).
    adam = [curve(1, [4.0, 3.0, 2.0, 1.5, 1.2]), curve(2, [4.0, 3.0, 2.0, 1.5, 0.8])]
    candidate = [curve(1, [4.0, 2.0, 1.0, 0.9, 0.8]), curve(2, [4.0, 1.0, 0.9, 0.8, 0.7])]
    times = StepTimes(forward_backward=2e-3, step={"adam": 1e-3, "new": 7e-3}, rounds=5, block=4)
    return SuiteTask("t", "images", 10, 40, {"adam": {"lr": 0.01, "schedule": "cosine"}, "new": {}},
                     {"adam": adam, "new": candidate}, {"adam": 14, "new": 0}, times)  # fmt: skip


def test_judge_per_seed_speedups_ratios_and_cost_on_constructed_curves():
    task = constructed_task()
    new = judge(task, "new", "adam")
    assert new["target"] == pytest.approx(1.0)
    assert new["speedup"]["per_seed"] == pytest.approx([2.0, 4.0])  # 40 / 20, 40 / 10
    assert new["speedup"]["min"] == pytest.approx(2.0) and new["speedup"]["max"] == pytest.approx(4.0)
    assert new["wallclock_speedup"]["per_seed"] == pytest.approx([2.0 * 3 / 9, 4.0 * 3 / 9])  # 3 ms vs 9 ms a step
    assert new["verdict"] == "above 1" and new["wallclock_verdict"] == "within noise"
    assert new["final_loss_ratio"]["per_seed"] == pytest.approx([0.8, 0.7])
    assert new["final_loss_ratio"]["mean"] == pytest.approx(0.75)
    # Cost: the candidate's seed mean reaches 1.0 between steps 10 (1.5) and 20 (0.95); Adam pays 14 runs first.
    assert new["cost_to_target"]["runs"] == 1 and new["cost_to_target"]["steps"] == pytest.approx(10 + 10 * 0.5 / 0.55)
    adam = judge(task, "adam", "adam")
    assert adam["verdict"] == "reference" and adam["cost_to_target"]["runs"] == 15
    assert adam["cost_to_target"]["steps"] == pytest.approx(14 * 40 + 40)
    assert adam["cost_to_target"]["seconds"] == pytest.approx((14 * 40 + 40) * 3e-3)
    assert new["cost_ratio_vs_reference"] == pytest.approx(600 / new["cost_to_target"]["steps"])


def test_summaries_and_performance_profile():
    first = {"optimizers": {"adam": judge(constructed_task(), "adam", "adam"),
                            "new": judge(constructed_task(), "new", "adam")}}  # fmt: skip
    second = json.loads(json.dumps(first))
    second["optimizers"]["new"]["final_loss_ratio"] = {"mean": 1.2, "per_seed": [1.1, 1.3], "min": 1.1, "max": 1.3}
    second["optimizers"]["new"]["final_valid_loss"]["mean"] = 1.2
    second["optimizers"]["new"]["speedup"]["mean"] = None  # never reached on the second task
    second["optimizers"]["new"]["verdict"] = "never"
    summary = summarize_suite({"tasks": {"one": first, "two": second}})["new"]
    assert summary["final_loss_ratio_geomean"] == pytest.approx(math.sqrt(0.75 * 1.2))
    assert summary["final_loss_ratio_iqm"] == pytest.approx(np.mean([0.8, 1.1]))  # middle of 0.7, 0.8, 1.1, 1.3
    assert summary["median_speedup"] == pytest.approx(3.0 / 2)  # median of 3.0 and 0 (never)
    assert summary["tasks_above_1"] == 1 and summary["tasks"] == 2
    profile = performance_profile({"tasks": {"one": first, "two": second}}, np.array([1.0, 1.25]))
    # Task one: new is best (0.75 vs 1.0: adam at 1.33x); task two: adam is best, new at 1.2x.
    assert profile["new"].tolist() == [0.5, 1.0] and profile["adam"].tolist() == [0.5, 0.5]


def test_suite_quick_end_to_end_and_resumed(tmp_path, capsys, monkeypatch):
    out = tmp_path / "suite"
    assert main(["suite", "--quick", "--workers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = load_results(out / "suite.json")
    assert results["schema"] == 2 and results["kind"] == "suite" and results["tier"] == "quick"
    assert list(results["tasks"]) == list(SUITE_QUICK)
    assert results["protocol"]["tuning_seeds"] == [0] and results["protocol"]["report_seeds"] == [1]
    assert results["command"].startswith("loptim suite --quick")
    table = (out / "table.md").read_text()
    assert table in printed
    for task_name, task in results["tasks"].items():
        assert list(task["optimizers"]) == list(DEFAULT_OPTIMIZERS)
        for label, judged in task["optimizers"].items():
            assert f"| {task_name} | {label} |" in table
            assert judged["verdict"] in VERDICTS and judged["reference"] == ("adamw" if label == "lhopt" else "adam")
            tuned = label in ("adam", "adamw")
            assert judged["tuning_runs"] == (3 * 2 if tuned else 0)  # 3 learning rates x {constant, cosine}
            assert judged["cost_to_target"]["runs"] == judged["tuning_runs"] + 1
            assert bool(judged["hyperparameters"]) is tuned
            assert judged["timing"]["per_step_ms"] > 0 and [c["seed"] for c in judged["valid_curves"]] == [1]
            # The written speedup agrees with one recomputed from the written curves.
            reference = task["optimizers"][judged["reference"]]
            ref_curve = [Curve(seed=c["seed"], valid_step=c["valid_step"], valid_loss=c["valid_loss"])
                         for c in reference["valid_curves"]]  # fmt: skip
            mine = [Curve(seed=c["seed"], valid_step=c["valid_step"], valid_loss=c["valid_loss"])
                    for c in judged["valid_curves"]]  # fmt: skip
            recomputed = speedup(mean_curve(ref_curve), mean_curve(mine))
            expected = None if recomputed.steps is None else pytest.approx(recomputed.steps)
            assert judged["speedup"]["per_seed"][0] == expected
    summary = results["summary"]
    assert list(summary) == list(DEFAULT_OPTIMIZERS) and summary["adam"]["final_loss_ratio_geomean"] == 1.0
    png = out / "profile.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 500_000

    ran = []
    real_run_jobs = tuning.run_jobs
    monkeypatch.setattr(tuning, "run_jobs", lambda jobs, **kw: ran.extend(jobs) or real_run_jobs(jobs, **kw))
    assert main(["suite", "--quick", "--workers", "1", "--out", str(out)]) == 0  # resumed: every run cached
    assert ran == []
    again = load_results(out / "suite.json")
    for task_name, task in again["tasks"].items():
        for label, judged in task["optimizers"].items():
            assert judged["valid_curves"] == results["tasks"][task_name]["optimizers"][label]["valid_curves"]
    assert all("seconds" not in json.loads(p.read_text()) for p in (out / "runs").rglob("*.json"))

    # --tuned-from: tuned Adam's hyperparameters taken from that suite.json, so only report seeds run, and they
    # give the same curves; a file tuned under another grid is refused before any run.
    other = tmp_path / "other"
    tuned = ["suite", "--quick", "--workers", "1", "--optimizers", "adam,adam-default"]
    assert main([*tuned, "--tuned-from", str(out / "suite.json"), "--out", str(other)]) == 0
    assert sorted((j.task, j.optimizer, j.seed) for j in ran) == sorted(
        (t, o, 1) for t in SUITE_QUICK for o in ("adam", "adam-default")
    )
    taken = load_results(other / "suite.json")
    assert taken["protocol"]["tuned_from"] == str(out / "suite.json")
    for task_name, task in taken["tasks"].items():
        for label in ("adam", "adam-default"):
            before = results["tasks"][task_name]["optimizers"][label]
            judged = task["optimizers"][label]
            assert judged["hyperparameters"] == before["hyperparameters"]
            assert judged["valid_curves"] == before["valid_curves"]
            assert judged["tuning_runs"] == before["tuning_runs"]  # the protocol's cost, though tuned elsewhere
    capsys.readouterr()
    code = main([*tuned, "--lr-points", "5", "--tuned-from", str(out / "suite.json"), "--out", str(tmp_path / "x")])
    assert code != 0 and "another protocol (lr_points differ)" in capsys.readouterr().err


def test_schema_1_results_stay_readable(tmp_path):
    path = REPO / "benchmarks" / "tasks" / "results" / "fashion-mlp" / "results.json"
    results = load_results(path)
    assert results["schema"] == 1 and "timing" not in results["optimizers"]["adam"]
    table = format_table(results)
    assert table.splitlines()[2].startswith("adam") and "ms/step" in table.splitlines()[0]
    plot_results(results, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    curves = [Curve.from_json(c) for c in results["optimizers"]["adam"]["curves"]]
    itself = speedup(mean_curve(curves), mean_curve(curves))  # schema-1 curves carry their recorded seconds
    assert itself.steps == 1.0 and itself.wallclock == 1.0
    with pytest.raises(ValueError, match="schema"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"schema": 99}))
        load_results(bad)


def test_tasks_outside_the_suite_are_refused_before_any_run(tmp_path, capsys):
    code = main(["suite", "--tasks", "fashion-mlp-relu,mnist-mlp", "--workers", "1", "--out", str(tmp_path / "s")])
    assert code != 0 and "not suite tasks: mnist-mlp" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
