"""A small residual CNN (He et al. 2016, Sec. 3-4) on 28x28 images, as a pure function of a parameter dict.

No batch normalization (the tasks must stay pure functions of their parameters); instead each residual branch's
last convolution starts at zero (SkipInit / Fixup, De & Smith 2020; Zhang et al. 2019), so every block starts as
the identity and the network trains stably at any depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from loptim.tasks.base import Params
from loptim.tasks.image import ImageTask


@dataclass(frozen=True)
class ResNetConfig:
    """Stem conv (stride 2) to `channels[0]`, then per stage: a stride-2 conv to the stage width (after the first
    stage) and `blocks` residual blocks of two 3x3 convs; global average pool and a linear head."""

    dataset: str = "fashion-mnist"
    channels: tuple[int, ...] = (16, 32)
    blocks: int = 1
    batch_size: int = 64
    steps: int = 500

    def __post_init__(self) -> None:
        if not self.channels or min(*self.channels, self.blocks, self.batch_size, self.steps) < 1:
            raise ValueError(f"every size of {self} must be positive")


class ResNetTask(ImageTask):
    """Standardized images -> stem -> residual stages -> mean pool -> 10 logits (He init, zero-init branch ends)."""

    standardize = True
    eval_limit = 2000  # validation is ~21 passes per run: a subset keeps it cheap (docs/design.md, performance facts)

    def __init__(self, config: ResNetConfig = ResNetConfig(), name: str | None = None) -> None:
        self.config = config
        self.dataset = config.dataset
        self.name = name or f"{config.dataset}-resnet-" + "x".join(map(str, config.channels)) + f"-b{config.blocks}"
        self.default_steps = config.steps
        self.batch_size = config.batch_size
        self.data_source = config.dataset

    def init(self, generator: torch.Generator) -> Params:
        def conv(out_channels: int, in_channels: int) -> Tensor:
            return torch.randn(out_channels, in_channels, 3, 3, generator=generator) * math.sqrt(
                2.0 / (9 * in_channels)
            )

        c = self.config
        params = {"stem.weight": conv(c.channels[0], 1), "stem.bias": torch.zeros(c.channels[0])}
        width = c.channels[0]
        for s, stage_width in enumerate(c.channels):
            if s > 0:
                params[f"stage{s}.down.weight"] = conv(stage_width, width)
                params[f"stage{s}.down.bias"] = torch.zeros(stage_width)
                width = stage_width
            for b in range(c.blocks):
                prefix = f"stage{s}.block{b}."
                params[prefix + "conv1.weight"], params[prefix + "conv1.bias"] = conv(width, width), torch.zeros(width)
                params[prefix + "conv2.weight"] = torch.zeros(width, width, 3, 3)
                params[prefix + "conv2.bias"] = torch.zeros(width)
        params["head.weight"] = torch.randn(width, 10, generator=generator) / math.sqrt(width)
        params["head.bias"] = torch.zeros(10)
        return params

    def logits(self, params: Params, images: Tensor) -> Tensor:
        c = self.config
        x = images.reshape(images.shape[0], 1, 28, 28)
        x = torch.relu(F.conv2d(x, params["stem.weight"], params["stem.bias"], stride=2, padding=1))
        for s in range(len(c.channels)):
            if s > 0:
                x = torch.relu(F.conv2d(x, params[f"stage{s}.down.weight"], params[f"stage{s}.down.bias"], 2, 1))
            for b in range(c.blocks):
                p = f"stage{s}.block{b}."
                h = torch.relu(F.conv2d(x, params[p + "conv1.weight"], params[p + "conv1.bias"], padding=1))
                x = torch.relu(x + F.conv2d(h, params[p + "conv2.weight"], params[p + "conv2.bias"], padding=1))
        return torch.addmm(params["head.bias"], x.mean(dim=(2, 3)), params["head.weight"])
