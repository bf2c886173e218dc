"""The toy T2V model: codec, text encoder, Wan transformer, pipeline, LoRA, pretraining."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import WanTransformer3DModel  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.models.toy.codec import (  # noqa: E402
    ToyCodec,
    ToyCodecConfig,
    frames_to_tensor,
    tensor_to_frames,
)
from spatialalign.models.toy.model import ToyTransformerConfig, build_transformer  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.models.toy.text import (  # noqa: E402
    ROLE_ID,
    ToyTextConfig,
    ToyTextEncoder,
    build_vocab,
    tokens_for,
)
from spatialalign.prompts import parse_prompt  # noqa: E402
from tolerance import FLOAT32_NET, VIDEO_MEAN_LEVELS, assert_videos_close  # noqa: E402

PROMPT = "In a sunny meadow, a fox is on the left of a stump, then the fox runs to the right of the stump."
PROMPT_RT = PROMPT.replace("on the left of", "on the right of").replace(
    "to the right of", "to the top of"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe() -> ToyPipeline:
    return ToyPipeline.random(seed=0)


# ---------------------------------------------------------------------------- codec
def test_codec_shapes_and_compression():
    codec = ToyCodec(ToyCodecConfig(hidden_channels=8))
    x = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    z = codec.encode(x).latent_dist.mode()
    assert z.shape == (2, 4, 9, 8, 8)
    assert codec.decode(z).sample.shape == x.shape
    frames = np.random.default_rng(0).integers(0, 256, (3, 9, 16, 16, 3), dtype=np.uint8)
    lat = codec.encode_frames(frames)
    assert lat.shape == (3, 4, 9, 8, 8)
    out = codec.decode_frames(lat)
    assert out.shape == frames.shape and out.dtype == np.uint8


def test_codec_normalisation_round_trip():
    codec = ToyCodec(ToyCodecConfig(hidden_channels=8))
    mean, std = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([2.0, 0.5, 1.0, 3.0])
    codec.set_latent_stats(mean, std)
    assert codec.config.latents_mean == pytest.approx(mean.tolist())
    z = torch.randn(2, 4, 3, 8, 8) * 3 + 1
    assert torch.allclose(codec.denormalize(codec.normalize(z)), z, atol=1e-5)
    # normalising data with exactly these statistics gives zero mean, unit std per channel
    data = torch.randn(64, 4, 2, 8, 8) * std.view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1)
    n = codec.normalize(data)
    # the config round-trips through JSON and rebuilds the same buffers
    again = ToyCodec(ToyCodecConfig.from_dict(json.loads(json.dumps(codec.config.to_dict()))))
    assert torch.allclose(again.latents_std, codec.latents_std)
    per_channel = n.transpose(0, 1).reshape(4, -1)
    assert per_channel.mean(1).abs().max() < 0.1
    assert (per_channel.std(1) - 1).abs().max() < 0.1


def test_frame_tensor_conversion_is_lossless():
    frames = np.random.default_rng(1).integers(0, 256, (2, 5, 16, 16, 3), dtype=np.uint8)
    t = frames_to_tensor(frames)
    assert t.shape == (2, 3, 5, 16, 16) and t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(tensor_to_frames(t), frames)
    with pytest.raises(ValueError):
        frames_to_tensor(frames[0])


# ----------------------------------------------------------------------- transformer
def test_transformer_is_wan_with_lora_target_names():
    m = build_transformer(ToyTransformerConfig(num_layers=2, pos_grid=(9, 4, 4)))
    assert isinstance(m, WanTransformer3DModel)
    names = {n for n, _ in m.named_modules()}
    for target in (
        "condition_embedder.text_embedder.linear_1",
        "condition_embedder.text_embedder.linear_2",
    ):
        assert target in names
    for i in range(2):
        assert f"blocks.{i}.attn2.to_k" in names and f"blocks.{i}.attn2.to_v" in names
    x = torch.randn(2, 4, 9, 8, 8)
    out = m(x, torch.tensor([10.0, 900.0]), torch.randn(2, 5, 64), return_dict=False)[0]
    assert out.shape == x.shape


def test_absolute_positions_break_translation_equivariance():
    """Without the learned grid a Wan transformer only sees relative (rotary) positions."""
    torch.manual_seed(0)
    cfg = ToyTransformerConfig(
        num_attention_heads=2,
        attention_head_dim=12,
        ffn_dim=32,
        num_layers=1,
        text_dim=8,
        freq_dim=16,
        pos_grid=None,
    )
    plain = build_transformer(cfg)
    assert plain.pos_embed is None
    x = torch.randn(1, 4, 9, 8, 8)
    t, ctx = torch.tensor([500.0]), torch.randn(1, 3, 8)
    with_pos = build_transformer(ToyTransformerConfig(**{**cfg.__dict__, "pos_grid": (9, 4, 4)}))
    with_pos.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        with_pos.pos_embed.zero_()
        a = plain(x, t, ctx, return_dict=False)[0]
        b = with_pos(x, t, ctx, return_dict=False)[0]
        assert torch.allclose(a, b, atol=1e-5)  # a zero grid is exactly plain Wan
        with_pos.pos_embed.normal_(std=1.0)
        c = with_pos(x, t, ctx, return_dict=False)[0]
    assert not torch.allclose(a, c, atol=1e-3)
    with pytest.raises(ValueError, match="position grid"):
        with_pos(torch.randn(1, 4, 10, 8, 8), t, ctx)


# ---------------------------------------------------------------------- text encoder
def test_slot_tokens_separate_the_relations():
    toks = tokens_for(PROMPT, relation_repeats=2)
    roles = [r for r, _ in toks]
    assert roles.count("initial") == 2 and roles.count("final") == 2
    d = dict(toks)
    assert d["animal"] == "animal:fox" and d["object"] == "object:stump"
    assert d["initial"] == "initial:L" and d["final"] == "final:R" and d["type"] == "type:LR"
    assert d["scene"] == "scene:in a sunny meadow"
    assert tokens_for("") == []
    assert tokens_for("a fox near a rock") == [
        ("word", "word:a"),
        ("word", "word:fox"),
        ("word", "word:near"),
        ("word", "word:a"),
        ("word", "word:rock"),
    ]


def test_text_encoder_output_and_padding():
    p = parse_prompt(PROMPT)
    cfg = ToyTextConfig(vocab=build_vocab([p]), text_dim=16, max_length=12)
    enc = ToyTextEncoder(cfg)
    batch = enc.tokenizer([PROMPT, PROMPT_RT, ""])
    assert batch["input_ids"].shape == (3, 12)
    assert batch["role_ids"][0, :9].tolist() == [
        ROLE_ID[r]
        for r in (
            "scene",
            "animal",
            "object",
            "verb",
            "type",
            "initial",
            "final",
            "initial",
            "final",
        )
    ]
    assert batch["attention_mask"][2].sum() == 0
    with torch.no_grad():
        h = enc.encode([PROMPT, PROMPT_RT, ""])
    assert h.shape == (3, 12, 16)
    assert torch.all(h[2] == 0) and torch.all(h[0, 9:] == 0)
    # changing the relations changes exactly the relation/type slots
    differs = (h[0] - h[1]).abs().sum(-1) > 0
    assert differs.tolist()[:9] == [False, False, False, False, True, True, True, True, True]


# -------------------------------------------------------------------------- pipeline
def test_random_pipeline_shape_dtype_and_determinism(pipe):
    v = pipe([PROMPT, PROMPT_RT, PROMPT], [1, 2, 1], num_inference_steps=3)
    assert v.shape == (3, pipe.num_frames, pipe.height, pipe.width, 3) and v.dtype == np.uint8
    # rows of one batch, a batch of 3 vs a batch of 1: not one code path (BLAS may block
    # rows differently), so the latents agree to float32 tolerance, the videos within a level
    lat = pipe.sample_latents([PROMPT, PROMPT_RT, PROMPT], [1, 2, 1], num_inference_steps=3)
    alone = pipe.sample_latents([PROMPT], [1], num_inference_steps=3)
    torch.testing.assert_close(lat[2], lat[0], **FLOAT32_NET)
    torch.testing.assert_close(alone[0], lat[0], **FLOAT32_NET)
    assert_videos_close(v[2], v[0])
    assert_videos_close(pipe([PROMPT], [1], num_inference_steps=3)[0], v[0])
    other_seed = pipe([PROMPT], [2], num_inference_steps=3)
    assert np.abs(other_seed[0].astype(int) - v[0]).mean() > 10 * VIDEO_MEAN_LEVELS
    # a second pipeline built from the same seed, same batch shape: the same code path
    again = ToyPipeline.random(seed=0)([PROMPT], [1], num_inference_steps=3)
    np.testing.assert_array_equal(again[0], pipe([PROMPT], [1], num_inference_steps=3)[0])
    with pytest.raises(SpatialAlignError):
        pipe([PROMPT], [1, 2])


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    loaded = ToyPipeline.from_pretrained(tmp_path / "m")
    a = pipe([PROMPT], [3], num_inference_steps=2)
    b = loaded([PROMPT], [3], num_inference_steps=2)
    np.testing.assert_array_equal(a, b)


def test_missing_or_corrupt_model_is_a_user_error(pipe, tmp_path):
    with pytest.raises(SpatialAlignError, match="no toy model"):
        ToyPipeline.from_pretrained(tmp_path / "nothing")
    pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpatialAlignError, match="corrupt"):
        ToyPipeline.from_pretrained(tmp_path / "m")
    pipe.save_pretrained(tmp_path / "m2")
    (tmp_path / "m2" / "config.json").write_text("{")
    with pytest.raises(SpatialAlignError, match="corrupt"):
        ToyPipeline.from_pretrained(tmp_path / "m2")


def test_peft_lora_adapter_changes_sampling_and_round_trips(tmp_path):
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = ToyPipeline.random(seed=1)
    base = pipe([PROMPT], [0], num_inference_steps=3)
    targets = [
        "condition_embedder.text_embedder.linear_1",
        "condition_embedder.text_embedder.linear_2",
        "attn2.to_k",
        "attn2.to_v",
    ]
    config = LoraConfig(r=4, lora_alpha=16, target_modules=targets)  # alpha != r: scale 4
    pipe.transformer.add_adapter(config)
    wrapped = [n for n, _ in pipe.transformer.named_modules() if n.endswith("lora_B")]
    assert len(wrapped) == 2 + 2 * pipe.transformer.config.num_layers
    with torch.no_grad():
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    adapted = pipe([PROMPT], [0], num_inference_steps=3)
    assert not np.array_equal(adapted, base)
    pipe.transformer.disable_adapters()
    np.testing.assert_array_equal(pipe([PROMPT], [0], num_inference_steps=3), base)
    pipe.transformer.enable_adapters()
    # diffusers-format LoRA file -> a fresh pipeline reproduces the adapted samples
    WanPipeline.save_lora_weights(
        tmp_path,
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    fresh = ToyPipeline.random(seed=1)
    fresh.load_lora_weights(tmp_path / "pytorch_lora_weights.safetensors")
    np.testing.assert_array_equal(fresh([PROMPT], [0], num_inference_steps=3), adapted)
    with pytest.raises(SpatialAlignError):
        fresh.load_lora_weights(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------- shipped weights
def test_shipped_hard_model_is_the_hard_defaults_run_and_draws_the_prompts_sprites():
    """The toy-hard weights inside the package (--model toy-hard): the hard world's
    pretraining defaults within the budget, float16 under 10 MB, and on one TEST prompt of
    each DSR type its clips hold the prompt's animal and object in most frames."""
    from spatialalign.detection.color import ColorDetector
    from spatialalign.models.toy.shipped import shipped_weights
    from spatialalign.toy.evaluate import ToyEvalConfig, eval_prompts
    from spatialalign.toy.pretrain import pretrain_config

    root = shipped_weights("toy-hard")
    assert sum(f.stat().st_size for f in root.iterdir()) < 10 * 2**20
    pipe = ToyPipeline.from_pretrained(root)
    assert (pipe.num_frames, pipe.height, pipe.width) == (12, 16, 16)
    meta, defaults = pipe.metadata, pretrain_config("hard")
    for name in ("world", "mismatch_frac", "mismatch_kind", "mismatch_keys_frac", "minutes",
                 "seed", "n_train_prompts", "batch_size"):  # fmt: skip
        assert meta["pretrain"][name] == getattr(defaults, name), name
    arch = meta["pretrain"]["transformer"]
    assert (tuple(arch["patch_size"]), arch["num_layers"]) == (defaults.transformer.patch_size,
                                                               defaults.transformer.num_layers)  # fmt: skip
    assert meta["train_minutes"] <= 60
    chosen = {}
    for p in eval_prompts(ToyEvalConfig(world="hard")):
        chosen.setdefault(p.dsr_type, p)
    ps = list(chosen.values())
    assert len(ps) == 12
    videos = pipe([p.text for p in ps], [0] * len(ps))
    assert videos.shape == (12, 12, 16, 16, 3)
    found = 0
    for v, p in zip(videos, ps, strict=True):
        for d in ColorDetector().detect(v, [p.animal, p.object]):
            found += p.animal in d.labels and p.object in d.labels
    assert found >= 0.6 * 12 * 12, found  # both sprites in most frames (random weights: ~0)


def test_shipped_model_loads_and_follows_prompts():
    """The pretrained weights inside the package: load offline, sample, judge with the
    colour detector (a real behaviour check, on held-out TEST prompts)."""
    from spatialalign.core.presets import scoring_config
    from spatialalign.detection.color import ColorDetector
    from spatialalign.toy.evaluate import ToyEvalConfig, eval_prompts, judge_clip

    pipe = ToyPipeline.from_pretrained()
    assert (pipe.num_frames, pipe.height, pipe.width) == (9, 16, 16)
    meta = pipe.metadata
    # the shipped run is the pretraining defaults (docs/TOY_MODEL.md), within the budget
    from spatialalign.toy.pretrain import PretrainConfig

    defaults = PretrainConfig()
    for name in ("mismatch_frac", "mismatch_kind", "mismatch_keys_frac", "minutes", "seed"):
        assert meta["pretrain"][name] == getattr(defaults, name), name
    assert meta["train_minutes"] <= 60
    prompts = eval_prompts(ToyEvalConfig())
    chosen = {}
    for p in prompts:
        chosen.setdefault(p.dsr_type, p)
    ps = list(chosen.values())
    videos = pipe([p.text for p in ps], [0] * len(ps))
    assert videos.shape == (len(ps), 9, 16, 16, 3) and videos.dtype == np.uint8
    det, scoring = ColorDetector(), scoring_config("toy")
    results = [judge_clip(v, p, 0, det, scoring) for v, p in zip(videos, ps, strict=True)]
    assert sum(r.valid for r in results) >= len(ps) // 2
    assert sum(r.initial_right for r in results) >= len(ps) // 2
