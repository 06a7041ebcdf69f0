"""What LHOPT wrote before must keep loading: the lhopt-wide campaign's compact checkpoint (written by the code it
was started with) resumes, and state_dicts of `loptim.LHOPT` (format 2) load and continue as they did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lhopt_state_runs import RUNS, continuation

from loptim.meta.lhopt_trainer import LHOPTTrainer
from loptim.meta.recipes import RECIPES

GOLDEN = Path(__file__).parent / "golden"


def test_the_lhopt_wide_campaign_checkpoint_resumes(tmp_path):
    path = GOLDEN / "lhopt-campaign" / "checkpoint.pt"
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
def test_lhopt_state_dicts_written_before_load_and_continue_as_they_did(name):
    saved = torch.load(GOLDEN / "lhopt-state" / f"{name}.pt", weights_only=True)
    expected = torch.load(GOLDEN / "lhopt-state" / f"{name}-next.pt", weights_only=True)
    assert saved["state_dict"]["loptim"]["format"] == 2
    got = continuation(name, saved["params"], saved["state_dict"])
    for a, b in zip(got["params"], expected["params"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert got["lr"] == pytest.approx(expected["lr"], rel=1e-9)
    torch.testing.assert_close(got["last_observation"], expected["last_observation"], rtol=1e-6, atol=1e-7)
