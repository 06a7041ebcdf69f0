"""What LHOPT wrote before must keep loading and doing what it did: the committed lhopt-wide campaign checkpoint
resumes, and a `loptim.LHOPT` state_dict (format 2), saved and loaded through torch.save, continues exactly as the
code that wrote the golden continuations did (tests/golden/lhopt-state/*-next.safetensors)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from lhopt_state_runs import RUNS, continuation, first_part
from safetensors.torch import load_file

from loptim.meta.lhopt_trainer import LHOPTTrainer
from loptim.meta.recipes import RECIPES

GOLDEN = Path(__file__).parent / "golden"
CAMPAIGN = Path(__file__).parent.parent / "campaigns" / "lhopt-wide" / "checkpoint.pt"


def test_the_lhopt_wide_campaign_checkpoint_resumes(tmp_path):
    path = CAMPAIGN
    saved = torch.load(path, weights_only=True)
    trainer = LHOPTTrainer(RECIPES.get("lhopt-wide"), tmp_path)
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    trainer.resume(path)
    policy = trainer.policy.state_dict()
    assert set(policy) == set(saved["policy"])
    for name, value in saved["policy"].items():
        assert torch.equal(policy[name], value), name
    assert any(not torch.equal(before[k], policy[k]) for k in before)  # resuming changed the fresh policy
    assert trainer.epoch == saved["epoch"] > 0 and trainer.inner_steps == saved["inner_steps"]
    assert trainer.best_epoch == saved["best_epoch"] and trainer.best_score == saved["best_score"]
    optimizer = trainer.optimizer.state_dict()["state"]
    for index, state in saved["optimizer"]["state"].items():
        assert torch.equal(optimizer[index]["exp_avg"], state["exp_avg"])


@pytest.mark.parametrize("name", RUNS)
def test_lhopt_state_dicts_load_and_continue_as_they_did(name, monkeypatch):
    monkeypatch.setenv("LOPTIM_KERNELS", "0")  # the golden continuations are the reference path's, to 1e-7
    state_dict, params = first_part(name)
    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "params": params}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved["state_dict"]["loptim"]["format"] == 2
    expected = load_file(str(GOLDEN / "lhopt-state" / f"{name}-next.safetensors"))
    got = continuation(name, saved["params"], saved["state_dict"])
    for i, a in enumerate(got["params"]):
        torch.testing.assert_close(a, expected[f"param{i}"], rtol=1e-6, atol=1e-7)
    assert got["lr"] == pytest.approx(float(expected["lr"]), rel=1e-9)
    torch.testing.assert_close(got["last_observation"], expected["last_observation"], rtol=1e-6, atol=1e-7)
