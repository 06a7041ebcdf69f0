"""A generalist campaign checkpoint written before the one-trainer refactor (commit 10dcfb7, `tiny-generalist`
stopped at epoch 4, in tests/golden/campaign) resumes after it: same meta-parameters after two more outer steps,
same log.jsonl lines appended."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer

CAMPAIGN = Path(__file__).parent / "golden" / "campaign"


def test_a_campaign_checkpoint_written_before_the_refactor_resumes_to_the_same_result(tmp_path):
    torch.set_num_threads(1)
    shutil.copy(CAMPAIGN / "checkpoint.pt", tmp_path / "checkpoint.pt")
    shutil.copy(CAMPAIGN / "log.jsonl", tmp_path / "log.jsonl")
    trainer = MetaTrainer(RECIPES.get("tiny-generalist"), tmp_path / "run", campaign=tmp_path)
    trainer.resume(tmp_path / "checkpoint.pt")
    assert trainer.epoch == 4 and trainer.experience == 82
    trainer.run(progress=False, command="test")
    expected = load_file(str(CAMPAIGN / "resumed-meta.safetensors"))
    assert set(expected) == set(trainer.meta)
    for k, v in expected.items():
        assert torch.equal(trainer.meta[k].detach(), v), k
    assert (tmp_path / "log.jsonl").read_text() == (CAMPAIGN / "resumed-log.jsonl").read_text()
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(resumed) == set(torch.load(CAMPAIGN / "checkpoint.pt", weights_only=True))  # the same compact format
