"""One iteration's update: the kept (trajectory, step) items through the GRPO objective.

The items of the trajectories the top-k filter kept, on ``train_steps`` denoising steps
drawn per trajectory from the first ``train_step_fraction`` of them, are shuffled (seeded by iteration) and split into
``updates_per_iteration`` mini-batches, each one AdamW step accumulated over micro-batches
of ``train_batch_size`` items. Per item the policy's step mean is recomputed with gradients
at the state the sampler visited (:func:`~spatialalign.rl.policy.guided_velocity`, the
sampler's own function), the reference's with the adapter disabled under ``no_grad``
(no second copy), and the step's log-probability of the state the sampler went to.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.adapter import adapter_disabled
from spatialalign.rl.config import RLConfig
from spatialalign.rl.objective import grpo_loss
from spatialalign.rl.policy import guided_velocity
from spatialalign.rl.rollout import Trajectories
from spatialalign.rl.sde import gaussian_log_prob, kl_between_steps, step_mean, step_std

ITEM_STREAM = 1
"""Generator stream of an iteration's step subsets and item order (see :func:`iteration_rng`)."""


def iteration_rng(seed: int, iteration: int, stream: int) -> np.random.Generator:
    """A NumPy generator of (run seed, iteration, stream) alone: a resumed run draws the same."""
    return np.random.default_rng([int(seed), int(iteration), int(stream)])


@dataclass
class Batch:
    """What the update reads of an iteration: trajectories, text, advantages, kept mask."""

    traj: Trajectories
    cond: torch.Tensor
    """``[N, L, D]`` per video (its prompt's embedding)."""
    uncond: torch.Tensor | None
    advantages: torch.Tensor
    """``[N]`` float32."""
    kept: np.ndarray
    """``[N]`` bool: trained (the top-k filter's verdict)."""


def trainable_steps(n_steps: int, fraction: float) -> int:
    """How many of the first denoising steps train: ``ceil(fraction * n_steps)`` (at least 1)."""
    return max(1, min(n_steps, math.ceil(fraction * n_steps - 1e-9)))


def select_items(
    kept: np.ndarray,
    n_steps: int,
    train_steps: int,
    rng: np.random.Generator,
    fraction: float = 1.0,
) -> np.ndarray:
    """``[M, 2]`` (video, step) items: for each kept video, ``train_steps`` distinct steps
    drawn from the first :func:`trainable_steps` (all of those when 0 or more), then all
    items shuffled."""
    eligible = trainable_steps(n_steps, fraction)
    k = eligible if train_steps == 0 or train_steps >= eligible else train_steps
    items = []
    for i in np.flatnonzero(kept):
        steps = np.sort(rng.choice(eligible, size=k, replace=False))
        items.extend((int(i), int(j)) for j in steps)
    out = np.array(items, dtype=np.int64).reshape(-1, 2)
    return out[rng.permutation(len(out))]


def item_terms(
    model: torch.nn.Module,
    base: torch.nn.Module,
    batch: Batch,
    items: np.ndarray,
    cfg: RLConfig,
    guidance: float,
    autocast: contextlib.AbstractContextManager,
) -> dict[str, torch.Tensor]:
    """The objective's terms over ``items`` (a micro-batch), with gradients to the LoRA."""
    traj = batch.traj
    device = traj.states.device
    vid = torch.as_tensor(items[:, 0], device=device)
    step = torch.as_tensor(items[:, 1], device=device)
    x = traj.states[vid, step]
    x_next = traj.states[vid, step + 1]
    sigma, sigma_next = traj.grid.sigmas[step], traj.grid.sigmas[step + 1]
    t = traj.grid.timesteps.to(device)[step]
    cond = batch.cond[vid]
    uncond = None if batch.uncond is None else batch.uncond[vid]
    diffusion, std = step_std(sigma, sigma_next, cfg.noise_level, traj.grid.sigma_cap)
    with torch.no_grad(), adapter_disabled(base), autocast:
        v_ref = guided_velocity(base, x, t, cond, uncond, guidance)
    mean_ref = step_mean(x, v_ref, sigma, sigma_next, diffusion)
    with autocast:
        v = guided_velocity(model, x, t, cond, uncond, guidance)
    mean = step_mean(x, v, sigma, sigma_next, diffusion)
    log_prob = gaussian_log_prob(x_next, mean, std)
    return grpo_loss(
        log_prob,
        traj.log_probs[vid, step],
        batch.advantages.to(device)[vid],
        kl_between_steps(mean, mean_ref, std),
        clip_range=cfg.clip_range,
        kl_coef=cfg.kl_coef,
        advantage_clip=cfg.advantage_clip,
    )


def update(
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    opt: Any,
    sched: Any,
    batch: Batch,
    cfg: RLConfig,
    iteration: int,
    guidance: float,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """The iteration's AdamW steps; returns the logged terms averaged over its items
    (empty when the filter kept nothing: no step is taken). ``model`` is the transformer
    with its LoRA (the reference: the same module with the adapter disabled)."""
    rng = iteration_rng(cfg.seed, iteration, ITEM_STREAM)
    items = select_items(
        batch.kept, batch.traj.grid.steps, cfg.train_steps, rng, cfg.train_step_fraction
    )
    if len(items) == 0:
        return {}
    autocast = autocast if autocast is not None else contextlib.nullcontext()
    sums: dict[str, float] = {}
    norms = []
    for chunk in np.array_split(items, min(cfg.updates_per_iteration, len(items))):
        for start in range(0, len(chunk), cfg.train_batch_size):
            micro = chunk[start : start + cfg.train_batch_size]
            out = item_terms(model, model, batch, micro, cfg, guidance, autocast)
            (out["loss"] * (len(micro) / len(chunk))).backward()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(micro)
        norms.append(_step(params, opt, sched, cfg))
    terms = {k: v / len(items) for k, v in sums.items()}
    bad = [k for k, v in terms.items() if not math.isfinite(v)]
    if bad:
        raise SpatialAlignError(f"iteration {iteration}: the loss is not finite ({', '.join(bad)})")
    return {**terms, "grad_norm": float(np.mean(norms)), "items": float(len(items))}


def _step(params: list[torch.nn.Parameter], opt: Any, sched: Any, cfg: RLConfig) -> float:
    """Clip, check, AdamW, schedule; the gradient norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    if cfg.max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) if grads else None
    if norm is not None and not bool(torch.isfinite(norm)):
        raise SpatialAlignError("a gradient is not finite (lower --learning-rate?)")
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise SpatialAlignError("a LoRA weight is not finite after the update")
    return 0.0 if norm is None else float(norm)
