"""GRPO's clipped policy-ratio objective with a KL term, as a pure function on tensors.

Per (trajectory, step) item with advantage ``A``, the new policy's log-probability of the
sampled step ``lp`` and the sampling policy's ``lp_old``: ``ratio = exp(lp - lp_old)``,

    L_policy = max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))
    L        = mean(L_policy) + kl_coef mean(KL)

(PPO's pessimistic bound; minimising it raises the log-probability of a positive-advantage
step and lowers a negative one's until the ratio leaves the clip range). ``KL`` is
:func:`spatialalign.rl.sde.kl_between_steps` of the policy and the reference.
"""

from __future__ import annotations

import torch


def grpo_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    kl: torch.Tensor,
    *,
    clip_range: float,
    kl_coef: float,
    advantage_clip: float = 5.0,
) -> dict[str, torch.Tensor]:
    """The loss and its logged terms over ``[N]`` items: ``loss``, ``policy_loss``, ``kl``,
    ``clip_fraction`` (items whose ratio left the clip range), ``ratio`` (mean),
    ``approx_kl`` (``mean((lp - lp_old)^2) / 2``, how far the policy moved)."""
    adv = advantages.float().clamp(-advantage_clip, advantage_clip)
    log_ratio = log_prob.float() - old_log_prob.float().detach()
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    policy = torch.maximum(unclipped, clipped).mean()
    kl_mean = kl.float().mean()
    with torch.no_grad():
        outside = ((ratio - 1.0).abs() > clip_range).float().mean()
        approx = 0.5 * log_ratio.pow(2).mean()
    return {
        "loss": policy + kl_coef * kl_mean,
        "policy_loss": policy,
        "kl": kl_mean,
        "clip_fraction": outside,
        "ratio": ratio.detach().mean(),
        "approx_kl": approx,
    }
