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


def test_fold_tensor_input_matches_the_original_at_its_log_rms():
    """Folded weights step a tensor of parameter RMS exp(c) exactly as the original does, and differ elsewhere
    (their step no longer depends on the tensor's scale)."""
    from loptim.features import NORMALIZER_EPS
    from loptim.optimizers import mlp_generalist
    from loptim.pretrained import load_learned

    fold = _script("fold_tensor_input")
    net = load_learned("mlp", "mlp-generalist-half")
    c = -2.3
    folded = fold.fold(net, c)
    original = {k: v.detach() for k, v in net.meta_params().items()}
    meta = {k: v.detach() for k, v in folded.meta_params().items()}
    assert torch.count_nonzero(meta["w1_tensor"]) == 0 and torch.count_nonzero(original["w1_tensor"]) > 0
    generator = torch.Generator().manual_seed(0)
    size = 64
    signs = torch.randint(0, 2, (size,), generator=generator) * 2.0 - 1.0
    at_c = signs * math.sqrt(math.exp(2 * c) - NORMALIZER_EPS)  # 0.5 log(mean square + eps) == c
    grad = torch.randn(2 * size, generator=generator)
    state = mlp_generalist.zero_state(2 * size, torch.float32, None)

    def step(meta_params, param):
        delta, _ = mlp_generalist.update(meta_params, state, grad, param, [size, size], 10, 100, 5e-4,
                                         correction=False)  # fmt: skip
        return delta

    other = torch.cat((at_c, 10 * at_c))  # the second tensor's RMS is 10x exp(c)
    torch.testing.assert_close(step(meta, other)[:size], step(original, other)[:size], rtol=1e-5, atol=1e-9)
    assert not torch.allclose(step(meta, other)[size:], step(original, other)[size:], rtol=1e-3)
