"""Loading Wan checkpoints: both layouts, one-line errors, runtime switches reaching the pipeline.

A tiny random ``WanPipeline`` (``test_sampling_wan.build_tiny_wan``) is saved in diffusers
format and loaded through the CLI's code path; its transformer is also written in the
original Wan2.1 key naming (the inverse of diffusers' conversion) to test that layout.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.models.backends import BackendConfig, load_backend
from spatialalign.models.wan import WanLoadOptions, detect_layout, load_wan_pipeline
from spatialalign.models.wan.original import load_original_transformer, load_original_vae
from spatialalign.models.wan.runtime import ATTENTION, check_runtime, place
from spatialalign.prompts import read_prompts, write_prompts
from test_sampling_wan import GEOMETRY, build_tiny_wan
from tolerance import FLOAT32_NET, assert_videos_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# diffusers name -> original Wan2.1 name (applied in order; norm2/norm3 swap separately)
TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
]


def to_original_names(state: dict) -> dict:
    """A diffusers ``WanTransformer3DModel`` state dict in the original Wan2.1 naming."""
    out = {}
    for key, value in state.items():
        new = key
        for a, b in TO_ORIGINAL:
            new = new.replace(a, b)
        new = re.sub(r"\.norm([23])\.", lambda m: f".norm{5 - int(m.group(1))}.", new)
        if new == "scale_shift_table":
            new = "head.modulation"
        new = new.replace(".scale_shift_table", ".modulation")
        out[new] = value.contiguous()
    return out


@pytest.fixture(scope="module")
def prompts():
    return read_prompts(OFFICIAL_CSV)[:2]


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory, prompts) -> Path:
    return build_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny-wan", prompts)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _original_dir(wan_dir: Path, out: Path, *, prefix: str = "", config: dict | None = None):
    """The tiny transformer as the original release stores it (+ its config.json)."""
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    tr = WanTransformer3DModel.from_pretrained(wan_dir, subfolder="transformer")
    state = {prefix + k: v for k, v in to_original_names(tr.state_dict()).items()}
    out.mkdir(parents=True)
    save_file(state, str(out / "diffusion_pytorch_model.safetensors"))
    cfg = {"model_type": "t2v", "dim": 24, "ffn_dim": 32, "freq_dim": 256, "in_dim": 16}
    cfg.update({"out_dim": 16, "num_heads": 2, "num_layers": 2, "eps": 1e-6, "text_len": 512})
    cfg.update(config or {})
    (out / "config.json").write_text(json.dumps(cfg))
    return tr, out


@pytest.fixture
def keep_attention_backend():
    """diffusers' set_attention_backend also sets a process-wide default: restore it."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    old = _AttentionBackendRegistry.get_active_backend()[0]
    yield
    _AttentionBackendRegistry.set_active_backend(old)


# ----------------------------------------------------------------------- diffusers layout
@pytest.mark.usefixtures("keep_attention_backend")
def test_cli_path_loads_with_switches(wan_dir, prompts):
    cfg = BackendConfig(
        model="wan",
        model_path=str(wan_dir),
        device="cpu",
        vae_tiling=True,
        vae_slicing=True,
        attention="sdpa-math",
        max_sequence_length=32,
        **GEOMETRY,
    )
    backend = load_backend(cfg)
    pipe = backend.pipe
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    assert pipe.transformer.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    backends = {
        m.processor._attention_backend
        for m in pipe.transformer.modules()
        if hasattr(getattr(m, "processor", None), "_attention_backend")
    }
    assert {str(getattr(b, "value", b)) for b in backends} == {ATTENTION["sdpa-math"]}
    assert backend.settings()["vae_tiling"] is True  # recorded: it changes the pixels
    video = backend.generate([prompts[0].text], [0])
    assert video.shape == (1, 5, 16, 16, 3) and video.dtype == np.uint8
    # the default records nothing new (old runs' videos stay current)
    plain = load_backend(BackendConfig(model="wan", model_path=str(wan_dir), device="cpu"))
    assert "vae_tiling" not in plain.settings()


def test_layout_errors_name_the_missing_part(wan_dir, tmp_path):
    broken = _copy(wan_dir, tmp_path / "no-transformer")
    shutil.rmtree(broken / "transformer")
    with pytest.raises(
        SpatialAlignError, match=r"diffusers WanPipeline directory .* lacks transformer/"
    ):
        detect_layout(broken)
    pickled = _copy(wan_dir, tmp_path / "pickled")
    st = pickled / "vae" / "diffusion_pytorch_model.safetensors"
    st.rename(st.with_suffix(".bin"))
    with pytest.raises(SpatialAlignError, match=r"vae/ holds only pickled weights .*never loaded"):
        detect_layout(pickled)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    with pytest.raises(SpatialAlignError, match="names FluxPipeline, not WanPipeline"):
        detect_layout(tmp_path / "other")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        SpatialAlignError, match="not a diffusers pipeline directory .* not the original"
    ):
        detect_layout(tmp_path / "empty")


def test_mismatched_config_is_one_line(wan_dir, tmp_path):
    bad = _copy(wan_dir, tmp_path / "bad")
    cfg_path = bad / "transformer" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["ffn_dim"] = 48
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(SpatialAlignError) as e:
        load_wan_pipeline(bad)
    msg = str(e.value)
    assert "\n" not in msg and "cannot load transformer/" in msg and "diffusers" in msg


# ------------------------------------------------------------------------ runtime options
def test_offload_is_refused_without_cuda_before_loading(tmp_path):
    with pytest.raises(SpatialAlignError, match="--offload model needs a CUDA device"):
        load_wan_pipeline(tmp_path / "not-even-there", WanLoadOptions(offload="model"))
    with pytest.raises(SpatialAlignError, match="unknown --attention"):
        check_runtime("cpu", attention="flash_hub")  # hub kernels download code: not offered
    with pytest.raises(SpatialAlignError, match="unknown --offload"):
        check_runtime("cuda", offload="disk")


def test_offload_calls_reach_the_pipeline():
    calls = []

    class Pipe:
        def to(self, device):
            calls.append(("to", device))

        def enable_model_cpu_offload(self, device):
            calls.append(("model", str(device)))

        def enable_sequential_cpu_offload(self, device):
            calls.append(("sequential", str(device)))

    for mode in ("none", "model", "sequential"):
        place(Pipe(), "cuda:1", mode)
    assert calls == [("to", "cuda:1"), ("model", "cuda:1"), ("sequential", "cuda:1")]


@pytest.mark.usefixtures("keep_attention_backend")
def test_cli_options(wan_dir, prompts, tmp_path, capsys):
    write_prompts(prompts[:1], tmp_path / "prompts.parquet")
    base = ["sample", str(tmp_path), "--model", "wan", "--model-dir", str(wan_dir)]
    base += ["--num-frames", "5", "--height", "16", "--width", "16", "--steps", "1"]
    base += ["--seeds", "1", "--device", "cpu"]
    with pytest.raises(SystemExit) as e:
        main([*base, "--offload", "sequential"])
    assert e.value.code != 0
    assert "--offload sequential needs a CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", str(tmp_path), "--vae-tiling"])  # toy: wan-only switch refused
    assert "applies to --model wan only" in capsys.readouterr().err
    main([*base, "--vae-tiling", "--attention", "sdpa"])
    from spatialalign.rundir.layout import RunDir

    rec = RunDir(tmp_path).sample_records()
    settings = next(iter(rec.values()))["settings"]
    assert settings["vae_tiling"] is True


# ------------------------------------------------------------------------- original layout
def test_original_transformer_equals_the_diffusers_one(wan_dir, tmp_path):
    for prefix in ("", "model.diffusion_model."):  # Wan/DiffSynth files, ComfyUI's prefix
        tr, root = _original_dir(wan_dir, tmp_path / f"orig{len(prefix)}", prefix=prefix)
        files = sorted(root.glob("diffusion_pytorch_model*.safetensors"))
        got = load_original_transformer(files, root / "config.json", torch.float32)
        assert got.config.num_layers == 2 and got.config.num_attention_heads == 2
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 16, 2, 4, 4, generator=g)
        ctx = torch.randn(1, 7, 32, generator=g)
        t = torch.tensor([500.0])
        with torch.no_grad():
            want = tr(x, t, ctx, return_dict=False)[0]
            have = got(x, t, ctx, return_dict=False)[0]
        # two code paths (original keys converted vs diffusers' own): float32 tolerance
        torch.testing.assert_close(have, want, **FLOAT32_NET)


def test_original_layout_errors(wan_dir, tmp_path):
    _, root = _original_dir(wan_dir, tmp_path / "orig")
    with pytest.raises(SpatialAlignError, match=r"original Wan2.1 layout in .* lacks the VAE"):
        detect_layout(root)
    torch.save({"decoder.conv1.weight": torch.zeros(2)}, root / "Wan2.1_VAE.pth")
    torch.save({"x": torch.zeros(1)}, root / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(SpatialAlignError, match="Wan's own T5 format.*--text-encoder-dir"):
        detect_layout(root)
    layout = detect_layout(root, text_encoder_dir=wan_dir)  # a diffusers dir's text_encoder/
    assert layout.kind == "original"
    assert layout.files["text_encoder"] == [wan_dir / "text_encoder"]
    assert layout.files["tokenizer"] == [wan_dir / "tokenizer"]
    # the VAE .pth holds plain tensors but not Wan's VAE: named, one line
    with pytest.raises(SpatialAlignError, match=r"Wan2.1_VAE.pth: the VAE weights do not fit"):
        load_wan_pipeline(root, WanLoadOptions(text_encoder_dir=str(wan_dir)))


def test_original_pickles_and_wrong_config_refused(wan_dir, tmp_path):
    import argparse

    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save({"w": argparse.Namespace(a=1)}, path)  # unpickling would build an object
    with pytest.raises(SpatialAlignError, match="refused .*weights_only"):
        load_original_vae(path)
    _, root = _original_dir(wan_dir, tmp_path / "orig", config={"num_layers": 30})
    files = [root / "diffusion_pytorch_model.safetensors"]
    with pytest.raises(SpatialAlignError, match="config.json says num_layers 30 .* have 2"):
        load_original_transformer(files, root / "config.json", torch.float32)
    state_path = files[0]
    from safetensors.torch import load_file, save_file

    state = load_file(str(state_path))
    del state["blocks.1.ffn.2.bias"]
    save_file(state, str(state_path))
    with pytest.raises(SpatialAlignError, match="no config.json to tell the attention heads"):
        load_original_transformer(files, None, torch.float32)
    (root / "config.json").write_text(json.dumps({"num_heads": 2}))
    with pytest.raises(SpatialAlignError, match=r"transformer weights do not fit: 1 missing"):
        load_original_transformer(files, root / "config.json", torch.float32)


def test_original_layout_pipeline_samples_like_the_diffusers_one(wan_dir, prompts, tmp_path,
                                                                  monkeypatch):  # fmt: skip
    """The original layout assembled into a WanPipeline (transformer converted, text encoder
    and tokenizer from --text-encoder-dir, scheduler/ beside the files) samples exactly what
    the diffusers directory does. The VAE conversion is stubbed with the tiny diffusers VAE:
    diffusers' Wan VAE conversion is written for the full-size VAE only."""
    from diffusers import AutoencoderKLWan

    _, root = _original_dir(wan_dir, tmp_path / "orig")
    torch.save({"unused": torch.zeros(1)}, root / "Wan2.1_VAE.pth")
    shutil.copytree(wan_dir / "scheduler", root / "scheduler")
    tiny_vae = AutoencoderKLWan.from_pretrained(wan_dir, subfolder="vae")
    monkeypatch.setattr("spatialalign.models.wan.original.load_original_vae", lambda path: tiny_vae)
    cfg = dict(model="wan", device="cpu", max_sequence_length=32, **GEOMETRY)
    orig = load_backend(BackendConfig(model_path=str(root), text_encoder_dir=str(wan_dir), **cfg))
    ref = load_backend(BackendConfig(model_path=str(wan_dir), **cfg))
    assert type(orig.pipe.scheduler) is type(ref.pipe.scheduler)
    text = [prompts[0].text]
    # the same weights through two loaders (two code paths): the float frames agree to
    # float32 tolerance, the uint8 videos a user gets within a rounding level
    torch.testing.assert_close(
        torch.from_numpy(orig.generate_float(text, [0])),
        torch.from_numpy(ref.generate_float(text, [0])),
        **FLOAT32_NET,
    )
    assert_videos_close(orig.generate(text, [0]), ref.generate(text, [0]))
    assert orig.identity() != ref.identity() and "+te:" in orig.identity()
