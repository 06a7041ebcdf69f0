"""benchmarks/l2l/run_summary.py: the committed summary of a run says what its files hold (known answers)."""

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from loptim.pretrained import resolve

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "l2l" / "run_summary.py"


def _module():
    spec = importlib.util.spec_from_file_location("run_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_keeps_every_evaluation_and_compares_the_best_weights_bit_for_bit(tmp_path):
    run_summary = _module()
    shipped = resolve("lstm-mnist-mb2")
    (tmp_path / "best.safetensors").write_bytes(shipped.read_bytes())
    (tmp_path / "best.json").write_text(json.dumps({"command": "c", "best_epoch": 24, "epochs_run": 50}))
    history = [{"epoch": 0, "meta_loss": 2.0, "seconds": 1.0}, {"epoch": 24, "eval_score": 0.5, "seconds": 9.0},
               {"epoch": 49, "eval_score": 0.7, "seconds": 19.0}]  # fmt: skip
    (tmp_path / "history.json").write_text(json.dumps(history))
    result = run_summary.summary(tmp_path, "lstm-mnist-mb2")
    assert [e["epoch"] for e in result["evaluations"]] == [24, 49]
    assert result["best_epoch"] == 24 and result["best_weights_equal_shipped_lstm-mnist-mb2"] is True

    # One entry changed by one ulp: no longer the same weights.
    weights = run_summary.load_file(str(shipped))
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = torch.nextafter(weights[name].view(-1)[0], torch.tensor(float("inf")))
    save_file(weights, str(tmp_path / "best.safetensors"))
    assert run_summary.summary(tmp_path, "lstm-mnist-mb2")["best_weights_equal_shipped_lstm-mnist-mb2"] is False
