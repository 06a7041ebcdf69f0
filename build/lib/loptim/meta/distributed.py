"""Meta-training on several processes with torch.distributed: initialization from torchrun's environment, which
global samples this rank owns, gathering per-sample results in global order, and an identical-parameters check.

A single process (no WORLD_SIZE, or WORLD_SIZE=1) needs no launcher and no process group: every helper then acts
on the one rank. Results are reduced by every rank from per-sample results in global sample order, never by an
all-reduce of partial sums, so an outer step is bit for bit the same on any number of ranks.

Environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (set by torchrun); LOPTIM_DIST_TIMEOUT (seconds, default
300) bounds every collective, so a dead rank makes the others raise instead of hanging; LOPTIM_DIST_DEBUG=1
checks after every outer step that all ranks hold identical parameters.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 300.0


class DistributedMismatchError(RuntimeError):
    """Ranks disagree on what must be identical (parameters after an outer step)."""


class CollectiveError(RuntimeError):
    """A collective failed: another rank died, or did not arrive within LOPTIM_DIST_TIMEOUT."""


def _collective(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except (RuntimeError, ConnectionError) as error:
        raise CollectiveError(
            f"rank {dist.get_rank()}/{dist.get_world_size()}: {what} failed ({error}); another rank died or did not "
            f"arrive within LOPTIM_DIST_TIMEOUT={timeout_seconds():g} s: see that rank's log"
        ) from error


def timeout_seconds() -> float:
    """The collective timeout: env LOPTIM_DIST_TIMEOUT in seconds, default 300."""
    value = os.environ.get("LOPTIM_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"LOPTIM_DIST_TIMEOUT must be a number of seconds, got '{value}'") from None
    if seconds <= 0:
        raise ValueError(f"LOPTIM_DIST_TIMEOUT must be positive, got {seconds}")
    return seconds


def debug_enabled() -> bool:
    return os.environ.get("LOPTIM_DIST_DEBUG", "0") not in ("", "0")


def init_from_env() -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl with CUDA); True when this call created it
    (the caller then owns `shutdown`), False when running alone or already joined."""
    if dist.is_available() and dist.is_initialized():
        return False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: launch with torchrun")
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run with WORLD_SIZE=1")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_seconds()))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def shutdown() -> None:
    """Leave the process group (no-op when alone)."""
    if _active():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def local_world_size() -> int:
    """Ranks on this machine (torchrun's LOCAL_WORLD_SIZE): how many share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) if _active() else 1


def is_main() -> bool:
    """Rank 0: the one that prints, writes checkpoints and exports."""
    return rank() == 0


def shard(n: int, of_rank: int | None = None, world: int | None = None) -> range:
    """The contiguous block of global sample indices 0..n-1 a rank owns (empty when n < world)."""
    r = rank() if of_rank is None else of_rank
    w = world_size() if world is None else world
    return range(n * r // w, n * (r + 1) // w)


def shard_of(index: int, n: int, world: int | None = None) -> int:
    """The rank whose `shard` of n holds `index`."""
    w = world_size() if world is None else world
    return next(r for r in range(w) if index in shard(n, r, w))


def my_indices(n: int) -> range:
    """This rank's global sample indices out of n."""
    return shard(n)


def balanced(costs: list[float], world: int | None = None) -> list[int]:
    """The rank of each sample, greedy longest-first onto the least-loaded rank (ties: the lower index, the lower
    rank), so that every rank given the same costs computes the same assignment."""
    w = world_size() if world is None else world
    loads, owners = [0.0] * w, [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        owner = min(range(w), key=lambda r: (loads[r], r))
        owners[index] = owner
        loads[owner] += costs[index]
    return owners


def gather_indexed(indices: list[int], local: list[T]) -> list[T]:
    """The global list, in index order, from each rank's `local` results for its (any) `indices`."""
    pairs = [pair for part in all_gather(list(zip(indices, local))) for pair in part]
    return [item for _, item in sorted(pairs, key=lambda pair: pair[0])]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a list of one when alone)."""
    if not _active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    _collective("all_gather", lambda: dist.all_gather_object(gathered, obj))
    return gathered


def gather_samples(local: list[T]) -> list[T]:
    """The global list of per-sample results from each rank's `local` list of its `my_indices` samples."""
    return [item for part in all_gather(list(local)) for item in part]


def map_samples(n: int, fn: Callable[[int], T]) -> list[T]:
    """[fn(0), ..., fn(n - 1)] with each rank computing its own indices; every rank gets the whole list."""
    return gather_samples([fn(i) for i in my_indices(n)])


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every rank (e.g. a checkpoint only rank 0 can read)."""
    if not _active():
        return obj
    box = [obj if is_main() else None]
    _collective("broadcast", lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def barrier() -> None:
    if _active():
        _collective("barrier", dist.barrier)


def checksum(tensors: dict[str, Tensor] | Iterable[Tensor]) -> str:
    """A hash of the tensors' exact bytes (names sorted when a dict): equal iff bit for bit equal."""
    items = sorted(tensors.items()) if isinstance(tensors, dict) else enumerate(tensors)
    digest = hashlib.sha256()
    for name, tensor in items:
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def check_identical(tensors: dict[str, Tensor], what: str = "meta-parameters", force: bool = False) -> None:
    """In debug mode (LOPTIM_DIST_DEBUG=1, or `force`), raise unless every rank holds the same `tensors`."""
    if not _active() or not (force or debug_enabled()):
        return
    sums = all_gather(checksum(tensors))
    if len(set(sums)) > 1:
        raise DistributedMismatchError(f"ranks hold different {what}: checksums by rank {sums}")
