"""The SpatialAlign LoRA targets (one definition in spatialalign.lora.adapter), the reference model, and
the checks on an adapter loaded for sampling."""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("peft")

from spatialalign.lora.adapter import (  # noqa: E402
    LORA_TARGET_PATTERN,
    adapter_disabled,
    lora_config,
    lora_target_names,
)
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
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
        # bit equality is right here (tests/README.md): a disabled peft layer calls the same
        # base layer on the same input, so this is one code path, not a tolerance question
        assert torch.equal(run(), base)
    assert torch.equal(run(), adapted)  # enabled again after the block


# ------------------------------------------------------------------------ sample --adapter
def _toy_adapter(tmp_path):
    """A toy model directory and a random SpatialAlign adapter for it (diffusers format)."""
    from diffusers import WanPipeline
    from peft.utils import get_peft_model_state_dict

    model_dir = ToyPipeline.random(seed=1).save_pretrained(tmp_path / "toy")
    transformer = ToyPipeline.from_pretrained(model_dir).transformer
    transformer.add_adapter(lora_config(rank=4))
    with torch.no_grad():
        for n, p in transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    WanPipeline.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    return model_dir, tmp_path / "lora" / "pytorch_lora_weights.safetensors"


def _rewrite(path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def _load_toy_backend(model_dir, adapter):
    from spatialalign.models.backends import BackendConfig, load_backend

    return load_backend(
        BackendConfig(model="toy", model_path=str(model_dir), device="cpu", adapter=str(adapter))
    )


@pytest.mark.parametrize("bad", ["nan", "inf", "int8"])
def test_sample_refuses_an_adapter_with_bad_values(tmp_path, bad):
    from spatialalign.core.errors import SpatialAlignError

    model_dir, lora = _toy_adapter(tmp_path)
    key = "transformer.blocks.0.attn2.to_v.lora_B.weight"

    def change(tensors):
        if bad == "int8":
            tensors[key] = torch.ones_like(tensors[key], dtype=torch.int8)
        else:
            tensors[key] = tensors[key].clone()
            tensors[key][0, 0] = float(bad)

    _rewrite(lora, change)
    want = "not floating point" if bad == "int8" else "NaN or infinite"
    with pytest.raises(SpatialAlignError, match=rf"{re.escape(key)}.*{want}") as info:
        _load_toy_backend(model_dir, lora)
    assert "\n" not in str(info.value)


def test_sample_wrong_shape_adapter_is_one_line(tmp_path, capfd):
    from spatialalign.core.errors import SpatialAlignError

    model_dir, lora = _toy_adapter(tmp_path)

    def widen(tensors):  # every lora_A for inputs twice as wide: an adapter for another model
        for k in [k for k in tensors if ".lora_A." in k]:
            tensors[k] = torch.zeros(tensors[k].shape[0], 2 * tensors[k].shape[1])

    _rewrite(lora, widen)
    n_bad = sum(".lora_A." in k for k in _keys(lora))
    with pytest.raises(SpatialAlignError) as info:
        _load_toy_backend(model_dir, lora)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert re.search(rf"{n_bad} tensors? .*shape", msg), msg
    first = re.search(
        r"([\w.]+\.lora_A\.weight): expected \((\d+), (\d+)\), got \((\d+), (\d+)\)", msg
    )
    assert first, msg
    assert int(first.group(5)) == 2 * int(first.group(3))
    assert "size mismatch" not in capfd.readouterr().err  # no multi-line dump from diffusers


def _keys(path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_wan_sample_other_trainers_names_diffusers_cannot_convert_is_one_line(tmp_path):
    """diffusers' musubi converter wants every block linear and no text_embedding: our
    targets in kohya names make it raise IndexError, which must not escape as a traceback."""
    from diffusers import WanPipeline
    from peft.utils import get_peft_model_state_dict
    from spatialalign.core.errors import SpatialAlignError
    from spatialalign.lora.adapter import load_lora_into_pipeline
    from spatialalign.lora.convert import convert_lora

    transformer = tiny_wan_transformer(2)
    transformer.add_adapter(lora_config(rank=4))
    WanPipeline.save_lora_weights(
        tmp_path / "ours", transformer_lora_layers=get_peft_model_state_dict(transformer)
    )
    convert_lora(tmp_path / "ours", tmp_path / "kohya.safetensors", "kohya")
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=tiny_wan_transformer(2),
        scheduler=None,
    )
    with pytest.raises(SpatialAlignError, match="convert-lora .* --to diffusers") as info:
        load_lora_into_pipeline(pipe, tmp_path / "kohya.safetensors")
    assert "\n" not in str(info.value)
