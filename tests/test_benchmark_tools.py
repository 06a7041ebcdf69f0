"""The generalist's dev-set tools (benchmarks/generalist): known answers on small made-up inputs."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

GENERALIST = Path(__file__).parents[1] / "benchmarks" / "generalist"


def _script(name: str):
    sys.path.insert(0, str(GENERALIST))
    try:
        spec = importlib.util.spec_from_file_location(name, GENERALIST / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(GENERALIST))


def _devset(path: Path, ratios: dict[str, dict[str, float]]) -> Path:
    path.write_text(json.dumps({"tasks": {t: {"ratio_to_tuned_adam": r} for t, r in ratios.items()}}))
    return path


def test_devset_summary_combines_files_under_aliases(tmp_path):
    summary = _script("devset_summary")
    first = _devset(tmp_path / "a.json", {"t1": {"adam 0.001": 1.2, "x": 2.0, "w (warmup=0.05)": 1.0},
                                          "t2": {"adam 0.001": 1.0, "x": 0.5, "w (warmup=0.05)": 4.0}})  # fmt: skip
    second = _devset(tmp_path / "b.json", {"t3": {"x": 8.0, "w": 0.25, "only-here": 1.0}})
    ratios = summary.gather([first, second], {"w (warmup=0.05)": "w"})  # the label holds '=': split at the last
    assert "adam 0.001" not in ratios
    means = summary.geometric_means(ratios, ["t1", "t2", "t3"])
    assert set(means) == {"x", "w"}  # "only-here" lacks t1 and t2
    assert means["x"] == pytest.approx((2.0 * 0.5 * 8.0) ** (1 / 3))
    assert means["w"] == pytest.approx(1.0)
    ratios["x"]["t2"] = math.inf
    assert summary.geometric_means(ratios, ["t1", "t2", "t3"])["x"] == math.inf


def test_groups_picks_tensors_by_name_and_rank():
    groups = _script("groups")
    matrix, vector = torch.zeros(3, 4), torch.zeros(4)
    assert groups.picks("block0.attn.qkv.weight", matrix, "attn")
    assert not groups.picks("block0.mlp.in.weight", matrix, "attn")
    assert groups.picks("block0.mlp.in.bias", vector, "all")
    assert groups.picks("head.weight", matrix, "matrices") and not groups.picks("head.bias", vector, "matrices")
