"""Wan's flow-matching objective: noise levels, noisy latents, velocity target and loss.

``x_t = (1 - s) x0 + s eps``, the model predicts the velocity ``eps - x0`` at timestep
``1000 s`` (``num_train_timesteps`` of Wan's ``FlowMatchEulerDiscreteScheduler``). Used by
toy pretraining and by the DPO trainer, so both train exactly what sampling integrates.

:func:`official_grid` is the official SpatialAlign trainer's set of noise levels (DiffSynth's
``FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True).set_timesteps(1000,
training=True)``); the ``official-grid`` sampling draws an index uniformly on it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

TimestepSampling = Literal["uniform", "shift", "logit-normal", "official-grid"]
TIMESTEP_SAMPLING: tuple[str, ...] = ("uniform", "shift", "logit-normal", "official-grid")
NUM_TRAIN_TIMESTEPS = 1000
OFFICIAL_SHIFT = 5.0
"""The shift of the official trainer's grid (``run_train.sh``)."""


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The sampling schedule's static shift: ``s' = k s / (1 + (k - 1) s)``."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def official_grid(shift: float = OFFICIAL_SHIFT) -> torch.Tensor:
    """The official trainer's 1000 noise levels (float32, from 1 down to near 0): DiffSynth's
    ``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)`` training grid, i.e.
    ``linspace(1, 0, 1001)[:-1]`` shifted; :func:`timesteps` of it is the scheduler's
    ``timesteps``. The golden fixture ``official_train_step`` holds both (shift 5)."""
    return shift_sigmas(torch.linspace(1, 0, NUM_TRAIN_TIMESTEPS + 1)[:-1], shift)


def sample_sigmas(
    n: int,
    generator: torch.Generator | None = None,
    *,
    mode: TimestepSampling = "shift",
    shift: float = 3.0,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
) -> torch.Tensor:
    """``n`` noise levels in [0, 1]: ``uniform``; ``shift`` (uniform, then shifted like the
    sampling schedule, so training sees the levels sampling visits); ``logit-normal``
    (``sigmoid(N(logit_mean, logit_std))``, SD3's density); ``official-grid`` (an index
    uniform on the 1000 points of :func:`official_grid` with ``shift``, as the official
    trainer draws ``timestep_id``). One ``generator`` draw each."""
    from diffusers.training_utils import compute_density_for_timestep_sampling

    if mode not in TIMESTEP_SAMPLING:
        raise ValueError(f"unknown timestep sampling {mode!r} ({', '.join(TIMESTEP_SAMPLING)})")
    if mode == "official-grid":
        index = torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=generator)
        return official_grid(shift)[index]
    scheme = "logit_normal" if mode == "logit-normal" else "uniform"
    u = compute_density_for_timestep_sampling(
        scheme, n, logit_mean=logit_mean, logit_std=logit_std, generator=generator
    )
    return shift_sigmas(u, shift) if mode == "shift" else u


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - s) x0 + s eps`` with one noise level per sample (``sigmas`` [B])."""
    s = sigmas.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching target ``eps - x0``."""
    return noise - x0


def timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """The transformer's timestep for noise level ``s``: ``1000 s`` as in Wan."""
    return sigmas * NUM_TRAIN_TIMESTEPS


def predict_velocity(
    transformer: torch.nn.Module,
    x_t: torch.Tensor,
    sigmas: torch.Tensor,
    context: torch.Tensor | None,
) -> torch.Tensor:
    """The transformer's velocity prediction at ``x_t`` (diffusers' calling convention)."""
    return transformer(
        hidden_states=x_t,
        timestep=timesteps(sigmas),
        encoder_hidden_states=context,
        return_dict=False,
    )[0]


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample ``[B]`` (over every other dimension), in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def flow_matching_loss(
    transformer: torch.nn.Module,
    x0: torch.Tensor,
    context: torch.Tensor | None,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Wan's objective: predict ``eps - x0`` at ``x_t = (1-s) x0 + s eps`` (mean squared)."""
    pred = predict_velocity(transformer, noisy_latents(x0, noise, sigmas), sigmas, context)
    return F.mse_loss(pred.float(), velocity_target(x0, noise).float())
