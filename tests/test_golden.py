"""Refactors keep results: meta-training reproduces the committed golden meta-parameters bit for bit, and every
shipped weight file its first 10 updates (within float tolerance). Regenerate only for a deliberate change of
numerics: `python tests/golden/make_golden.py`."""

from __future__ import annotations

from pathlib import Path

import torch
from golden_runs import first_updates, meta_training
from safetensors.torch import load_file

GOLDEN = Path(__file__).parent / "golden"


def test_meta_training_reproduces_the_golden_meta_parameters_bit_for_bit(tmp_path):
    for name, meta in meta_training(tmp_path).items():
        golden = load_file(str(GOLDEN / f"meta-{name}.safetensors"))
        assert set(golden) == set(meta), name
        for k, v in meta.items():
            assert torch.equal(v, golden[k]), (name, k)


def test_shipped_weights_reproduce_their_first_updates():
    golden = load_file(str(GOLDEN / "first-updates.safetensors"))
    got = first_updates()
    assert set(golden) == set(got)
    for name, steps in got.items():
        torch.testing.assert_close(steps, golden[name], rtol=1e-5, atol=1e-6, msg=name)
