"""Rewards -> group-relative advantages -> which videos train (the top-k filter).

Pure functions on ``[P, G]`` arrays: P prompts (groups) of G videos each.

**Reward.** A valid video's reward is its DSR-Score (in [0, 1]); a video the detector
rejects has no score and gets ``invalid_reward`` (default 0), so a group with valid and
invalid videos also ranks validness.

**Advantage.** ``A = (r - mean_g) / (std_g + eps)`` with the group's mean and (population)
std over all its G videos (``normalize_per_prompt``; off: ``r - mean_g``, Dr. GRPO). The
statistics always use the whole group, filtered or not: they are the baseline estimate,
and G videos estimate it better than the kept 2k.

**Top-k filter** (Spatial-RL's, against reward noise and prompt difficulty). In each group,
sorted by reward (ties: the lower index counts as lower), keep the ``k`` lowest and the ``k``
highest videos and drop the middle ``G - 2k``: the extremes are the videos whose ranking a
noisy detector is least likely to have flipped, and training on both ends keeps the
update balanced (as many pushed up as down). ``k = 0`` or ``2k >= G`` keeps every video.
A group whose reward std is at most ``min_std`` (every video invalid, or all scored alike:
a prompt too hard or too easy for the model now) is dropped whole: its advantages are all
0, so it would cost compute and teach nothing.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4
"""Added to a group's std before dividing (Flow-GRPO's)."""


def rewards_of(valid: np.ndarray, dsr: np.ndarray, invalid_reward: float = 0.0) -> np.ndarray:
    """Per video: its DSR-Score when valid (and finite), else ``invalid_reward`` (float64)."""
    valid = np.asarray(valid, dtype=bool)
    dsr = np.asarray(dsr, dtype=np.float64)
    ok = valid & np.isfinite(dsr)
    return np.where(ok, dsr, float(invalid_reward))


def group_advantages(
    rewards: np.ndarray, *, normalize_per_prompt: bool = True, eps: float = EPS
) -> np.ndarray:
    """``[P, G]`` group-relative advantages of ``[P, G]`` rewards (see the module doc)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [prompts, group], got shape {r.shape}")
    centred = r - r.mean(axis=1, keepdims=True)
    if not normalize_per_prompt:
        return centred
    return centred / (r.std(axis=1, keepdims=True) + eps)


def top_k_mask(rewards: np.ndarray, k: int, *, min_std: float = 1e-6) -> np.ndarray:
    """``[P, G]`` bool: the videos the top-k filter keeps (see the module doc)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [prompts, group], got shape {r.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    p, g = r.shape
    keep = np.ones((p, g), dtype=bool)
    if k and 2 * k < g:
        order = np.argsort(r, axis=1, kind="stable")  # ties: the lower index first
        middle = order[:, k : g - k]
        np.put_along_axis(keep, middle, False, axis=1)
    keep &= (r.std(axis=1) > min_std)[:, None]
    return keep
