"""One MetaTrainer, recipes as compositions of parts: the LSTM core (L2L) meta-trained by antithetic ES, a
combination no trainer was written for, lowers its meta-objective."""

from __future__ import annotations

import dataclasses

import torch

from loptim.meta.curriculum import TruncationCurriculum
from loptim.meta.estimators import SmoothedEstimator
from loptim.meta.parts import CarriedRuns
from loptim.meta.recipes import RECIPES
from loptim.meta.trainer import MetaTrainer
from loptim.optimizers.lstm import LSTMOptimizerNet


def test_the_lstm_core_under_es_lowers_its_meta_objective(tmp_path):
    torch.set_num_threads(1)
    recipe = dataclasses.replace(
        RECIPES.get("lstm-es-quadratic"),
        inner_steps=(20, 20),
        unrolls=4,
        curriculum=TruncationCurriculum(start=10, end=10, grow_epochs=1, jitter=0.0),
        epochs=30,
        eval_every=30,
        eval_tasks=2,
        meta_lr=3e-2,
    )
    trainer = MetaTrainer(recipe, tmp_path)
    assert isinstance(trainer.net, LSTMOptimizerNet) and isinstance(trainer.estimator, SmoothedEstimator)
    assert trainer.estimator.mode == "es" and isinstance(trainer.parts.runs, CarriedRuns)
    before = trainer.evaluate()
    trainer.run(progress=False, command="test")
    assert trainer.evaluate() < 0.8 * before
    losses = [h["meta_loss"] for h in trainer.history]
    assert sum(losses[-10:]) < sum(losses[:10])
    assert (tmp_path / "best.json").exists()
