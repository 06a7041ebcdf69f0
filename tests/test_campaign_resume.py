"""A generalist campaign stopped at epoch 4 (`tiny-generalist`) and resumed from its compact checkpoint alone ends
with the meta-parameters and log.jsonl that the code before the one-trainer refactor produced (commit 10dcfb7:
tests/golden/campaign); the committed mlp-generalist campaign checkpoint resumes."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer

CAMPAIGN = Path(__file__).parent / "golden" / "campaign"


def test_a_stopped_campaign_resumes_from_its_compact_checkpoint_to_the_golden_result(tmp_path):
    torch.set_num_threads(1)
    recipe = RECIPES.get("tiny-generalist")
    MetaTrainer(recipe, tmp_path / "first", campaign=tmp_path).run(progress=False, stop_at_epoch=4, command="test")
    written = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    trainer = MetaTrainer(recipe, tmp_path / "run", campaign=tmp_path)  # another machine: only the campaign folder
    trainer.resume(tmp_path / "checkpoint.pt")
    assert trainer.epoch == 4 and trainer.experience == 82
    trainer.run(progress=False, command="test")
    expected = load_file(str(CAMPAIGN / "resumed-meta.safetensors"))
    assert set(expected) == set(trainer.meta)
    for k, v in expected.items():
        assert torch.equal(trainer.meta[k].detach(), v), k
    assert (tmp_path / "log.jsonl").read_text() == (CAMPAIGN / "resumed-log.jsonl").read_text()
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(resumed) == set(written)  # the same compact format


def test_the_committed_generalist_campaign_checkpoint_resumes(tmp_path):
    path = Path(__file__).parent.parent / "campaigns" / "mlp-generalist" / "checkpoint.pt"
    saved = torch.load(path, weights_only=True)
    trainer = MetaTrainer(RECIPES.get("mlp-generalist"), tmp_path, campaign=tmp_path / "campaign")
    trainer.resume(path)
    assert trainer.epoch == saved["epoch"] > 0 and trainer.best_score == saved["best_score"]
    for k, v in saved["meta"].items():
        assert torch.equal(trainer.meta[k].detach(), v), k
