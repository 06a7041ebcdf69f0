"""The README's multi-node command, run: two torchrun launchers of one rank each, as two nodes rendezvousing over
c10d on the loopback address, give the single-process meta-training result bit for bit."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

RECIPE = ["meta-train", "mlp", "--recipe", "tiny-metz"]  # Metz 2019, combined estimator, 2 slots: one per rank
LIMIT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_two_torchrun_nodes_give_the_single_process_result_bit_for_bit(tmp_path):
    env = {**os.environ, "LOPTIM_DIST_TIMEOUT": "60"}
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "loptim.cli", "--threads", "1", *RECIPE, "--out", str(single)], env=env,
                   check=True, capture_output=True, timeout=LIMIT_S)  # fmt: skip
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [tmp_path / f"node{i}" for i in range(2)]
    launch = [*_torchrun(), "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}",
              "--rdzv_id=loptim-test", "--max-restarts=0", "-m", "loptim.cli", *RECIPE]  # fmt: skip
    logs = [open(tmp_path / f"node{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([*launch, "--out", str(node)], env=env, stdout=log, stderr=log)
             for node, log in zip(nodes, logs)]  # fmt: skip
    try:
        codes = [proc.wait(timeout=LIMIT_S) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
        for log in logs:
            log.close()
    assert codes == [0, 0], [(tmp_path / f"node{i}.log").read_text()[-2000:] for i in range(2)]
    # Rank 0 (whichever launcher the rendezvous gave it to) writes the outputs; the other node writes nothing.
    written = [node for node in nodes if (node / "checkpoint.pt").exists()]
    assert len(written) == 1
    for name in ("best.safetensors",):
        expected, got = load_file(str(single / name)), load_file(str(written[0] / name))
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    final = [torch.load(d / "checkpoint.pt", weights_only=False)["meta"] for d in (single, written[0])]
    assert final[0].keys() == final[1].keys() and all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    assert final[0]["w1"].abs().sum() > 0
