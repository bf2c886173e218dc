"""Each loss variant against values computed by hand on fixed small tensors."""

from __future__ import annotations

import math

import pytest
import torch
from spatialalign.training.losses import is_pair_variant, pair_loss, sample_loss

# two pairs, two elements each; per-sample mse written out beside each tensor
TARGET_W = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
PRED_W = torch.tensor([[1.0, 1.0], [1.0, 3.0]])  # mse_w     = [1, 2]
REF_W = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # ref_mse_w = [2, 0]
TARGET_L = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
PRED_L = torch.tensor([[1.0, -1.0], [0.0, 2.0]])  # mse_l     = [1, 2]
REF_L = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # ref_mse_l = [0, 4]
# score_w = ref - mse = [1, -2], score_l = [-1, 2], score_w - score_l = [2, -4]
# zo: mean((PRED_W-REF_W)^2) = (1+1+0+4)/4 = 1.5, likewise 1.5 for the losers -> 3


def _softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def _pair(variant, **kw):
    pw = PRED_W.clone().requires_grad_()
    out = pair_loss(variant, pw, PRED_L, REF_W, REF_L, TARGET_W, TARGET_L, **kw)
    return out, pw


def test_dpo_zo_default():
    out, _ = _pair("dpo+zo")
    l_dpo = (_softplus(-2) + _softplus(4)) / 2
    assert out["loss_dpo"].item() == pytest.approx(l_dpo)
    assert out["loss_zo"].item() == pytest.approx(3.0)
    assert out["loss"].item() == pytest.approx(l_dpo + 0.25 * 3.0)
    assert out["score_w"].item() == pytest.approx(-0.5)  # mean of [1, -2]
    assert out["score_l"].item() == pytest.approx(0.5)
    assert out["margin"].item() == pytest.approx(-1.0)  # mean of [2, -4]
    assert out["accuracy"].item() == 0.5


def test_dpo_beta_and_clip():
    out, _ = _pair("dpo", beta=2.0)  # 2*[2, -4] = [4, -8] -> clipped to [4, -5]
    assert out["loss"].item() == pytest.approx((_softplus(-4) + _softplus(5)) / 2)
    assert "loss_zo" not in out and out["margin"].item() == pytest.approx(-2.0)
    # beyond the clip the DPO term gives no gradient
    out, pw = _pair("dpo", beta=10.0)
    out["loss"].backward()
    assert torch.count_nonzero(pw.grad) == 0


def test_dpo_zo_lambda_and_gradients_only_through_the_policy():
    ref_w = REF_W.clone().requires_grad_()
    out = pair_loss(
        "dpo+zo", PRED_W, PRED_L, ref_w, REF_L, TARGET_W, TARGET_L, lambda_zo=2.0, beta=0.5
    )
    l_dpo = (_softplus(-1) + _softplus(2)) / 2  # 0.5*[2, -4] = [1, -2]
    assert out["loss"].item() == pytest.approx(l_dpo + 2.0 * 3.0)
    assert not out["loss"].requires_grad  # nothing trainable was passed


def test_dpo_sft():
    out, _ = _pair("dpo+sft", lambda_sft=0.5)
    l_dpo = (_softplus(-2) + _softplus(4)) / 2
    assert out["loss_sft"].item() == pytest.approx(1.5)  # mean mse_w
    assert out["loss"].item() == pytest.approx(l_dpo + 0.5 * 1.5)


def test_sft_and_rwr():
    out = sample_loss("sft", PRED_W, TARGET_W)
    assert out["loss"].item() == pytest.approx(1.5)
    rewards = torch.tensor([0.9, 0.1])
    out = sample_loss("rwr", PRED_W, TARGET_W, rewards, rwr_temperature=0.2)
    z = math.exp(4.5) + math.exp(0.5)
    w0, w1 = 2 * math.exp(4.5) / z, 2 * math.exp(0.5) / z  # softmax(r/T) * batch
    assert out["loss"].item() == pytest.approx((w0 * 1.0 + w1 * 2.0) / 2)
    equal = sample_loss("rwr", PRED_W, TARGET_W, torch.tensor([0.5, 0.5]))
    assert equal["loss"].item() == pytest.approx(1.5)  # equal rewards: plain flow matching


def test_variant_names():
    assert is_pair_variant("dpo+zo") and not is_pair_variant("rwr")
    with pytest.raises(ValueError, match="unknown loss"):
        is_pair_variant("ppo")
    with pytest.raises(ValueError, match="not a pair loss"):
        _pair("sft")
    with pytest.raises(ValueError, match="rewards"):
        sample_loss("rwr", PRED_W, TARGET_W)
