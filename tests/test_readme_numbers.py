"""Every number in the README's result tables comes from a committed JSON file: regenerate each table row from its
source and find it in the README verbatim (a hand-edited or stale number fails here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem + "_table", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _stats(stats: dict) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def test_l2l_table_rows_match_their_results():
    lines = _script("benchmarks/l2l/reproduce.py").committed_lines()
    assert len(lines) == 10
    for line in lines:
        assert line in README, line


def test_tuned_adam_table_matches_its_results():
    for line in _script("benchmarks/tasks/table.py").table().splitlines()[2:]:
        assert line in README, line


def test_lhopt_table_matches_its_results():
    lines = _script("benchmarks/lhopt/table.py").lines()
    for line in lines[2:-1]:
        assert line in README, line


def test_metz_table_matches_its_results():
    results = json.loads((ROOT / "benchmarks/metz2019/results/fashion-cnn/results.json").read_text())["optimizers"]
    rows = {line.split("|")[1].strip(): line for line in README.splitlines() if line.startswith("| adam | lr 0.01")}
    rows["mlp"] = next(line for line in README.splitlines() if line.startswith("| mlp (`mlp-mnist`)"))
    for name, key in (("adam", "adam"), ("mlp", "mlp:mlp-mnist")):
        entry, line = results[key], rows[name]
        for text in (
            _stats(entry["final_valid_loss"]),
            _stats(entry["final_test_loss"]),
            f"{100 * entry['metrics']['accuracy']['mean']:.1f}%",
            f"{100 * entry['optimizer_seconds_fraction']:.0f}%",
        ):
            assert text in line, (name, text)


def test_overhead_table_matches_overhead_json():
    for line in _script("benchmarks/overhead.py").table()[2:]:
        assert line in README, line


def test_other_overhead_runs_quoted_in_the_readme_match_their_files():
    """The README names two more runs of overhead.py beside its table: their LSTM rows and matmul rates."""
    runs = sorted((ROOT / "benchmarks/results/overhead-runs").glob("*.json"))
    assert len(runs) == 2
    for path in runs:
        run = json.loads(path.read_text())
        lstm = next(r for r in run["rows"] if r["optimizer"] == "lstm" and r["params"] == 814_090)
        quoted = (f"{100 * lstm['fraction_of_matmul']:.0f}% (matmul {run['matmul_gflops']:.1f}",
                  f"{lstm['update_ms']:.0f} ms)")  # fmt: skip
        for text in quoted:
            assert text in " ".join(README.split()), (path.name, text)


def test_suite_tables_match_suite_json():
    """The suite's committed table (benchmarks/suite/README.md) and the README's summary come from suite.json."""
    from loptim.evaluate.suite_report import table_markdown

    results = json.loads((ROOT / "benchmarks/suite/results/core/suite.json").read_text())
    table = table_markdown(results).splitlines()
    suite_readme = (ROOT / "benchmarks/suite/README.md").read_text()
    rows = [line for line in table if line.startswith("| ")]
    assert len(rows) >= 12 * len(results["summary"])
    for line in rows:
        assert line in suite_readme, line
    summary = table[table.index("| optimizer | tasks | final-loss ratio, geometric mean | final-loss ratio, IQM "
                                "| median speedup (steps) | median speedup (seconds) | tasks above 1 (all seeds) "
                                "| tasks diverged |"):]  # fmt: skip
    for line in (line for line in summary if line.startswith("| ")):
        assert line in README, line


@pytest.mark.parametrize(
    "folder, optimizers",
    [
        ("candidates", 4),
        ("candidates-wider", 3),
        ("candidates-scale", 2),
        ("candidates-cosine", 4),
        ("candidates-warmup", 3),
        ("candidates-half", 3),
        ("candidates-e285", 3),
        ("candidates-fold", 2),
        ("candidates-cooldown", 3),
        ("candidates-lr", 3),
    ],
)
def test_candidate_suite_summaries_match_their_suite_json(folder, optimizers):
    """The tables of the campaigns' candidates (benchmarks/suite/CANDIDATES.md) come from
    benchmarks/suite/results/<folder>."""
    from loptim.evaluate.suite_report import table_markdown

    results = json.loads((ROOT / "benchmarks/suite/results" / folder / "suite.json").read_text())
    table = table_markdown(results).splitlines()
    start = next(i for i, line in enumerate(table) if line.startswith("| optimizer | tasks |"))
    summary = [line for line in table[start + 2 :] if line.startswith("| ")]
    assert len(summary) == len(results["summary"]) == optimizers
    assert f"--out benchmarks/suite/results/{folder}" in results["command"]
    candidates = (ROOT / "benchmarks/suite/CANDIDATES.md").read_text()
    for line in summary:
        assert line in candidates, line


DEFAULTS_SPECS = [
    "core:adam,adamw,adam-default,schedulefree,prodigy,dadapt",
    "candidates-lr:lhopt",
    "candidates-fold:mlp:mlp-generalist-fold",
]


def test_the_readme_table_of_todays_defaults_is_its_commands_output():
    """The README's table of today's defaults is what benchmarks/suite/defaults.py prints for the command it quotes,
    and its rows are those of the runs they come from (the last column: in tuned Adam's currency)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("defaults", ROOT / "benchmarks/suite/defaults.py")
    defaults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defaults)
    assert defaults.table(DEFAULTS_SPECS) in README
    assert f"python benchmarks/suite/defaults.py {' '.join(DEFAULTS_SPECS)}" in " ".join(README.split())
    from loptim.evaluate.suite_report import table_markdown

    lines = defaults.table(["candidates-fold:adam,mlp:mlp-generalist-fold"]).splitlines()[2:]
    source = table_markdown(json.loads((ROOT / "benchmarks/suite/results/candidates-fold/suite.json").read_text()))
    for line in lines:
        cells = line.split(" | ")
        assert " | ".join(cells[:8]) + " |" in source, line  # the run's own summary row, then the extra columns
        assert cells[2] == cells[10].rstrip(" |"), line  # judged against tuned Adam: both currencies agree


def test_generalist_ablation_rows_match_the_committed_cards():
    """docs/generalist.md's table of the trained ablations comes from their cards in results/ablations/weights."""
    doc = (ROOT / "docs/generalist.md").read_text()
    weights = ROOT / "benchmarks/generalist/results/ablations/weights"
    cards = sorted(weights.glob("generalist-ablation-*/best.json"))
    assert cards
    for path in cards:
        card = json.loads(path.read_text())
        name = path.parent.name.removeprefix("generalist-ablation-")
        score = card["selection_score"]["mean_log_ratio_final_valid_loss_to_adam_1e-3"]
        row = (
            f"| {name} | {card['epochs_run']:,} | {card['experience_inner_steps']:,} "
            f"| {score:+.3f} ({card['best_epoch']:,}) |"
        )
        assert row in doc, row
