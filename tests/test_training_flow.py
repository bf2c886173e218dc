"""Training building blocks: flow matching (noise levels, target) and safetensors checkpoints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from spatialalign.trainlib.checkpoint import (  # noqa: E402
    load_training_state,
    save_training_state,
)
from spatialalign.trainlib.flow import (  # noqa: E402
    flow_matching_loss,
    noisy_latents,
    sample_sigmas,
    timesteps,
    velocity_target,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sigma_sampling_modes():
    def draw(mode, **kw):
        return sample_sigmas(20000, torch.Generator().manual_seed(0), mode=mode, **kw)

    s1, s3, ln = draw("uniform"), draw("shift", shift=3.0), draw("logit-normal")
    for s in (s1, s3, ln):
        assert 0 <= s.min() and s.max() <= 1
    assert abs(s1.mean() - 0.5) < 0.01 and s3.mean() > 0.65  # shift favours high noise
    # shift 1 is uniform, same draws: 1*s / (1 + 0*s) == s exactly in IEEE arithmetic
    assert torch.equal(draw("shift", shift=1.0), s1)
    assert abs(ln.mean() - 0.5) < 0.01 and ln.std() < s1.std()  # concentrated mid-range
    assert torch.equal(draw("logit-normal"), ln)  # the generator decides
    with pytest.raises(ValueError, match="unknown timestep sampling"):
        draw("cosine")


def test_flow_matching_target():
    x0, noise = torch.randn(3, 4, 2, 4, 4), torch.randn(3, 4, 2, 4, 4)
    sig = torch.tensor([0.2, 0.5, 0.9])
    x_t = noisy_latents(x0, noise, sig)
    torch.testing.assert_close(x_t[1], 0.5 * x0[1] + 0.5 * noise[1])
    torch.testing.assert_close(timesteps(sig), torch.tensor([200.0, 500.0, 900.0]))

    class Oracle(torch.nn.Module):
        """Knows x0 and noise: returns the exact velocity eps - x0."""

        def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
            s = (timestep / 1000).view(-1, 1, 1, 1, 1)
            return ((hidden_states - (1 - s) * x0) / s - x0,)

    assert flow_matching_loss(Oracle(), x0, None, sig, noise) < 1e-8
    torch.testing.assert_close(velocity_target(x0, noise), noise - x0)


def test_training_state_round_trip(tmp_path):
    """Optimizer, scheduler and every RNG come back exactly: training continues identically."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, opt, get_cosine_schedule_with_warmup(opt, 2, 10)

    def train(model, opt, sched, gen, n):
        out = []
        for _ in range(n):
            x = torch.randn(4, 3, generator=gen) + torch.rand(1) + random.random()
            x = x + float(np.random.rand())
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            out.append(loss.item())
        return out

    model, opt, sched = make()
    gen = torch.Generator().manual_seed(1)
    train(model, opt, sched, gen, 3)
    path = save_training_state(
        tmp_path / "ckpt.safetensors",
        {"model." + k: v for k, v in model.state_dict().items()},
        opt,
        {"step": 3},
        scheduler=sched,
        generators={"data": gen},
    )
    expected = train(model, opt, sched, gen, 4)

    model2, opt2, sched2 = make()
    gen2 = torch.Generator().manual_seed(99)
    torch.manual_seed(123), random.seed(5), np.random.seed(7)  # scrambled on purpose
    weights, meta = load_training_state(path, opt2, scheduler=sched2, generators={"data": gen2})
    model2.load_state_dict({k[len("model.") :]: v for k, v in weights.items()})
    assert meta["step"] == 3 and sched2.last_epoch == 3
    # bit equality is right: resume vs uninterrupted, one process, one code path
    assert train(model2, opt2, sched2, gen2, 4) == expected
    assert b"pickle" not in path.read_bytes()[:200]
