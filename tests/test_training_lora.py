"""The SpatialAlign LoRA targets (one definition in spatialalign.lora) and the reference model."""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("peft")

from spatialalign.lora import (  # noqa: E402
    LORA_TARGET_PATTERN,
    adapter_disabled,
    lora_config,
    lora_target_names,
)
from spatialalign.toy.pipeline import ToyPipeline  # noqa: E402
from tiny_models import tiny_wan_transformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pattern_matches_only_text_projection_and_cross_attention_kv():
    p = re.compile(LORA_TARGET_PATTERN)
    yes = [
        "condition_embedder.text_embedder.linear_1",
        "condition_embedder.text_embedder.linear_2",
        "blocks.0.attn2.to_k",
        "blocks.17.attn2.to_v",
        "transformer.blocks.3.attn2.to_k",  # under a pipeline prefix
    ]
    no = [
        "condition_embedder.time_embedder.linear_1",
        "condition_embedder.time_embedder.linear_2",
        "blocks.0.attn1.to_k",
        "blocks.0.attn1.to_v",
        "blocks.0.attn2.to_q",
        "blocks.0.attn2.to_out.0",
        "blocks.0.attn2.add_k_proj",
        "blocks.0.attn2.to_k.lora_A",
        "condition_embedder.text_embedder.linear_10",
    ]
    assert all(p.fullmatch(n) for n in yes)
    assert not any(p.fullmatch(n) for n in no)


@pytest.mark.parametrize("model", ["toy", "wan"])
def test_adapter_wraps_exactly_2_plus_2_per_layer(model):
    transformer = ToyPipeline.random(0).transformer if model == "toy" else tiny_wan_transformer(3)
    n_layers = transformer.config.num_layers
    assert len(lora_target_names(transformer)) == 2 + 2 * n_layers
    transformer.add_adapter(lora_config())
    wrapped = [n for n, _ in transformer.named_modules() if n.endswith(".lora_A")]
    assert len(wrapped) == 2 + 2 * n_layers
    assert not any("time_embedder" in n or "attn1" in n for n in wrapped)
    cfg = transformer.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha) == (16, 16)


def test_reference_with_adapter_disabled_equals_the_base_model():
    pipe = ToyPipeline.random(0)
    tr = pipe.transformer
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, *pipe.latent_shape, generator=gen)
    ctx = torch.randn(2, 16, 16, generator=gen)
    t = torch.tensor([300.0, 800.0])

    def run():
        with torch.no_grad():
            return tr(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]

    base = run()
    tr.add_adapter(lora_config(rank=4))
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    adapted = run()
    assert not torch.equal(adapted, base)
    with adapter_disabled(tr):
        assert torch.equal(run(), base)
    assert torch.equal(run(), adapted)  # enabled again after the block
