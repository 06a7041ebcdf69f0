"""Truncation lengths that grow over meta-training (Metz et al. 2019, Sec. 4 and the official
`truncation_strategy.py`): short truncations first, while the optimizer is bad and long unrolls are chaotic, then
linearly longer, each length jittered by +-20% so truncation boundaries do not align across inner runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TruncationCurriculum:
    start: int = 10
    end: int = 50
    grow_epochs: int = 500  # outer steps over which the mean length grows linearly from start to end
    jitter: float = 0.2

    def mean_length(self, epoch: int) -> float:
        fraction = min(1.0, epoch / max(self.grow_epochs, 1))
        return self.start + fraction * (self.end - self.start)

    def length(self, epoch: int, generator: torch.Generator) -> int:
        """The truncation length for outer step `epoch`: mean_length x U(1 - jitter, 1 + jitter), at least 1."""
        u = float(torch.rand((), generator=generator))
        return max(1, round(self.mean_length(epoch) * (1.0 - self.jitter + 2.0 * self.jitter * u)))

    def lengths(self, epoch: int, generator: torch.Generator, slots: int) -> list[int]:
        """One length per run slot (the TruncationSchedule of loptim.meta.parts)."""
        return [self.length(epoch, generator) for _ in range(slots)]
