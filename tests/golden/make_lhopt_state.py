"""Write LHOPT state_dicts (format 2) that later code must keep loading, with what the optimizer did next: a run of
a random policy whose sampled actions filled restart registers (policy weights in the state) and a run of the
shipped lhopt-small (weights by name and hash). Run on one thread: `python tests/golden/make_lhopt_state.py`
(rewrites tests/golden/lhopt-state/)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from lhopt_state_runs import RUNS, continuation, first_part  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    out = HERE / "lhopt-state"
    out.mkdir(exist_ok=True)
    for name in RUNS:
        state_dict, params = first_part(name)
        torch.save({"state_dict": state_dict, "params": params}, out / f"{name}.pt")
        torch.save(continuation(name, params, state_dict), out / f"{name}-next.pt")
    print(f"wrote LHOPT state_dicts to {out}")


if __name__ == "__main__":
    main()
