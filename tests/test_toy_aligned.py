"""The shipped aligned toy adapter (python/spatialalign/models/toy/weights/aligned/): a diffusers
LoRA of the SpatialAlign targets (rank 16 / alpha 16) that loads into the shipped toy
pipeline and changes what it samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("diffusers")

from safetensors import safe_open  # noqa: E402
from spatialalign.lora.adapter import lora_target_names  # noqa: E402
from spatialalign.toy import ToyPipeline  # noqa: E402

ALIGNED = (
    Path(__file__).resolve().parents[1]
    / "python/spatialalign/models/toy/weights/aligned/pytorch_lora_weights.safetensors"
)
PROMPT = (
    "In a garden, a fox is on the left of a stump, then the fox runs to the right of the stump."
)


def _modules(keys) -> set[str]:
    out = set()
    for k in keys:
        name = k.removeprefix("transformer.")
        for tail in (".lora_A.weight", ".lora_B.weight"):
            if name.endswith(tail):
                out.add(name[: -len(tail)])
    return out


def test_aligned_adapter_is_shipped_small_and_well_formed():
    assert ALIGNED.is_file()
    assert 50_000 < ALIGNED.stat().st_size < 3_000_000
    pipe = ToyPipeline.from_pretrained(None)
    n_layers = pipe.transformer.config.num_layers
    with safe_open(str(ALIGNED), framework="pt") as f:
        keys = list(f.keys())
        meta = f.metadata() or {}
        ranks = {f.get_tensor(k).shape[0] for k in keys if k.endswith("lora_A.weight")}
    modules = _modules(keys)
    assert len(modules) == 2 + 2 * n_layers
    assert modules == set(lora_target_names(pipe.transformer))
    assert len(keys) == 2 * len(modules)  # lora_A and lora_B, nothing else
    assert ranks == {16}
    cfg = json.loads(meta["lora_adapter_metadata"])  # diffusers: "transformer."-prefixed keys
    assert cfg["transformer.r"] == 16 and float(cfg["transformer.lora_alpha"]) == 16.0
    assert cfg["transformer.rank_pattern"] == {} and cfg["transformer.alpha_pattern"] == {}


def test_aligned_adapter_loads_into_the_shipped_toy_pipeline_and_changes_it(one_torch_thread):
    pipe = ToyPipeline.from_pretrained(None)
    before = pipe([PROMPT] * 2, seeds=[0, 1], num_inference_steps=8)
    lat_before = pipe.sample_latents([PROMPT], [0], num_inference_steps=8)
    pipe.load_lora_weights(ALIGNED)
    wrapped = {
        n.removesuffix(".lora_A")
        for n, _ in pipe.transformer.named_modules()
        if n.endswith(".lora_A")
    }
    assert len(wrapped) == 2 + 2 * pipe.transformer.config.num_layers
    after = pipe([PROMPT] * 2, seeds=[0, 1], num_inference_steps=8)
    lat_after = pipe.sample_latents([PROMPT], [0], num_inference_steps=8)
    assert before.shape == after.shape
    assert not torch.allclose(lat_before, lat_after, atol=1e-3)
    assert not np.array_equal(before, after)
