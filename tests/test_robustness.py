"""The harness at its edges: bad counts rejected in one line, named weights checked before any run, and worker
processes that exit when their parent is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from loptim.cli import main
from loptim.evaluate import tuning


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


BENCH = ["bench", "quadratic", "--optimizers", "sgd", "--seeds", "1", "--steps", "3", "--workers", "1"]
SUITE = ["suite", "--quick", "--workers", "1"]


def replaced(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


@pytest.mark.parametrize("value", ["0", "-2"])
@pytest.mark.parametrize(
    "command, flag",
    [
        (BENCH, "--steps"),
        (BENCH, "--seeds"),
        (BENCH, "--lr-points"),
        (BENCH, "--workers"),
        (SUITE, "--steps"),
        (SUITE, "--lr-points"),
        (SUITE, "--workers"),
    ],
)
def test_counts_must_be_positive(command, flag, value, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(tuning, "run_jobs", lambda jobs, **kw: ran.extend(jobs) or [])
    assert main(replaced(command, flag, value) + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {flag} must be a positive integer, got {value}"
    assert ran == [] and not any(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["0", "-1"])
def test_threads_must_be_positive(value, capsys):
    assert main(["--threads", value, "tasks"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --threads must be a positive integer, got {value}"


@pytest.mark.parametrize(
    "label, message",
    [
        ("mlp:no-such-weights", "no shipped weights 'no-such-weights'"),
        ("mlp:lstm-mnist", "holds 'lstm' weights, not 'mlp'"),
        ("lstm:/nowhere/w.safetensors", "does not exist"),
        ("adam:lstm-mnist", "only learned optimizers"),
    ],
)
def test_named_weights_are_checked_before_the_grid(label, message, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(tuning, "run_jobs", lambda jobs, **kw: ran.extend(jobs) or [])
    for command in (BENCH, SUITE):
        assert main(replaced(command, "--optimizers", f"adam,{label}") + ["--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert ran == []  # not one run of the grid started


PARENT = textwrap.dedent(
    """
    import os, sys, time
    from loptim.evaluate.jobs import worker_pool

    if __name__ == "__main__":
        pool = worker_pool(2)
        assert pool.submit(os.getpid).result() > 0  # the workers are up
        futures = [pool.submit(time.sleep, 120) for _ in range(2)]  # busy far longer than the test waits
        print("ready", flush=True)
        time.sleep(120)
    """
)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's reaping is missing


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc (Linux)")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    workers: list[int] = []
    try:
        assert parent.stdout.readline().strip() == "ready"
        workers = children(parent.pid)
        assert len(workers) >= 2, "the pool's two workers (and perhaps a resource tracker)"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10  # each worker polls its parent every 0.5 s
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "a worker outlived its killed parent"
    finally:
        for pid in [parent.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
