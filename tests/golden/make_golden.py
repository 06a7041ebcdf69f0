"""Write the golden outputs that refactors must reproduce: meta-parameters after 3 epochs of L2L meta-training
(`lstm-mnist`) and 3 outer steps of Metz meta-training (`mlp-mnist`), and the first 10 updates of every shipped
weight file on a fixed problem. Run on one thread: `python tests/golden/make_golden.py` (rewrites the files)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from golden_runs import first_updates, meta_training  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, meta in meta_training(Path(tmp)).items():
            save_file({k: v.contiguous() for k, v in meta.items()}, str(HERE / f"meta-{name}.safetensors"))
    save_file(first_updates(), str(HERE / "first-updates.safetensors"))
    print(f"wrote golden outputs to {HERE}")


if __name__ == "__main__":
    main()
