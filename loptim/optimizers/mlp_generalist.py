"""The generalist design of the per-parameter MLP optimizer: Metz et al. 2019's MLP with the field's later fixes.

Departures from Metz 2019, each named in docs/generalist.md with its source:
- a nominal Adam step that the network corrects (STAR's "nominal" term; Harrison et al. 2022): with the output
  layer and the schedule at zero (their initialization) the update is exactly Adam at lr `nominal_lr`;
- Adam-normalized inputs m_k / (sqrt(v_hat) + eps) besides the raw ones, all RMS-normalized per tensor (Celo);
- training-progress features from step / total_steps and a learned scalar step-size schedule head (Celo,
  Moudgil et al. 2025), times the param group's `lr` (Celo2: the user's schedule multiplies the step);
- the log of each tensor's parameter RMS as a per-tensor input, so the step can follow a tensor's scale under
  reparameterization augmentation (loptim.tasks.augment);
- a tiny network (2 x 8 hidden units; Celo: hidden sizes 4-16);
- optionally (`MLPConfig(loss_features=True)`), features of the training loss's history beside the progress
  features, for the schedule head and the first layer's bias: Celo's step-size network reads loss EMAs relative
  to the running minimum; here their trends and the distance above the best, all unitless and clipped.
The update, per coordinate i of tensor k at step t (d, s: the network's two outputs; h_t: the schedule head):
    Delta_i = -nominal_lr * exp(clamp(h_t + s_i, -7, 4)) * (m_hat_i / (sqrt(v_hat_i) + eps) + d_i)
With `correction=False` (MLPConfig.correction) the additive correction d is dropped: the network only scales
Adam's step per coordinate by a positive factor, so each coordinate moves the way Adam moves it (docs/generalist.md,
Scale-only design: the unbounded d is what blew up runs larger and longer than meta-training's).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from loptim.features import NORMALIZER_EPS, normalize_per_tensor, per_tensor_mean_square

DECAYS = (0.9, 0.99, 0.999)  # momenta; the first is Adam's beta1 and drives the nominal step
RMS_DECAY = 0.999  # Adam's beta2
ADAM_EPS = 1e-8
NUM_FEATURES = 2 + 2 * len(DECAYS) + 1  # g, p, momenta, g and momenta over sqrt(v_hat)
NUM_PROGRESS = 8
LOSS_DECAYS = (0.9, 0.99, 0.999)  # EMAs of the training loss (bias-corrected)
NUM_LOSS = 4  # seen a loss; trend fast/mid and mid/slow; fast EMA above its running minimum (loss_features)
NUM_TENSOR_FEATURES = 1  # log RMS of the tensor's parameters
LOG_STEP_RANGE = (-7.0, 4.0)
# Ablations of the design (issue 16's ablation table), each removing one of the later fixes:
# "normalization": raw features (no per-tensor RMS normalization, no Adam-normalized inputs) and no nominal Adam
#   term: the network's d alone is the direction, as in Metz 2019;
# "schedule": no progress features and no schedule head (h_t = 0).
ABLATIONS = ("normalization", "schedule")


def progress_features(step: int, total_steps: int) -> list[float]:
    """(NUM_PROGRESS,): whether the run's length is known, f = step / total_steps and f^2, sqrt(f), and
    tanh(step / tau) for tau in 10, 100, 1000, 10000 (the same for every coordinate: a per-step bias)."""
    known = total_steps > 0
    f = min(step / total_steps, 1.0) if known else 0.0
    return [float(known), f, f * f, math.sqrt(f)] + [math.tanh(step / tau) for tau in (10, 100, 1_000, 10_000)]


def loss_statistics(stats: list[float] | None, loss: float | None) -> list[float]:
    """The running loss statistics after one step's training loss: [EMA accumulators of LOSS_DECAYS..., count,
    the fast EMA's minimum]. A missing, non-finite or non-positive loss leaves them as they are (its log ratios
    would mean nothing), so a loop that never hands the loss over sees `loss_features` of zero."""
    stats = list(stats) if stats is not None else [0.0] * (len(LOSS_DECAYS) + 2)
    if loss is None or not math.isfinite(loss) or loss <= 0.0:
        return stats
    k = len(LOSS_DECAYS)
    for i, beta in enumerate(LOSS_DECAYS):
        stats[i] = beta * stats[i] + (1.0 - beta) * loss
    count = stats[k] = stats[k] + 1.0
    fast = stats[0] / (1.0 - LOSS_DECAYS[0] ** count)
    stats[k + 1] = fast if count == 1.0 else min(stats[k + 1], fast)
    return stats


def loss_features(stats: list[float] | None) -> list[float]:
    """(NUM_LOSS,) unitless features of the loss history: whether any loss was seen; log(fast / mid EMA) and
    log(mid / slow EMA), clipped to +-1 (positive: the loss is rising); log(fast EMA / its minimum), clipped to
    [0, 1] (how far above its best the run is). All zero before the first loss."""
    k = len(LOSS_DECAYS)
    if stats is None or stats[k] < 1.0:
        return [0.0] * NUM_LOSS
    count = stats[k]
    ema = [stats[i] / (1.0 - beta**count) for i, beta in enumerate(LOSS_DECAYS)]

    def clip(x: float, lo: float, hi: float) -> float:
        return min(max(x, lo), hi)

    return [
        1.0,
        clip(math.log(ema[0] / ema[1]), -1.0, 1.0),
        clip(math.log(ema[1] / ema[2]), -1.0, 1.0),
        clip(math.log(ema[0] / stats[k + 1]), 0.0, 1.0),
    ]


def step_features(
    step: int, total_steps: int, dtype: torch.dtype, device: torch.device, loss: list[float] | None = None
) -> Tensor:
    """The per-step inputs of the schedule head and the first layer's bias: the progress features, followed by
    the loss features when the design has them (`loss`, NUM_LOSS values; None: a design without them)."""
    values = progress_features(step, total_steps) + (loss if loss is not None else [])
    return torch.tensor(values, dtype=dtype, device=device)  # one host-to-device copy per step


def zero_state(num_coordinates: int, dtype: torch.dtype, device: torch.device | str | None) -> dict[str, Tensor]:
    """Three momenta and Adam's second moment: 16 bytes per fp32 parameter (coordinates on the last dimension)."""
    return {
        "momenta": torch.zeros(len(DECAYS), num_coordinates, dtype=dtype, device=device),
        "rms": torch.zeros(num_coordinates, dtype=dtype, device=device),
    }


def meta_param_shapes(hidden: int, with_loss: bool = False) -> dict[str, tuple[int, ...]]:
    steps = NUM_PROGRESS + (NUM_LOSS if with_loss else 0)
    return {
        "w1": (hidden, NUM_FEATURES),
        "w1_time": (hidden, steps),
        "w1_tensor": (hidden, NUM_TENSOR_FEATURES),
        "b1": (hidden,),
        "w2": (hidden, hidden),
        "b2": (hidden,),
        "w3": (2, hidden),
        "b3": (2,),
        "w_schedule": (steps,),
    }


def update(
    meta_params: dict[str, Tensor],
    state: dict[str, Tensor],
    grad: Tensor,
    param: Tensor,
    sizes: list[int],
    step: int,
    total_steps: int,
    nominal_lr: float,
    ablation: str | None = None,
    loss: list[float] | None = None,
    correction: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Flat gradient and parameters (N,) of tensors of `sizes` -> (flat update, new state); pure and
    differentiable in meta_params (the one implementation of the generalist update). `ablation`: see ABLATIONS;
    `loss`: this step's `loss_features` for a design that has them; `correction`: whether the network's additive
    correction d joins Adam's direction (False: the scale-only design, each coordinate's step has Adam's sign)."""
    dtype, device = grad.dtype, grad.device
    decays = torch.tensor(DECAYS, dtype=dtype, device=device).unsqueeze(1)
    momenta = decays * state["momenta"] + (1.0 - decays) * grad
    rms = RMS_DECAY * state["rms"] + (1.0 - RMS_DECAY) * grad * grad
    t = step + 1
    inverse = 1.0 / (torch.sqrt(rms / (1.0 - RMS_DECAY**t)) + ADAM_EPS)
    nominal = momenta[0] / (1.0 - DECAYS[0] ** t) * inverse
    if ablation == "normalization":  # Adam-normalized inputs zeroed (the same meta-parameter shapes), no RMS scaling
        zeros = torch.zeros((1 + len(DECAYS), grad.shape[0]), dtype=dtype, device=device)
        features = torch.cat((grad.unsqueeze(0), param.unsqueeze(0), momenta, zeros))
        nominal = torch.zeros_like(nominal)
    else:
        raw = torch.cat((grad.unsqueeze(0), param.unsqueeze(0), momenta, grad.unsqueeze(0) * inverse,
                         momenta * inverse))  # fmt: skip
        features = normalize_per_tensor(raw, None, sizes)
    log_rms = 0.5 * torch.log(per_tensor_mean_square(param.unsqueeze(0), None, sizes) + NORMALIZER_EPS)  # (1, T)
    progress = step_features(step, total_steps, dtype, device, loss)
    if ablation == "schedule":
        progress = torch.zeros_like(progress)
    bias1 = meta_params["b1"] + meta_params["w1_time"] @ progress  # (H,)
    tensor_bias = meta_params["w1_tensor"] @ log_rms  # (H, T)
    counts = torch.tensor(sizes, device=device)
    per_coordinate = torch.repeat_interleave(tensor_bias, counts, dim=1, output_size=grad.shape[0])
    first = torch.addmm(bias1.unsqueeze(1), meta_params["w1"], features) + per_coordinate
    direction, magnitude = network_outputs(meta_params, first)
    schedule = meta_params["w_schedule"] @ progress
    log_step = torch.clamp(schedule + magnitude, *LOG_STEP_RANGE)
    delta = -nominal_lr * torch.exp(log_step) * (nominal + direction if correction else nominal)
    return delta, {"momenta": momenta, "rms": rms}


def network_outputs(meta_params: dict[str, Tensor], first: Tensor) -> tuple[Tensor, Tensor]:
    """The network's two outputs per coordinate, (d, s), from its first layer's pre-activation (H, N)."""
    hidden = torch.relu(torch.addmm(meta_params["b2"].unsqueeze(1), meta_params["w2"], torch.relu(first)))
    direction, magnitude = torch.addmm(meta_params["b3"].unsqueeze(1), meta_params["w3"], hidden)
    return direction, magnitude


def kernel_weights(meta_params: dict[str, Tensor], correction: bool = True) -> dict[str, Tensor]:
    """The meta-parameters as the fused kernel reads them (float32; without the correction, the output layer's d
    row zeroed, which gives the kernel exactly the scale-only update): the same every step, so shells cache them."""
    p = {k: v.detach().float() for k, v in meta_params.items()}
    if not correction:
        p["w3"] = torch.stack((torch.zeros_like(p["w3"][0]), p["w3"][1]))
        p["b3"] = torch.stack((torch.zeros_like(p["b3"][0]), p["b3"][1]))
    p["w1_tensor"] = p["w1_tensor"].reshape(-1)
    return {k: v.contiguous() for k, v in p.items()}


def kernel_inputs(
    meta_params: dict[str, Tensor],
    step: int,
    total_steps: int,
    nominal_lr: float,
    loss: list[float] | None = None,
    correction: bool = True,
    weights: dict[str, Tensor] | None = None,
) -> tuple[list[Tensor], list[float]]:
    """The fused CPU kernel's weights (w1, b1 with the progress bias, w1_tensor, w2, b2, w3, b3) and constants
    (loptim/kernels/cpu.cpp, Generalist) for this step: the same terms as `update`. `weights`: `kernel_weights`
    of these meta-parameters, when the caller kept them."""
    progress = step_features(step, total_steps, torch.float32, torch.device("cpu"), loss)
    p = kernel_weights(meta_params, correction) if weights is None else weights
    bias1 = p["b1"] + p["w1_time"] @ progress
    schedule = float(p["w_schedule"] @ progress)
    t = step + 1
    inputs = [p["w1"], bias1, p["w1_tensor"], p["w2"], p["b2"], p["w3"], p["b3"]]
    hyper = [
        *DECAYS,
        RMS_DECAY,
        ADAM_EPS,
        1.0 - DECAYS[0] ** t,
        1.0 - RMS_DECAY**t,
        nominal_lr,
        schedule,
        *LOG_STEP_RANGE,
    ]
    return inputs, hyper
