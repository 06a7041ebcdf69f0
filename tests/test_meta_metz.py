"""Metz 2019 meta-training end to end on a tiny recipe: the curriculum, exact resume with inner runs in flight,
and meta-training that lowers the meta-loss."""

import dataclasses

import torch

from loptim.meta.curriculum import TruncationCurriculum
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer


def test_curriculum_grows_linearly_with_bounded_jitter():
    curriculum = TruncationCurriculum(start=10, end=30, grow_epochs=100, jitter=0.2)
    assert curriculum.mean_length(0) == 10 and curriculum.mean_length(50) == 20 and curriculum.mean_length(500) == 30
    generator = torch.Generator().manual_seed(0)
    lengths = [curriculum.length(50, generator) for _ in range(200)]
    assert min(lengths) >= 16 and max(lengths) <= 24 and len(set(lengths)) > 4


def _tiny(**changes):
    return dataclasses.replace(RECIPES.get("tiny-metz"), **changes)


def test_resume_with_inner_runs_in_flight_is_bit_for_bit(tmp_path):
    whole = MetaTrainer(_tiny(), tmp_path / "whole")
    whole.run(progress=False)
    first = MetaTrainer(_tiny(), tmp_path / "split")
    assert not first.run(progress=False, stop_at_epoch=4)
    assert any(slot is not None and 0 < slot.step < slot.total_steps for slot in first.slots)
    second = MetaTrainer(_tiny(), tmp_path / "split")
    second.resume()
    assert second.run(progress=False)
    for k in whole.meta:
        assert torch.equal(whole.meta[k], second.meta[k]), k
    assert [h["meta_loss"] for h in whole.history] == [h["meta_loss"] for h in second.history]
    assert (tmp_path / "split" / "best.safetensors").exists()


def test_each_estimator_lowers_the_tiny_meta_loss(tmp_path):
    for mode in ("combined", "es", "rp"):
        recipe = _tiny(estimator=mode, epochs=40, eval_every=40, meta_lr=3e-2)
        trainer = MetaTrainer(recipe, tmp_path / mode)
        before = trainer.evaluate()
        trainer.run(progress=False)
        assert trainer.evaluate() < 0.9 * before, mode
