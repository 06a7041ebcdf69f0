"""The torch.optim shell shared by the coordinate-wise learned optimizers: all coordinates as one flat vector.

Every state tensor of a core keeps the coordinates on its last dimension, so a parameter owns a column range of
each and `opt.state[p]` holds live views of it. torch.optim's rules hold: parameters whose `.grad` is None are
skipped (no update, no state change), `param_groups` carry `lr` (a dimensionless multiplier of the learned step),
`weight_decay` (decoupled) and `maximize`, read at every step, and `state_dict` has torch.optim's layout.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from loptim.errors import WeightsError
from loptim.optimizers.core import State
from loptim.optimizers.step_inputs import (
    Loss,
    check_dense,
    check_hyperparameters,
    check_one_device,
    diverged,
    loss_value,
    run_closure,
    split_step_args,
)
from loptim.optimizers.versions import (
    check_group_sizes,
    check_state_dict_header,
    packed_groups,
    restore_group_options,
    state_dict_header,
)
from loptim.pretrained import load_learned

DEFERRED_CHECK_EVERY = 16  # on accelerators, steps between host reads of the device-side non-finite counter


def flatten(tensors: dict[str, Tensor]) -> Tensor:
    """Concatenate a dict of tensors into one flat vector (dict order)."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflatten(flat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector back into tensors shaped like `like` (views, no copy)."""
    sizes = [t.numel() for t in like.values()]
    return {k: piece.view_as(t) for (k, t), piece in zip(like.items(), torch.split(flat, sizes))}


def add_flat(params: dict[str, Tensor], delta: Tensor) -> dict[str, Tensor]:
    """params + a flat update, tensor by tensor (differentiable; used by every learned optimizer's `update`)."""
    deltas = unflatten(delta, params)
    return {k: params[k] + deltas[k] for k in params}


def meta_sha256(meta_params: dict[str, Tensor]) -> str:
    """SHA-256 of the meta-parameters (names, shapes and float32 bytes): identifies the weights a state belongs to."""
    digest = hashlib.sha256()
    for name in sorted(meta_params):
        tensor = meta_params[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def all_finite(values: Tensor) -> Tensor:
    """Whether every entry is finite, as a 0-dim bool tensor. A finite sum proves it in one cheap pass (an inf
    or NaN anywhere makes the sum inf or NaN); only a non-finite sum (a bad entry, or finite ones overflowing)
    pays for the exact elementwise check, which allocates a mask."""
    if values.device.type == "cpu" and bool(torch.isfinite(values.sum())):
        return torch.ones((), dtype=torch.bool)
    return torch.isfinite(values).all()


def compute_dtype(params: list[Tensor]) -> torch.dtype:
    """The learned state's dtype: float64 when any parameter is float64, else float32 (bf16/fp16 included)."""
    return torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32


class FlatOptimizer(torch.optim.Optimizer):
    """A learned optimizer as torch.optim: `step()` flattens the gradients, asks the core for a flat update, adds it.

    Update of a parameter p in a group with learning rate lr and weight decay wd, D the learned step:
    p <- p * (1 - lr * wd) + lr * D. The learned state lives on the parameters' device in `compute_dtype`;
    parameters keep their own dtype. A non-finite gradient or loss never reaches the model: the step raises
    `loptim.DivergedError` (`nonfinite="raise"`) or is skipped (`"skip"`). On CUDA the check stays on the device:
    the bad step is neutralized there (the model unchanged, the core fed a zero gradient) and the error is raised
    within DEFERRED_CHECK_EVERY steps or at `state_dict()`, so no step waits for the host.
    """

    name = "flat"

    default_weights = ""  # the shipped weights a subclass loads by default

    def __init__(
        self,
        params: Iterable[Tensor],
        weights: str | None = "default",
        *,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        maximize: bool = False,
        nonfinite: str = "raise",
        total_steps: int = 0,
    ) -> None:
        """`weights`: "default" (the class's shipped weights), another shipped name, a .safetensors path, or None
        for an untrained network from a fixed seed (the global RNG is never touched)."""
        weights = self.default_weights if weights == "default" else weights
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG: keep the user's
            net = load_learned(self.name, weights) if weights else self.untrained(torch.Generator().manual_seed(0))
        self.total_steps = int(total_steps)  # for cores with progress features (0: unknown)
        check_hyperparameters(type(self).__name__, lr=lr, weight_decay=weight_decay, nonfinite=nonfinite)
        super().__init__(params, defaults={"lr": lr, "weight_decay": weight_decay, "maximize": maximize})
        self.net = net
        self.weights = weights
        self.nonfinite = nonfinite
        self._meta_cpu = {k: v.detach().clone() for k, v in net.meta_params().items()}
        self._meta_cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}
        self.flat_state: State | None = None
        self._layout: list[Tensor] = []  # parameters in flat order, as the state was built for them
        self._param_steps = torch.zeros(0)
        self.step_count = 0
        self._skipped = 0
        self._pending: Tensor | None = None  # CUDA: count of neutralized non-finite steps not yet acted on
        self._buffers: dict[str, Tensor] = {}  # work memory reused every step (not state): see `_buffer`
        self._defer_nonfinite: bool | None = None  # None: defer the check on accelerators only (tests force it)

    # ------------------------------------------------------------------------------------------ core hooks
    @classmethod
    def untrained(cls, generator: torch.Generator) -> nn.Module:
        """A freshly initialized core drawn from `generator`."""
        raise NotImplementedError

    def _zero_state(self, num_coordinates: int, dtype: torch.dtype, device: torch.device) -> State:
        return self.net.zero_state(num_coordinates, dtype=dtype, device=device)

    def _flat_update(self, flat_grad: Tensor, params: list[Tensor], loss: float | None = None) -> Tensor:
        """The learned step D for every coordinate; updates `self.flat_state` in place. `loss`: the step's
        training loss when the loop gave one (read by cores with loss features, if `wants_loss`)."""
        raise NotImplementedError

    def _loss_for_core(self, loss: Loss) -> float | None:
        """The step's training loss as the core reads it (None: this core does not read the loss)."""
        return None

    def _header_extra(self) -> dict[str, Any]:
        """State that is not per coordinate, for the state_dict's header (none by default)."""
        return {}

    def _load_header_extra(self, header: dict[str, Any]) -> None:
        """Restore what `_header_extra` saved."""

    # ------------------------------------------------------------------------------------------ layout
    @property
    def meta_params(self) -> dict[str, Tensor]:
        """The meta-parameters on the state's device and dtype (cached)."""
        state = self.flat_state
        key = (torch.device("cpu"), torch.float32) if state is None else self._state_key()
        if key not in self._meta_cache:
            self._meta_cache[key] = {k: v.to(key[0], key[1]) for k, v in self._meta_cpu.items()}
        return self._meta_cache[key]

    def _state_key(self) -> tuple[torch.device, torch.dtype]:
        first = next(iter(self.flat_state.values()))
        return first.device, first.dtype

    def _all_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _bounds(self) -> list[tuple[int, int]]:
        bounds, offset = [], 0
        for p in self._layout:
            bounds.append((offset, offset + p.numel()))
            offset += p.numel()
        return bounds

    def _ensure_state(self, params: list[Tensor]) -> None:
        """Allocate the flat state (lazily, on the parameters' device), extend it for added groups, follow moves."""
        device = check_one_device(type(self).__name__, params)
        dtype = compute_dtype(params)
        added = params[len(self._layout) :]
        if self.flat_state is None or added:
            fresh = self._zero_state(sum(p.numel() for p in added), dtype, device)
            if self.flat_state is None:
                self.flat_state = fresh
            else:
                self.flat_state = {
                    k: torch.cat((v.to(device, dtype), fresh[k]), dim=-1) for k, v in self.flat_state.items()
                }
            self._param_steps = torch.cat((self._param_steps, torch.zeros(len(added))))
            self._layout = list(params)
            self._bind_views()
        elif self._state_key() != (device, dtype):
            self.flat_state = {k: v.to(device, dtype) for k, v in self.flat_state.items()}
            self._bind_views()

    def _bind_views(self) -> None:
        """`opt.state[p]`: live views of p's columns of every state tensor, and p's own step count."""
        for index, (p, (lo, hi)) in enumerate(zip(self._layout, self._bounds())):
            views = {k: v[..., lo:hi].view(*v.shape[:-1], *p.shape) for k, v in self.flat_state.items()}
            self.state[p] = {"step": self._param_steps[index], **views}

    # ------------------------------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | Tensor | float | None = None, *, loss: Loss = None) -> Any:
        """One update from the gradients in `.grad`; `closure`, a loss first argument or `loss=` are all accepted
        (the loss is only checked for finiteness: these optimizers do not use it)."""
        closure, loss = split_step_args(closure, loss)
        closure_loss = run_closure(closure)
        loss = closure_loss if loss is None else loss
        params = self._all_params()
        check_dense(type(self).__name__, params)
        active = [p.grad is not None for p in params]
        if not any(active):
            return closure_loss
        core_loss = self._loss_for_core(loss)  # before any state changes: it may raise MissingLossError
        self._ensure_state(params)
        device, dtype = self._state_key()
        lazy = self._defer_nonfinite if self._defer_nonfinite is not None else device.type != "cpu"
        bad_loss = self._nonfinite_loss(loss, device)
        if not lazy and (bad_loss is None or not bool(bad_loss)):
            done = self._direct_update(params, core_loss)  # the step without flat copies, where the core has one
            if done is not None:
                if done:
                    self._count_step(active)
                elif self.nonfinite == "raise":
                    raise diverged(type(self).__name__, self.step_count, "gradient")
                else:
                    self._skipped += 1
                return closure_loss
        flat_grad = self._flat_grad(dtype)
        bad = ~all_finite(flat_grad)
        if bad_loss is not None:
            bad = bad | bad_loss
        if not lazy and bool(bad):
            if self.nonfinite == "raise":
                raise diverged(type(self).__name__, self.step_count, "gradient or loss")
            self._skipped += 1
            return closure_loss
        if lazy:
            flat_grad = torch.where(bad, torch.zeros((), dtype=dtype, device=device), flat_grad)
        saved = self._snapshot([i for i, a in enumerate(active) if not a])
        delta = self._flat_update(flat_grad, params, core_loss)
        self._restore(saved)
        if lazy:
            delta = torch.where(bad, torch.zeros((), dtype=dtype, device=device), delta)
            self._pending = bad.int() if self._pending is None else self._pending + bad
        self._apply(params, active, delta)
        self._count_step(active)
        if lazy and self.step_count % DEFERRED_CHECK_EVERY == 0:
            self._raise_pending()
        return closure_loss

    @staticmethod
    def _nonfinite_loss(loss: Loss, device: torch.device) -> Tensor | None:
        """Whether the step's loss is NaN or infinite, as a 0-dim bool tensor on `device`; None without a loss."""
        if loss is None:
            return None
        if isinstance(loss, Tensor):
            return ~torch.isfinite(loss.detach().to(device)).all()
        return torch.full((), not math.isfinite(loss_value(loss)), dtype=torch.bool, device=device)

    def _count_step(self, active: list[bool]) -> None:
        """One more step, for the optimizer and for each parameter that had a gradient."""
        if all(active):
            self._param_steps += 1
        else:
            self._param_steps[torch.tensor(active)] += 1
        self.step_count += 1

    def _direct_update(self, params: list[Tensor], loss: float | None) -> bool | None:
        """Step every parameter that has a gradient in place, without flat copies: True when done, False when a
        gradient was not finite (nothing changed), None where this core or these tensors have no such path."""
        return None

    def _buffer(self, name: str, numel: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """A work vector reused across steps (not state): a fresh multi-megabyte tensor every step costs more in
        page faults than the copy into it (about 1 ms per 3 MB on the 2-core CI machine)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() != numel or buffer.dtype != dtype or buffer.device != device:
            buffer = self._buffers[name] = torch.empty(numel, dtype=dtype, device=device)
        return buffer

    def _flat_grad(self, dtype: torch.dtype) -> Tensor:
        """All gradients as one vector in parameter order: zeros where `.grad` is None, negated under maximize."""
        pieces = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    pieces.append(torch.zeros(p.numel(), dtype=dtype, device=p.device))
                else:
                    grad = p.grad.reshape(-1).to(dtype)
                    pieces.append(-grad if group["maximize"] else grad)
        out = self._buffer("grad", sum(piece.numel() for piece in pieces), dtype, pieces[0].device)
        return torch.cat(pieces, out=out)

    def _snapshot(self, indices: list[int]) -> list[tuple[int, int, State]]:
        bounds = self._bounds()
        return [(*bounds[i], {k: v[..., bounds[i][0] : bounds[i][1]].clone() for k, v in self.flat_state.items()})
                for i in indices]  # fmt: skip

    def _restore(self, saved: list[tuple[int, int, State]]) -> None:
        for lo, hi, values in saved:
            for k, v in values.items():
                self.flat_state[k][..., lo:hi].copy_(v)

    def _apply(self, params: list[Tensor], active: list[bool], delta: Tensor) -> None:
        """p <- p * (1 - lr * wd) + lr * D for every parameter that has a gradient, group by group."""
        pieces = torch.split(delta, [p.numel() for p in params])
        index = {id(p): i for i, p in enumerate(params)}
        targets, updates = [], []
        for group in self.param_groups:
            lr, weight_decay = float(group["lr"]), float(group["weight_decay"])
            members = [p for p in group["params"] if active[index[id(p)]]]
            if not members:
                continue
            steps = [pieces[index[id(p)]].view_as(p) for p in members]
            if weight_decay != 0.0:
                torch._foreach_mul_(members, 1.0 - lr * weight_decay)
            if lr != 1.0:
                steps = torch._foreach_mul(steps, lr)
            targets += members
            updates += [s.to(p.dtype) for s, p in zip(steps, members)]
        torch._foreach_add_(targets, updates)

    def _raise_pending(self) -> None:
        """Act on non-finite steps found on the device since the last check (one host read every
        DEFERRED_CHECK_EVERY steps, and at state_dict(), not one per step)."""
        if self._pending is None:
            return
        count, self._pending = int(self._pending), None
        if count and self.nonfinite == "raise":
            raise diverged(
                type(self).__name__,
                self.step_count,
                f"gradient or loss in {count} of the last steps (found on the device)",
            )
        self._skipped += count

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite gradient or loss under nonfinite='skip'."""
        self._raise_pending()
        return self._skipped

    # ------------------------------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout (`state` by parameter index, `param_groups`) plus a `loptim` header: the weights'
        name and SHA-256 (and the meta-parameters themselves unless they are shipped weights)."""
        self._raise_pending()
        groups = packed_groups(self.param_groups)
        state: dict[int, dict[str, Tensor]] = {}  # the layout is the param groups' order: index i is parameter i
        if self.flat_state is not None:
            for i, (p, (lo, hi)) in enumerate(zip(self._layout, self._bounds())):
                values = {k: v[..., lo:hi].reshape(*v.shape[:-1], *p.shape).clone() for k, v in self.flat_state.items()}
                state[i] = {"step": self._param_steps[i].clone(), **values}
        header = state_dict_header(self.name, self.weights, self._meta_cpu, meta_sha256(self._meta_cpu))
        header.update(step_count=self.step_count, skipped_steps=self._skipped, **self._header_extra())
        return {"state": state, "param_groups": groups, "loptim": header}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a `state_dict()`; shapes are checked per parameter, the weights by their SHA-256."""
        header = check_state_dict_header(state_dict, self.name)
        params = self._all_params()
        saved_groups = state_dict["param_groups"]
        check_group_sizes(self.param_groups, saved_groups)
        self._load_meta(header)
        self._ensure_state(params)
        template = self._zero_state(1, torch.float32, torch.device("cpu"))
        bounds = self._bounds()
        for key, values in state_dict["state"].items():
            i = int(key)
            p = params[i]
            expected = {k: (*v.shape[:-1], *p.shape) for k, v in template.items()}
            found = {k: tuple(values[k].shape) for k in expected if k in values}
            if found != expected:
                raise ValueError(
                    f"state of parameter {i} has shapes {found}; parameter {i} of this optimizer has shape "
                    f"{tuple(p.shape)}, which needs {expected}: build the optimizer over the same model"
                )
        for k in self.flat_state:
            self.flat_state[k].zero_()
        self._param_steps.zero_()
        for key, values in state_dict["state"].items():
            i = int(key)
            lo, hi = bounds[i]
            for k, v in self.flat_state.items():
                v[..., lo:hi].copy_(values[k].reshape(*v.shape[:-1], hi - lo))
            self._param_steps[i] = float(values["step"])
        restore_group_options(self.param_groups, saved_groups)
        self.step_count = int(header["step_count"])
        self._skipped = int(header.get("skipped_steps", 0))
        self._load_header_extra(header)
        self._pending = None

    def _load_meta(self, header: dict[str, Any]) -> None:
        """Take the meta-parameters the state was made with: from the header, or the named weights if they match."""
        if "meta_params" in header:
            meta = {k: torch.as_tensor(v).detach().clone() for k, v in header["meta_params"].items()}
            if {k: tuple(v.shape) for k, v in meta.items()} != {k: tuple(v.shape) for k, v in self._meta_cpu.items()}:
                raise WeightsError(
                    "the state_dict's meta-parameters do not fit this optimizer's network: build the optimizer with "
                    f"the design it was saved with (weights={header.get('weights')!r} there)"
                )
        elif header["meta_sha256"] == meta_sha256(self._meta_cpu):
            return
        else:
            meta = self._shipped_meta(header)
        self._meta_cpu, self._meta_cache = meta, {}
        self.weights = header.get("weights")

    def _shipped_meta(self, header: dict[str, Any]) -> dict[str, Tensor]:
        from loptim.pretrained import load_learned

        name = header.get("weights")
        meta = {k: v.detach().clone() for k, v in load_learned(self.name, name).meta_params().items()} if name else {}
        if not meta or meta_sha256(meta) != header["meta_sha256"]:
            raise WeightsError(
                f"the state_dict was made with weights '{name}' (SHA-256 {header['meta_sha256'][:12]}...), which "
                "this installation does not have: build the optimizer with those weights"
            )
        return meta
