"""Write what LHOPT does after a state_dict round trip (format 2): a run of a random policy whose sampled actions
filled restart registers (policy weights in the state) and a run of the shipped lhopt-small (weights by name and
hash), 40 steps, state_dict, 30 more. Only the continuation is stored (tensors); the test rebuilds the state_dict.
Run on one thread: `python tests/golden/make_lhopt_state.py` (rewrites tests/golden/lhopt-state/)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from lhopt_state_runs import RUNS, continuation, first_part  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    out = HERE / "lhopt-state"
    out.mkdir(exist_ok=True)
    for name in RUNS:
        state_dict, params = first_part(name)
        nxt = continuation(name, params, state_dict)
        tensors = {f"param{i}": p.contiguous() for i, p in enumerate(nxt["params"])}
        tensors["lr"] = torch.tensor(nxt["lr"], dtype=torch.float64)
        tensors["last_observation"] = nxt["last_observation"].contiguous()
        save_file(tensors, str(out / f"{name}-next.safetensors"))
    print(f"wrote LHOPT state_dicts to {out}")


if __name__ == "__main__":
    main()
