"""The training losses, as pure functions on velocity predictions and targets (DESIGN.md).

Pair losses (``dpo``, ``dpo+zo``, ``dpo+sft``) take the policy and reference predictions
of winner and loser at a shared noise level; sample losses (``sft``, ``rwr``) take the
policy predictions of single samples. Each returns a dict: ``loss`` (the tensor to
differentiate) and the detached terms to log (each loss term, ``score_w``, ``score_l``,
``margin``, ``accuracy``). The loop in :mod:`spatialalign.training.trainer` only calls them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spatialalign.trainlib.flow import per_sample_mse

LOSS_VARIANTS: tuple[str, ...] = ("dpo+zo", "dpo", "dpo+sft", "sft", "rwr")
PAIR_VARIANTS: tuple[str, ...] = ("dpo+zo", "dpo", "dpo+sft")
"""Variants trained on (winner, loser) pairs; the others train on single samples."""


def is_pair_variant(variant: str) -> bool:
    """Whether ``variant`` trains on pairs (and needs the reference prediction)."""
    if variant not in LOSS_VARIANTS:
        raise ValueError(f"unknown loss {variant!r} ({', '.join(LOSS_VARIANTS)})")
    return variant in PAIR_VARIANTS


def dpo_scores(
    mse_w: torch.Tensor, mse_l: torch.Tensor, ref_mse_w: torch.Tensor, ref_mse_l: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``score = mse_ref - mse_θ`` per pair, for winner and loser (higher: the policy fits
    that sample better than the reference does)."""
    return ref_mse_w - mse_w, ref_mse_l - mse_l


def dpo_loss(
    score_w: torch.Tensor, score_l: torch.Tensor, beta: float = 1.0, clip: float = 5.0
) -> torch.Tensor:
    """``-log σ(clip(β (score_w - score_l), -clip, clip))`` per pair."""
    return -F.logsigmoid(torch.clamp(beta * (score_w - score_l), -clip, clip))


def zo_loss(
    pred_w: torch.Tensor, pred_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor
) -> torch.Tensor:
    """The zeroth-order regulariser ``mean((v_θ(w) - v_ref(w))²) + mean((v_θ(l) - v_ref(l))²)``
    (means over the batch and every element)."""
    dw = (pred_w.float() - ref_w.float()).pow(2).mean()
    dl = (pred_l.float() - ref_l.float()).pow(2).mean()
    return dw + dl


def pair_loss(
    variant: str,
    pred_w: torch.Tensor,
    pred_l: torch.Tensor,
    ref_w: torch.Tensor,
    ref_l: torch.Tensor,
    target_w: torch.Tensor,
    target_l: torch.Tensor,
    *,
    beta: float = 1.0,
    lambda_zo: float = 0.25,
    lambda_sft: float = 1.0,
    clip: float = 5.0,
) -> dict[str, torch.Tensor]:
    """A pair variant's loss: ``dpo`` = L_DPO, ``dpo+zo`` = L_DPO + λ_ZO·L_ZO (the default),
    ``dpo+sft`` = L_DPO + λ_SFT·mse_θ(w). ``pred_*``: policy, ``ref_*``: reference (adapter
    off) predictions, ``target_*``: ``eps - x0``; all ``[B, ...]``."""
    if variant not in PAIR_VARIANTS:
        raise ValueError(f"not a pair loss: {variant!r} ({', '.join(PAIR_VARIANTS)})")
    mse_w, mse_l = per_sample_mse(pred_w, target_w), per_sample_mse(pred_l, target_l)
    ref_mse_w = per_sample_mse(ref_w, target_w).detach()
    ref_mse_l = per_sample_mse(ref_l, target_l).detach()
    score_w, score_l = dpo_scores(mse_w, mse_l, ref_mse_w, ref_mse_l)
    l_dpo = dpo_loss(score_w, score_l, beta, clip).mean()
    out = {"loss_dpo": l_dpo}
    loss = l_dpo
    if variant == "dpo+zo":
        out["loss_zo"] = zo_loss(pred_w, pred_l, ref_w.detach(), ref_l.detach())
        loss = loss + lambda_zo * out["loss_zo"]
    elif variant == "dpo+sft":
        out["loss_sft"] = mse_w.mean()
        loss = loss + lambda_sft * out["loss_sft"]
    margin = beta * (score_w - score_l)
    logged = {
        **out,
        "score_w": score_w.mean(),
        "score_l": score_l.mean(),
        "margin": margin.mean(),
        "accuracy": (margin > 0).float().mean(),
        "mse_w": mse_w.mean(),
        "mse_l": mse_l.mean(),
    }
    return {"loss": loss, **{k: v.detach() for k, v in logged.items()}}


def rwr_weights(rewards: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reward-weighted regression weights ``softmax(r / T)`` scaled to mean 1 over the batch."""
    return torch.softmax(rewards.float() / temperature, dim=0) * rewards.numel()


def sample_loss(
    variant: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    rewards: torch.Tensor | None = None,
    *,
    rwr_temperature: float = 0.2,
) -> dict[str, torch.Tensor]:
    """A single-sample variant's loss: ``sft`` = mean flow-matching mse_θ (on the top-k
    samples by DSR, chosen by the data), ``rwr`` = mean of ``w_i·mse_θ(i)`` with
    :func:`rwr_weights` of the samples' rewards (DSR)."""
    mse = per_sample_mse(pred, target)
    if variant == "sft":
        loss = mse.mean()
        return {"loss": loss, "loss_sft": loss.detach(), "mse": mse.mean().detach()}
    if variant == "rwr":
        if rewards is None:
            raise ValueError("rwr needs the samples' rewards")
        loss = (rwr_weights(rewards, rwr_temperature).to(mse) * mse).mean()
        return {"loss": loss, "loss_rwr": loss.detach(), "mse": mse.mean().detach()}
    raise ValueError(f"not a sample loss: {variant!r} (sft, rwr)")
