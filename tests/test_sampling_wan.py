"""The ``wan`` back end on a tiny randomly initialised diffusers ``WanPipeline``.

The pipeline is built from configs (tiny ``WanTransformer3DModel``, ``AutoencoderKLWan``,
``UMT5EncoderModel``) with a word-level tokenizer constructed locally, saved with
``save_pretrained`` and loaded back through the CLI's loader: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.video import read_video
from spatialalign.models.backends import (
    BackendConfig,
    WanBackend,
    load_backend,
    load_wan_pipeline,
)
from spatialalign.prompts import read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.sampler import sample_videos
from tolerance import FLOAT32_NET, LOSSY_VIDEO, assert_videos_close

GEOMETRY = dict(num_frames=5, height=16, width=16, steps=2)
# one thread, as the other tiny-Wan tests; comparisons across batch shapes or loaders follow
# tests/README.md (float frames to float32 tolerance, videos within a level or two)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_tokenizer(prompts):
    """A word-level T5-style tokenizer (``</s>`` appended, ``<pad>`` = 0) over the prompts."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for p in prompts for w in p.text.lower().replace(",", " ").split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def build_tiny_wan(path: Path, prompts) -> Path:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _tiny_tokenizer(prompts)
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def prompts():
    return read_prompts(OFFICIAL_CSV)[:2]


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory, prompts) -> Path:
    return build_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny-wan", prompts)


@pytest.fixture(scope="module")
def wan_pipe(wan_dir):
    return load_wan_pipeline(wan_dir)


def test_wan_backend_samples_yuv420p_videos_with_manifest(wan_pipe, prompts, tmp_path):
    backend = WanBackend(wan_pipe, **GEOMETRY, max_sequence_length=32)
    result = sample_videos(tmp_path, backend, prompts, seeds=2, batch_size=3, progress=False)
    assert (result.generated, result.total) == (4, 4)
    rows = RunDir(tmp_path).read_manifest().to_pylist()
    assert {r["model"] for r in rows} == {"wan"}
    assert sorted(r["sample_id"] for r in rows) == sorted(
        f"{p.prompt_id}_F05_seed{k:02d}" for p in prompts for k in range(2)
    )
    for r in rows:
        assert (r["num_frames"], r["height"], r["width"], r["fps"]) == (5, 16, 16, 16.0)
        with av.open(r["path"]) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    # the file is the pipeline's own output for that prompt and seed, as yuv420p H.264
    import torch
    from spatialalign.core.video import write_video

    r = next(x for x in rows if x["seed"] == 1 and x["prompt_id"] == prompts[1].prompt_id)
    out = wan_pipe(
        prompt=prompts[1].text,
        negative_prompt=backend.negative_prompt,
        generator=torch.Generator().manual_seed(1),
        num_inference_steps=2,
        num_frames=5,
        height=16,
        width=16,
        output_type="np",
        max_sequence_length=32,
    ).frames[0]
    direct = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    reference = write_video(tmp_path / "reference.mp4", direct, fps=16, lossless=False)
    # the file was sampled in a batch of 2, `direct` alone (two batch shapes), and H.264
    # turns a one-level difference of its input into a few levels near it
    assert_videos_close(read_video(r["path"]), read_video(reference), **LOSSY_VIDEO)
    other = next(x for x in rows if x["seed"] == 0 and x["prompt_id"] == prompts[1].prompt_id)
    diff = np.abs(read_video(other["path"]).astype(int) - read_video(reference))
    assert diff.mean() > 4 * LOSSY_VIDEO["mean_levels"], diff.mean()  # another seed: far off


def test_wan_batching_does_not_change_a_sample(wan_pipe, prompts):
    import torch

    backend = WanBackend(wan_pipe, **GEOMETRY, max_sequence_length=32)
    both = backend.generate_float([p.text for p in prompts], [0, 3])
    alone = backend.generate_float([prompts[1].text], [3])
    # a batch of 2 vs a batch of 1: float32 tolerance, not bit equality
    torch.testing.assert_close(torch.from_numpy(both[1]), torch.from_numpy(alone[0]), **FLOAT32_NET)
    assert np.abs(both[0] - both[1]).max() > 0.05  # the other prompt and seed: far off


def test_wan_lora_through_load_lora_weights(wan_dir, prompts, tmp_path):
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = load_wan_pipeline(wan_dir)
    config = LoraConfig(
        r=4, lora_alpha=12, target_modules=["attn2.to_k", "attn2.to_v"], init_lora_weights=False
    )
    pipe.transformer.add_adapter(config)
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(std=1.0)
    WanPipeline.save_lora_weights(
        tmp_path / "lora",
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        transformer_lora_adapter_metadata=config.to_dict(),  # alpha 12 != r 4 must survive
    )
    cfg = dict(model="wan", model_path=str(wan_dir), device="cpu", max_sequence_length=32)
    cfg.update(GEOMETRY)
    base = load_backend(BackendConfig(**cfg))
    lora = load_backend(BackendConfig(**cfg, adapter=str(tmp_path / "lora")))
    text = [prompts[0].text]
    # peft's adapter added in place vs the file loaded by our loader (two code paths)
    want = WanBackend(pipe, **GEOMETRY, max_sequence_length=32)
    torch.testing.assert_close(
        torch.from_numpy(lora.generate_float(text, [0])),
        torch.from_numpy(want.generate_float(text, [0])),
        **FLOAT32_NET,
    )
    got = lora.generate(text, [0])
    assert_videos_close(got, want.generate(text, [0]))
    assert not np.array_equal(got, base.generate(text, [0]))


def test_wan_cli_end_to_end(wan_dir, prompts, tmp_path, capsys):
    write_prompts(prompts, tmp_path / "prompts.parquet")
    args = ["sample", str(tmp_path), "--model", "wan", "--model-path", str(wan_dir)]
    args += ["--num-frames", "5", "--height", "16", "--width", "16", "--steps", "2"]
    args += ["--seeds", "1", "--fps", "8", "--device", "cpu"]
    main(args)
    assert (
        capsys.readouterr().out.strip().splitlines()[-1].startswith("sample: generated 2 video(s)")
    )
    rows = RunDir(tmp_path).read_manifest().to_pylist()
    assert [(r["num_frames"], r["fps"]) for r in rows] == [(5, 8.0), (5, 8.0)]


def test_wan_load_errors(wan_dir, tmp_path):
    with pytest.raises(SpatialAlignError, match="needs --model-path"):
        load_wan_pipeline(None)
    with pytest.raises(SpatialAlignError, match="not found"):
        load_wan_pipeline(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpatialAlignError, match="no model_index.json"):
        load_wan_pipeline(tmp_path / "empty")
    # a copy of the model without the transformer weights
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(wan_dir, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(SpatialAlignError, match=r"transformer/ holds no \*\.safetensors"):
        load_wan_pipeline(broken)
    with pytest.raises(SpatialAlignError, match="4k\\+1"):
        load_backend(BackendConfig(model="wan", model_path=str(wan_dir), num_frames=8))
