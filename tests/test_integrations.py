"""The three learned optimizers in the trainers people use: PyTorch Lightning and Hugging Face `Trainer`.

Each trains, and a run resumed from the framework's own checkpoint ends exactly where the uninterrupted run does.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from torch import nn

import loptim

lightning = pytest.importorskip("lightning", reason="the test extra installs lightning")
transformers = pytest.importorskip("transformers", reason="the test extra installs transformers")

from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from loptim.integrations.huggingface import LossObservingTrainer  # noqa: E402
from loptim.integrations.lightning import LHOPTLossCallback  # noqa: E402

KINDS = ("lstm", "mlp", "lhopt")
STEPS = 12


def make(kind: str, params, total_steps: int):
    if kind == "lstm":
        return loptim.LSTMOptimizer(params)
    if kind == "mlp":
        return loptim.MLPOptimizer(params)
    return loptim.LHOPT(params, total_steps=total_steps, decisions=4)


@pytest.fixture(autouse=True)
def quiet_one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------ Lightning


def _dataset(size: int = 48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size, 6, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())


class TinyClassifier(LightningModule):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = make(self.kind, self.parameters(), STEPS)
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / (2 * STEPS))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self):
        return torch.utils.data.DataLoader(_dataset(), batch_size=8, shuffle=False)


def _lightning_fit(kind: str, root, ckpt_path=None) -> TinyClassifier:
    """STEPS steps (two epochs of 6 batches); a checkpoint at the end of each epoch, as ModelCheckpoint writes it."""
    module = TinyClassifier(kind)
    checkpoints = ModelCheckpoint(dirpath=root, every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True)
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[LHOPTLossCallback(), checkpoints],
    )
    trainer.fit(module, ckpt_path=ckpt_path)
    return module


@pytest.mark.parametrize("kind", KINDS)
def test_lightning_trains_and_resumes_from_its_checkpoint_exactly(kind, tmp_path):
    initial = {k: v.clone() for k, v in TinyClassifier(kind).state_dict().items()}
    full = _lightning_fit(kind, tmp_path / "full")
    assert any(not torch.equal(initial[k], v) for k, v in full.state_dict().items())
    halfway = tmp_path / "full" / f"epoch=0-step={STEPS // 2}.ckpt"
    resumed = _lightning_fit(kind, tmp_path / "resumed", ckpt_path=halfway)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_lightning_16_bit_mixed_precision_feeds_lhopt_through_the_callback(tmp_path):
    """`precision="bf16-mixed"` on the CPU: the precision plugin calls the closure itself, then step() without it."""
    module = TinyClassifier("lhopt")
    trainer = Trainer(
        max_steps=4,
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[LHOPTLossCallback()],
    )
    trainer.fit(module)
    assert trainer.optimizers[0].step_count == 4


# ------------------------------------------------------------------------------------------- Hugging Face


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, size: int = 48, length: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 32, (size, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def _tiny_lm():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    return transformers.GPT2LMHeadModel(config)


def _hf_train(kind: str, out, resume=None) -> nn.Module:
    model = _tiny_lm()
    opt = make(kind, model.parameters(), STEPS)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / (2 * STEPS))
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=STEPS // 2,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = LossObservingTrainer(model=model, args=args, train_dataset=_Tokens(), optimizers=(opt, scheduler))
    trainer.train(resume_from_checkpoint=resume)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_hugging_face_trainer_trains_and_resumes_from_its_checkpoint_exactly(kind, tmp_path):
    initial = {k: v.clone() for k, v in _tiny_lm().state_dict().items()}
    full = _hf_train(kind, tmp_path / "full")
    assert any(not torch.equal(initial[k], v) for k, v in full.state_dict().items())
    resumed = _hf_train(kind, tmp_path / "resumed", resume=str(tmp_path / "full" / f"checkpoint-{STEPS // 2}"))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
