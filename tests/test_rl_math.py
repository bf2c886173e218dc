"""GRPO's pure functions on hand-made tensors: the SDE step's Gaussian and its log-probability,
the Euler limit, rewards, group-relative advantages, the top-k filter and the objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from spatialalign.rl.advantages import EPS, group_advantages, rewards_of, top_k_mask
from spatialalign.rl.config import RLConfig
from spatialalign.rl.objective import grpo_loss
from spatialalign.rl.sde import (
    gaussian_log_prob,
    kl_between_steps,
    sde_step,
    step_mean,
    step_std,
)

# ------------------------------------------------------------------ the SDE step
X = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]])
V = torch.tensor([[1.0, 0.5, -0.5], [2.0, -1.0, 0.0]])
NOISE = torch.tensor([[0.3, -1.2, 0.8], [-0.5, 0.1, 2.0]])


def _hand_step(x, v, eps, s, s_next, eta, cap):
    """One element's step in float64 from the formulas of Flow-GRPO's SDE."""
    g = eta * math.sqrt(s / (1 - (cap if s == 1 else s)))
    dt = s_next - s
    mean = x + x * g**2 / (2 * s) * dt + v * (1 + g**2 * (1 - s) / (2 * s)) * dt
    std = g * math.sqrt(-dt)
    x_next = mean + std * eps
    lp = -((x_next - mean) ** 2) / (2 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return x_next, mean, std, lp


@pytest.mark.parametrize(("s", "s_next"), [(0.8, 0.6), (1.0, 0.9), (0.05, 0.0)])
def test_sde_step_and_log_prob_match_a_hand_computed_gaussian(s, s_next):
    eta, cap = 0.7, 0.9
    x_next, mean, std = sde_step(X, V, s, s_next, eta, cap, NOISE)
    want = [[_hand_step(float(X[b, i]), float(V[b, i]), float(NOISE[b, i]), s, s_next, eta, cap)
             for i in range(3)] for b in range(2)]  # fmt: skip
    w = np.array(want)  # [B, 3, (x_next, mean, std, lp)]
    # float32 arithmetic against float64: a few roundings of values of order 1
    np.testing.assert_allclose(x_next.numpy(), w[..., 0], rtol=0, atol=2e-6)
    np.testing.assert_allclose(mean.numpy(), w[..., 1], rtol=0, atol=2e-6)
    assert float(std) == pytest.approx(w[0, 0, 2], rel=1e-6)
    lp = gaussian_log_prob(x_next, mean, std)
    np.testing.assert_allclose(lp.numpy(), w[..., 3].mean(axis=1), rtol=0, atol=1e-5)
    # the log-probability of an arbitrary point too (not only the sampled one)
    other = X + 0.1
    hand = [np.mean([-((float(other[b, i]) - w[b, i, 1]) ** 2) / (2 * w[b, i, 2] ** 2)
                     - math.log(w[b, i, 2]) - 0.5 * math.log(2 * math.pi) for i in range(3)])
            for b in range(2)]  # fmt: skip
    np.testing.assert_allclose(gaussian_log_prob(other, mean, std).numpy(), hand, atol=1e-4)


def test_per_sample_levels_broadcast_like_scalars():
    s, s_next = torch.tensor([0.8, 0.5]), torch.tensor([0.6, 0.3])
    g, std = step_std(s, s_next, 0.7, 0.9)
    means = step_mean(X, V, s, s_next, g)
    for b in range(2):
        _, m, sd = sde_step(X[b : b + 1], V[b : b + 1], float(s[b]), float(s_next[b]), 0.7, 0.9,
                            NOISE[b : b + 1])  # fmt: skip
        torch.testing.assert_close(means[b : b + 1], m, rtol=0, atol=1e-7)
        assert float(std[b]) == pytest.approx(float(sd), rel=1e-6)


def test_zero_noise_is_the_euler_step_of_the_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(4)
    x, v = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)), torch.randn(2, 3, 4)
    for j, t in enumerate(sched.timesteps):
        want = sched.step(v, t, x, return_dict=False)[0]
        got, mean, std = sde_step(x, v, sched.sigmas[j], sched.sigmas[j + 1], 0.0, sched.sigmas[1])
        assert float(std) == 0.0 and torch.equal(got, mean)
        # another code path doing the same float32 operations: equal to the last ulp
        torch.testing.assert_close(got, want, rtol=0, atol=1e-7)
        x = want


def test_a_noisy_step_needs_its_noise_and_the_kl_of_equal_means_is_zero():
    with pytest.raises(ValueError, match="needs its noise"):
        sde_step(X, V, 0.5, 0.4, 0.7, 0.9)
    _, mean, std = sde_step(X, V, 0.5, 0.4, 0.7, 0.9, NOISE)
    assert torch.equal(kl_between_steps(mean, mean, std), torch.zeros(2))
    kl = kl_between_steps(mean + 0.1, mean, std)
    torch.testing.assert_close(kl, torch.full((2,), 0.01 / (2 * float(std) ** 2)))


# ------------------------------------------------------------------ rewards and advantages
def test_rewards_are_dsr_for_valid_videos_and_the_invalid_reward_otherwise():
    valid = np.array([True, False, True, True])
    dsr = np.array([0.9, np.nan, np.nan, 0.2])  # a valid row with NaN DSR is not scored
    np.testing.assert_array_equal(rewards_of(valid, dsr), [0.9, 0.0, 0.0, 0.2])
    np.testing.assert_array_equal(rewards_of(valid, dsr, -0.5), [0.9, -0.5, -0.5, 0.2])


def test_group_advantages_by_hand():
    r = np.array([[0.0, 1.0], [0.2, 0.2]])
    adv = group_advantages(r)
    np.testing.assert_allclose(adv[0], [-0.5 / (0.5 + EPS), 0.5 / (0.5 + EPS)])
    np.testing.assert_array_equal(adv[1], [0.0, 0.0])
    np.testing.assert_allclose(group_advantages(r, normalize_per_prompt=False)[0], [-0.5, 0.5])
    with pytest.raises(ValueError, match="prompts, group"):
        group_advantages(np.zeros(4))


def test_top_k_keeps_each_groups_k_lowest_and_k_highest():
    r = np.array([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2]])
    np.testing.assert_array_equal(top_k_mask(r, 2), [[True, True, False, False, True, True]])
    np.testing.assert_array_equal(top_k_mask(r, 1), [[True, True, False, False, False, False]])
    # k = 0, or 2k >= G: every video of a group that ranks anything
    assert top_k_mask(r, 0).all() and top_k_mask(r, 3).all()


def test_top_k_breaks_ties_by_index_and_drops_groups_without_a_ranking():
    r = np.array(
        [
            [0.5, 0.5, 0.5, 0.9],  # lowest: the first 0.5 (lower index); highest: 0.9
            [0.0, 0.0, 0.0, 0.0],  # all invalid: no ranking, dropped whole
            [0.3, 0.3, 0.3, 0.3],  # all alike: dropped too
            [0.9, 0.1, 0.9, 0.1],  # ties: the lower index counts as lower (keeps 1 and 2)
        ]
    )
    want = [[True, False, False, True], [False] * 4, [False] * 4, [False, True, True, False]]
    np.testing.assert_array_equal(top_k_mask(r, 1), want)
    np.testing.assert_array_equal(top_k_mask(r, 0)[1:3], [[False] * 4] * 2)
    np.testing.assert_array_equal(top_k_mask(r, 1, min_std=0.5), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="k must be"):
        top_k_mask(r, -1)


def test_kept_per_group_matches_the_mask():
    for g, k in [(8, 2), (8, 0), (8, 4), (6, 1)]:
        cfg = RLConfig(group_size=g, top_k=k)
        r = np.random.default_rng(g + k).random((3, g))
        assert top_k_mask(r, k).sum(axis=1).tolist() == [cfg.kept_per_group()] * 3


def test_items_are_kept_videos_on_steps_of_the_first_fraction():
    from spatialalign.rl.update import select_items, trainable_steps

    assert [trainable_steps(20, f) for f in (0.35, 0.5, 1.0, 0.01)] == [7, 10, 20, 1]
    kept = np.array([True, False, True])
    items = select_items(kept, 20, 3, np.random.default_rng(0), 0.35)
    assert sorted(set(items[:, 0].tolist())) == [0, 2] and len(items) == 6
    assert items[:, 1].max() < 7
    for v in (0, 2):  # distinct steps per video
        assert len(set(items[items[:, 0] == v, 1].tolist())) == 3
    every = select_items(kept, 20, 0, np.random.default_rng(0), 1.0)
    assert sorted(every[every[:, 0] == 0, 1].tolist()) == list(range(20))


# ------------------------------------------------------------------ the objective
def test_grpo_loss_by_hand_inside_and_outside_the_clip_range():
    lp_old = torch.zeros(4)
    lp = torch.tensor([0.0, math.log(1.5), math.log(0.5), math.log(1.5)])
    adv = torch.tensor([1.0, 1.0, 1.0, -1.0])
    out = grpo_loss(lp, lp_old, adv, torch.full((4,), 0.2), clip_range=0.2, kl_coef=0.5)
    # item 0: ratio 1 -> -1; item 1: ratio 1.5, A>0 -> clipped -1.2; item 2: ratio 0.5,
    # A>0 -> max(-0.5, -0.8) = -0.5; item 3: ratio 1.5, A<0 -> max(1.5, 1.2) = 1.5
    want_policy = (-1.0 - 1.2 - 0.5 + 1.5) / 4
    assert float(out["policy_loss"]) == pytest.approx(want_policy, abs=1e-6)
    assert float(out["loss"]) == pytest.approx(want_policy + 0.5 * 0.2, abs=1e-6)
    assert float(out["clip_fraction"]) == pytest.approx(0.75)
    # advantages are clipped before use
    big = grpo_loss(torch.zeros(1), torch.zeros(1), torch.tensor([100.0]), torch.zeros(1),
                    clip_range=0.2, kl_coef=0.0, advantage_clip=5.0)  # fmt: skip
    assert float(big["loss"]) == pytest.approx(-5.0)


def test_the_gradient_raises_a_positive_advantages_log_prob():
    lp = torch.zeros(2, requires_grad=True)
    out = grpo_loss(lp, torch.zeros(2), torch.tensor([1.0, -1.0]), torch.zeros(2),
                    clip_range=0.2, kl_coef=0.0)  # fmt: skip
    out["loss"].backward()
    # gradient descent moves lp against the gradient: up for A > 0, down for A < 0
    assert lp.grad[0] < 0 < lp.grad[1]


def test_config_validation_names_the_field():
    RLConfig().validate()
    for bad, match in [
        ({"group_size": 1}, "group_size"),
        ({"noise_level": 0.0}, "noise_level"),
        ({"top_k": -1}, "top_k"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"adam_beta1": 1.0}, "adam_beta1"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
    ]:
        with pytest.raises(ValueError, match=match):
            RLConfig(**bad).validate()


def _lrs(cfg: RLConfig) -> list[float]:
    from spatialalign.rl.run import make_optimizer

    opt, sched = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg)
    out = []
    for _ in range(cfg.total_updates()):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_the_cosine_schedule_decays_to_zero_over_the_runs_updates():
    cfg = RLConfig(iterations=5, updates_per_iteration=4, learning_rate=2e-3,
                   lr_schedule="cosine")  # fmt: skip
    lrs = _lrs(cfg)
    assert len(lrs) == 20 and lrs[0] == pytest.approx(2e-3)
    # half-way: half the rate (cos(pi/2) = 0); strictly falling; near 0 at the last update
    assert lrs[10] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))
    constant = RLConfig(iterations=5, updates_per_iteration=4, lr_schedule="constant")
    assert _lrs(constant) == [3e-3] * 20


def test_a_decaying_schedule_makes_iterations_part_of_the_settings():
    assert "iterations" in RLConfig(lr_schedule="constant").resume_free()
    assert "iterations" not in RLConfig(lr_schedule="cosine").resume_free()
    assert "keep_videos" in RLConfig(lr_schedule="cosine").resume_free()


def test_the_watch_sheet_shows_the_highest_rewards_first_as_frame_strips():
    from spatialalign.rl.watch import frame_strip, top_indices, top_sheet_png

    assert top_indices(np.array([0.2, 0.9, 0.5, 0.9, 0.0]), 3) == [1, 3, 2]  # ties: lower index
    video = np.arange(12 * 4 * 6 * 3, dtype=np.uint8).reshape(12, 4, 6, 3)
    strip = frame_strip(video, max_frames=3)
    # frames 0, 6 (5.5 rounds to 6), 11 side by side with white one-pixel gaps
    assert strip.shape == (4, 3 * 6 + 2, 3)
    assert np.array_equal(strip[:, :6], video[0]) and np.array_equal(strip[:, 14:], video[11])
    assert np.array_equal(strip[:, 7:13], video[6]) and (strip[:, 6] == 255).all()
    big = np.zeros((2, 200, 300, 3), np.uint8)
    assert frame_strip(big, max_side=96).shape == (50, 2 * 75 + 1, 3)  # strided by 4
    png = top_sheet_png(np.stack([video] * 3), np.array([0.1, 0.8, 0.3]), ["a", "b", "c"], 7)
    assert png[:4] == b"\x89PNG"
