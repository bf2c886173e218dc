"""Toy sampling computes what is constant across the denoising steps once per batch
(``constant_context``: the text projection, each cross-attention's keys and values) and
runs under ``torch.inference_mode``; the latents agree with recomputing every step."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("diffusers")

from spatialalign.models.toy.pipeline import (  # noqa: E402
    ToyPipeline,
    constant_context,
    constant_modules,
)
from tolerance import FLOAT32_NET  # noqa: E402

PROMPTS = [
    "In a sunny meadow, a fox is on the left of a stump, then the fox runs to the right of "
    "the stump.",
    "In a kitchen, a cat is on the right of a bowl, then the cat walks to the left of the bowl.",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@torch.no_grad()
def recomputed_every_step(pipe: ToyPipeline, prompts, seeds, steps: int, guidance: float):
    """The denoising loop as before the cache: every module runs at every step."""
    latents = pipe.prepare_latents(seeds)
    context = torch.cat([pipe.encode_prompt(prompts), pipe.encode_prompt([""] * len(prompts))])
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = torch.cat([latents, latents])
        v = pipe.transformer(
            hidden_states=x,
            timestep=t.expand(2 * len(seeds)),
            encoder_hidden_states=context,
            return_dict=False,
        )[0]
        v_cond, v_uncond = v.chunk(2)
        latents = scheduler.step(
            v_uncond + guidance * (v_cond - v_uncond), t, latents, return_dict=False
        )[0]
    return latents


def count_calls(modules) -> tuple[list[int], list]:
    counts = [0] * len(modules)
    handles = []
    for i, m in enumerate(modules):

        def hook(*_, i=i):
            counts[i] += 1

        handles.append(m.register_forward_hook(hook))
    return counts, handles


def with_lora(pipe: ToyPipeline) -> ToyPipeline:
    """The SpatialAlign LoRA targets (text projection, cross-attention k/v), non-zero."""
    from peft import LoraConfig

    targets = [
        "condition_embedder.text_embedder.linear_1",
        "condition_embedder.text_embedder.linear_2",
        "attn2.to_k",
        "attn2.to_v",
    ]
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    with torch.no_grad():
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.3)
    return pipe


@pytest.mark.parametrize("lora", [False, True], ids=["base", "lora"])
def test_cached_context_gives_the_latents_of_recomputing_every_step(lora):
    pipe = ToyPipeline.random(seed=3)
    if lora:
        pipe = with_lora(pipe)
    seeds = [4, 5]
    want = recomputed_every_step(pipe, PROMPTS, seeds, steps=4, guidance=3.0)
    got = pipe.sample_latents(PROMPTS, seeds, num_inference_steps=4, guidance_scale=3.0)
    torch.testing.assert_close(got, want, **FLOAT32_NET)
    # no module is left patched after sampling
    assert all("forward" not in m.__dict__ for m in constant_modules(pipe.transformer))


def test_constant_modules_run_once_per_batch_not_once_per_step():
    pipe = with_lora(ToyPipeline.random(seed=3))
    mods = constant_modules(pipe.transformer)
    assert len(mods) == 1 + 3 * pipe.transformer.config.num_layers
    attn2 = [b.attn2 for b in pipe.transformer.blocks]
    # the LoRA-wrapped modules are the ones cached (their output includes the adapter)
    assert all(hasattr(a.to_k, "lora_A") and any(m is a.to_k for m in mods) for a in attn2)
    # what runs only when a cached module really computes (hooks on the module itself
    # fire on every call, cached or not)
    inner = [pipe.transformer.condition_embedder.text_embedder.linear_1]
    inner += [a.to_k.base_layer for a in attn2] + [a.to_v.base_layer for a in attn2]
    counts, handles = count_calls(inner)
    try:
        pipe.sample_latents(PROMPTS, [0, 1], num_inference_steps=5)
        assert counts == [1] * len(inner)
        pipe([PROMPTS[0]] * 3, [0, 1, 2], num_inference_steps=5, batch_size=2)
        assert counts == [3] * len(inner)  # two batches more
    finally:
        for h in handles:
            h.remove()


def test_constant_context_recomputes_for_a_new_input_and_restores_on_error():
    pipe = ToyPipeline.random(seed=0)
    emb = pipe.transformer.condition_embedder.text_embedder
    a, b = torch.randn(2, 16, 16), torch.randn(2, 16, 16)
    with pytest.raises(RuntimeError, match="boom"), torch.inference_mode():
        with constant_context(pipe.transformer):
            first = emb(a)
            assert emb(a) is first  # the same input tensor: the cached output
            other = emb(b)
            assert other is not first
            # the same module's forward on the same tensor in this process (one code path,
            # so bit equality is the right check)
            assert torch.equal(other, emb.__class__.forward(emb, b))
            assert emb(a.clone()) is not first  # equal values, another tensor: recomputed
            raise RuntimeError("boom")
    assert "forward" not in emb.__dict__
    with torch.inference_mode():
        assert emb(a) is not emb(a)


def test_sampled_latents_are_ordinary_tensors():
    pipe = ToyPipeline.random(seed=0)
    lat = pipe.sample_latents(PROMPTS[:1], [0], num_inference_steps=2)
    assert not lat.is_inference() and not lat.requires_grad
    w = torch.ones_like(lat, requires_grad=True)
    (lat * w).sum().backward()  # usable in autograd afterwards (e.g. as a training target)
    assert w.grad is not None
