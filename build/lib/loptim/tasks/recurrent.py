"""Recurrent token language models (GRU, LSTM) on the text corpora, as pure functions of a parameter dict.

The recurrent layers are torch's fused `nn.GRU` / `nn.LSTM` run through `torch.func.functional_call`, so the
parameters stay a plain dict (differentiable for meta-training unrolls) while the recurrence runs in C++.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn
from torch.func import functional_call

from loptim.tasks.base import Params
from loptim.tasks.data.base import TextSplits
from loptim.tasks.text import CORPORA, CharLMTask, load_corpus

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def rnn_module(cell: str, input_size: int, hidden: int, layers: int) -> nn.Module:
    """The batch-first recurrent module whose parameter names the params dict uses (as `rnn.<name>`)."""
    if cell not in CELLS:
        raise ValueError(f"unknown recurrent cell '{cell}'; use one of {', '.join(CELLS)}")
    return CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True, device="meta")


def init_rnn(module: nn.Module, generator: torch.Generator) -> Params:
    """torch's default RNN init, U(-1/sqrt(hidden), 1/sqrt(hidden)) for every weight and bias, drawn from
    `generator`; an LSTM's forget-gate biases start at 1 (Jozefowicz et al. 2015)."""
    bound = 1.0 / math.sqrt(module.hidden_size)
    params = {}
    for name, param in module.named_parameters():
        value = (torch.rand(param.shape, generator=generator) * 2.0 - 1.0) * bound
        if isinstance(module, nn.LSTM) and name.startswith("bias_ih"):
            value[module.hidden_size : 2 * module.hidden_size] = 1.0
        params[f"rnn.{name}"] = value
    return params


def run_rnn(module: nn.Module, params: Params, inputs: Tensor) -> Tensor:
    """(B, T, input) -> (B, T, hidden) outputs of `module` with the `rnn.*` entries of `params`."""
    weights = {name[4:]: value for name, value in params.items() if name.startswith("rnn.")}
    outputs, _ = functional_call(module, weights, (inputs,))
    return outputs


@dataclass(frozen=True)
class RNNLMConfig:
    """An embedding -> GRU/LSTM -> linear next-token model over windows of `context` tokens."""

    corpus: str = "shakespeare"
    cell: str = "gru"
    embed: int = 32
    hidden: int = 128
    layers: int = 1
    context: int = 64
    batch_size: int = 32
    default_steps: int = 500

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"unknown corpus '{self.corpus}'; use one of {', '.join(CORPORA)}")
        if self.cell not in CELLS:
            raise ValueError(f"unknown recurrent cell '{self.cell}'; use one of {', '.join(CELLS)}")
        if min(self.embed, self.hidden, self.layers, self.context, self.batch_size, self.default_steps) < 1:
            raise ValueError(f"every size of {self} must be positive")


class RNNLMTask(CharLMTask):
    """Mean next-token cross-entropy of a recurrent LM; windows, batches and evaluation sets as CharLMTask's."""

    def __init__(
        self,
        config: RNNLMConfig = RNNLMConfig(),
        name: str | None = None,
        loader: Callable[[], TextSplits] | None = None,
    ) -> None:
        c = self.config = config
        sizes = f"e{c.embed}-h{c.hidden}-l{c.layers}-c{c.context}-b{c.batch_size}-s{c.default_steps}"
        self.name = name or f"{c.corpus.replace('-', '')}-{c.cell}-{sizes}"
        self.default_steps = c.default_steps
        self.batch_size = c.batch_size
        self.data_source = c.corpus
        self._loader = loader or (lambda: load_corpus(c.corpus))

    @cached_property
    def rnn(self) -> nn.Module:
        c = self.config
        return rnn_module(c.cell, c.embed, c.hidden, c.layers)

    def init(self, generator: torch.Generator) -> Params:
        c, vocab = self.config, self.vocab_size
        params = {"embed": torch.randn(vocab, c.embed, generator=generator) * 0.1}
        params.update(init_rnn(self.rnn, generator))
        params["head.weight"] = torch.randn(c.hidden, vocab, generator=generator) / math.sqrt(c.hidden)
        params["head.bias"] = torch.zeros(vocab)
        return params

    def logits(self, params: Params, inputs: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, vocab) next-token logits, each position reading only the tokens before it."""
        outputs = run_rnn(self.rnn, params, params["embed"][inputs])
        return outputs @ params["head.weight"] + params["head.bias"]
