"""Meta-training on 2 ranks (gloo, localhost) against 1 rank: the same meta-parameters bit for bit for truncated
backprop, ES, reparameterization, the combined estimator and PPO; resume across world sizes (2 -> 1 and, through
the CLI, 1 -> 2); a rank that dies makes the other fail within the collective timeout instead of hanging.

One launch of 2 ranks runs every job (tests/distributed_worker.py); the 1-rank references run in this process.
Equality is exact because every rank reduces the same per-sample results in global sample order (one torch
thread everywhere), so no float sum is ever reordered by the split.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from loptim.meta import distributed as dist

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 20  # LOPTIM_DIST_TIMEOUT of the launched ranks
LAUNCH_LIMIT_S = 150  # a launch that outlives this hung: the test fails instead of waiting forever

_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

# name -> (trainer, recipe, changes): 3 outer steps each; "es" splits 3 inner runs unevenly (1 + 2)
RUNS = {
    "l2l": ("lstm", "tiny-quadratic", {"epochs": 3, "meta_batch": 2}),
    "metz-es": ("mlp", "tiny-metz", {"epochs": 3, "estimator": "es", "unrolls": 3}),
    "metz-rp": ("mlp", "tiny-metz", {"epochs": 3, "estimator": "rp"}),
    "metz-combined": ("mlp", "tiny-metz", {"epochs": 3}),
    "metz-balanced": ("mlp", "tiny-metz", {"epochs": 3, "unrolls": 3}),  # carried runs move between ranks
    "lhopt": ("lhopt", "tiny-lhopt", {}),
}


# Slot costs forced on each epoch of "metz-balanced": longest first onto the least-loaded rank moves live runs.
COSTS = [[1.0, 1.0, 5.0], [5.0, 1.0, 1.0], [1.0, 5.0, 1.0]]


def _job(name, out, **extra):
    trainer, recipe, changes = RUNS[name]
    return {"trainer": trainer, "recipe": recipe, "changes": changes, "out": str(out), **extra}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(jobs, directory, world=2):
    """Run `jobs` on `world` local ranks; (return codes, seconds each rank ran, logs)."""
    spec = directory / "jobs.json"
    spec.write_text(json.dumps(jobs))
    port, start, procs, logs = _free_port(), time.monotonic(), [], []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "LOPTIM_DIST_TIMEOUT": str(TIMEOUT_S), "LOPTIM_DIST_DEBUG": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
        logs.append(directory / f"rank{rank}.log")
        with open(logs[-1], "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(spec)], env=env, stdout=log, stderr=log))
    ended = [None] * world
    while None in ended and time.monotonic() - start < LAUNCH_LIMIT_S:
        for rank, proc in enumerate(procs):
            if ended[rank] is None and proc.poll() is not None:
                ended[rank] = time.monotonic() - start
        time.sleep(0.05)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return [p.returncode for p in procs], ended, [log.read_text() for log in logs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every 1-rank reference in this process, then one 2-rank launch of the same jobs, resumes and a crash."""
    base = tmp_path_factory.mktemp("dist")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name in RUNS:
            worker.run_job(_job(name, base / f"{name}-1"))
        worker.run_job(_job("lhopt", base / "lhopt-resumed-on-2", stop_at_epoch=2))
        jobs = [
            _job(name, base / f"{name}-2", **({"costs": COSTS} if name == "metz-balanced" else {})) for name in RUNS
        ]
        jobs.append(_job("metz-combined", base / "metz-resumed-on-1", stop_at_epoch=2))
        resume_cli = ["meta-train", "lhopt", "--recipe", "tiny-lhopt", "--out", str(base / "lhopt-resumed-on-2")]
        jobs.append({"cli": [*resume_cli, "--resume"]})
        jobs.append(_job("metz-combined", base / "crash", die={"rank": 1, "epoch": 1}))
        codes, ended, logs = _launch(jobs, base)
        assert (base / "metz-resumed-on-1" / "checkpoint.pt").exists(), logs
        worker.run_job(_job("metz-combined", base / "metz-resumed-on-1", resume=True))
    finally:
        torch.set_num_threads(threads)
    return base, codes, ended, logs


def _checkpoint(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)


def _assert_same_run(a, b):
    """Bit-for-bit the same meta-parameters (or policy), outer optimizer state and history."""
    one, two = _checkpoint(a), _checkpoint(b)
    assert one["epoch"] == two["epoch"] == 3
    params = "meta" if "meta" in one else "policy"
    for k, v in one[params].items():
        assert torch.equal(v, two[params][k]), k
    optimizer = "adam" if "adam" in one else "optimizer"
    assert one[optimizer]["state"], "no outer step was taken: nothing was compared"
    for index, state in one[optimizer]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, two[optimizer]["state"][index][key]), (index, key)

    def records(ckpt):  # as text, so that NaN statistics compare equal
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in ckpt["history"]])

    assert records(one) == records(two)
    assert one["best_score"] == two["best_score"]


@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_give_the_one_rank_meta_parameters_bit_for_bit(runs, name):
    base, *_ = runs
    _assert_same_run(base / f"{name}-1", base / f"{name}-2")


def test_balancing_moves_carried_runs_between_ranks_and_changes_nothing(runs):
    base, *_ = runs
    owners = [json.loads(line) for line in (base / "metz-balanced-2" / "owners.jsonl").read_text().splitlines()]
    assert owners == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]  # each epoch moves two slots (contiguous: [0, 1, 1])
    _assert_same_run(base / "metz-balanced-1", base / "metz-balanced-2")  # and the result is the 1-rank one


def test_longest_first_balancing_known_answers():
    assert dist.balanced([1.0, 1.0, 5.0], world=2) == [1, 1, 0]
    assert dist.balanced([3.0, 3.0, 2.0, 2.0, 2.0], world=2) == [0, 1, 0, 1, 0]  # loads 7 and 5 (contiguous: 8, 4)
    assert dist.balanced([2.0, 2.0], world=3) == [0, 1]
    assert dist.gather_indexed([2, 0, 1], ["c", "a", "b"]) == ["a", "b", "c"]  # alone: index order


def test_a_checkpoint_holds_every_inner_run_whatever_rank_advanced_it(runs):
    base, *_ = runs
    slots = _checkpoint(base / "metz-es-2")["slots"]
    assert len(slots) == 3 and all(s is not None and s["step"] > 0 for s in slots)
    for mine, theirs in zip(slots, _checkpoint(base / "metz-es-1")["slots"]):
        assert mine["task_seed"] == theirs["task_seed"] and mine["step"] == theirs["step"]
        assert all(torch.equal(v, theirs["params"][k]) for k, v in mine["params"].items())


def test_resume_across_world_sizes_repeats_the_uninterrupted_run(runs):
    base, *_ = runs
    _assert_same_run(base / "metz-combined-1", base / "metz-resumed-on-1")  # 2 ranks for 2 steps, then 1
    _assert_same_run(base / "lhopt-1", base / "lhopt-resumed-on-2")  # 1 rank for 2 steps, then 2 via the CLI
    commands = _checkpoint(base / "lhopt-resumed-on-2")["commands"]
    assert commands[-1].startswith("torchrun --nproc_per_node=2 loptim meta-train lhopt")


def test_a_rank_that_dies_makes_the_other_fail_loudly_not_hang(runs):
    base, codes, ended, logs = runs
    assert codes[1] == worker.DIED_EXIT_CODE and ended[1] is not None, logs[1]
    assert codes[0] not in (0, None) and ended[0] is not None, "rank 0 hung after rank 1 died"
    assert ended[0] - ended[1] < TIMEOUT_S + 30  # gave up within the collective timeout (plus exit time)
    assert "CollectiveError" in logs[0] and "another rank died" in logs[0]
    assert not (base / "crash" / "checkpoint.pt").exists()  # the crash came before the first checkpoint


def test_shards_cover_every_index_once_in_order():
    for n in range(7):
        for world in (1, 2, 3, 4):
            indices = [i for r in range(world) for i in dist.shard(n, r, world)]
            assert indices == list(range(n)), (n, world)


def test_checksum_sees_a_one_ulp_change_and_alone_every_helper_is_the_identity():
    a = {"w": torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), "b": torch.zeros(())}
    b = {"w": a["w"].clone(), "b": torch.zeros(())}
    assert dist.checksum(a) == dist.checksum(b)
    b["w"][1, 2] = torch.nextafter(b["w"][1, 2], torch.tensor(1e9))
    assert dist.checksum(a) != dist.checksum(b)
    assert dist.world_size() == 1 and dist.is_main() and list(dist.my_indices(3)) == [0, 1, 2]
    assert dist.gather_samples([1, 2]) == [1, 2] and dist.broadcast("x") == "x"
    assert dist.map_samples(3, lambda i: i * i) == [0, 1, 4]
