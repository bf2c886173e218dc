"""The GPU benchmark's published config and latent geometry, checked on the CPU (no GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from spatialalign.models.wan.memory import PeakMemory, latent_shape, token_count

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_wan_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_wan_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_resolution_geometry():
    assert latent_shape(81, 480, 832) == (16, 21, 60, 104)
    assert token_count(latent_shape(81, 480, 832)) == 21 * 30 * 52 == 32_760
    with pytest.raises(ValueError, match="4k\\+1"):
        latent_shape(80, 480, 832)


def test_published_config_builds_a_1_3b_transformer():
    import torch
    from diffusers import WanTransformer3DModel

    bench = _bench()
    with torch.device("meta"):
        tr = WanTransformer3DModel(**bench.transformer_config(30))
    n = sum(p.numel() for p in tr.parameters())
    assert 1.3e9 < n < 1.5e9  # Wan2.1-T2V-1.3B: about 1.42 billion weights
    assert tr.config.num_attention_heads * tr.config.attention_head_dim == 1536
    assert bench._full_weight_bytes() == 2 * n
    assert bench.video_size(_args(bench, scale=0.25)) == (81, 128, 208)


def _args(bench, **kw):
    import argparse

    return argparse.Namespace(**{"frames": 81, "height": 480, "width": 832, "scale": 1.0, **kw})


def test_cpu_peak_memory_sees_a_large_allocation():
    import numpy as np

    mem = PeakMemory("cpu").start()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    del block
    mem.stop()
    assert mem.delta >= 60 * 2**20
