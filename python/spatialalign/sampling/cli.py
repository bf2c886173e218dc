"""``spatialalign sample`` and ``spatialalign ingest``: thin click layers over the library."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.sampling.backends import MODELS
from spatialalign.wan.runtime import ATTENTION, OFFLOAD


@click.command("sample")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="toy",
    show_default=True,
    help="Back end: the shipped toy model or a diffusers WanPipeline.",
)
@click.option(
    "--model-path",
    "--model-dir",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="toy: weights directory (default: shipped); wan: a local Wan directory, diffusers "
    "format (model_index.json) or the original Wan2.1 files.",
)
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Prompt file (default: RUN_DIR/prompts.parquet).",
)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "test"]),
    default="all",
    show_default=True,
    help="Which prompts of the file to sample.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Videos per prompt, seeds 0..N-1 (at most 1000).",
)
@click.option(
    "--adapter",
    type=click.Path(path_type=Path),
    default=None,
    help="LoRA: a .safetensors file or a directory with pytorch_lora_weights.safetensors.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Denoising steps [toy 20, wan 50]."
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help="Guidance scale, finite and >= 0 [toy 3.0, wan diffusers' default 5.0].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Videos generated together [toy 16, wan 1].",
)
@click.option("--num-frames", type=click.IntRange(min=1), default=None, help="wan only [81].")
@click.option("--height", type=click.IntRange(min=16), default=None, help="wan only [480].")
@click.option("--width", type=click.IntRange(min=16), default=None, help="wan only [832].")
@click.option(
    "--fps", type=click.FloatRange(min=0, min_open=True), default=None, help="wan only [16]."
)
@click.option(
    "--negative-prompt", default=None, help="wan only [the official SpatialAlign negative prompt]."
)
@click.option(
    "--device", default=None, help="torch device [cuda:LOCAL_RANK if available, else cpu]."
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="wan only [bfloat16 on CUDA, float32 on CPU].",
)
@click.option(
    "--text-encoder-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="wan, original Wan2.1 layout: a transformers UMT5 encoder directory (diffusers "
    "cannot convert models_t5_umt5-xxl-enc-bf16.pth).",
)
@click.option("--vae-tiling", is_flag=True, help="wan only: tiled VAE decoding (less memory).")
@click.option("--vae-slicing", is_flag=True, help="wan only: decode a batch one video at a time.")
@click.option(
    "--offload",
    type=click.Choice(OFFLOAD),
    default="none",
    show_default=True,
    help="wan only, CUDA only: CPU offload for small GPUs (model: one component on the GPU "
    "at a time; sequential: layer by layer, least memory, slowest).",
)
@click.option(
    "--attention",
    type=click.Choice(list(ATTENTION)),
    default=None,
    help="wan only: attention backend via diffusers' dispatcher [diffusers' default: sdpa]; "
    "flash/flash3/sage/xformers need their package.",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="wan only: torch.compile the transformer blocks (GPU-oriented; the first batch "
    "pays the compile time).",
)
def sample(
    run_dir: Path,
    model: str,
    model_path: Path | None,
    prompts_file: Path | None,
    split: str,
    seeds: int,
    adapter: Path | None,
    steps: int | None,
    guidance: float | None,
    batch_size: int | None,
    num_frames: int | None,
    height: int | None,
    width: int | None,
    fps: float | None,
    negative_prompt: str | None,
    device: str | None,
    dtype: str | None,
    text_encoder_dir: Path | None,
    vae_tiling: bool,
    vae_slicing: bool,
    offload: str,
    attention: str | None,
    compile_: bool,
) -> None:
    """Generate a video per prompt x seed into RUN_DIR/samples/ (resumable, shards by rank).

    A rerun regenerates exactly the videos whose prompt text, model, adapter or settings
    changed (each video records what it was made from) and says why. Under torchrun /
    accelerate launch each rank takes its share of the pending samples; the manifest
    (samples/manifest.parquet) is merged at the end. --batch-size N samples N videos of
    the same shape in one pipeline call (wan: prompts and seeds batched together).
    """
    from spatialalign.sampling.backends import BackendConfig
    from spatialalign.sampling.run import run_sample

    config = BackendConfig(
        model=model,
        model_path=str(model_path) if model_path else None,
        adapter=str(adapter) if adapter else None,
        steps=steps,
        guidance=guidance,
        num_frames=num_frames,
        height=height,
        width=width,
        fps=fps,
        negative_prompt=negative_prompt,
        device=device,
        dtype=dtype,
        text_encoder_dir=str(text_encoder_dir) if text_encoder_dir else None,
        vae_tiling=vae_tiling,
        vae_slicing=vae_slicing,
        offload=offload,
        attention=attention,
        compile=compile_,
    )
    result = run_sample(
        run_dir,
        config,
        prompts_file=prompts_file,
        split=split,
        seeds=seeds,
        batch_size=batch_size,
    )
    click.echo(result.summary())


@click.command("ingest")
@click.argument("videos_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--prompts",
    "prompts_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The prompts the videos were generated from (Parquet, CSV, official CSV, JSONL).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory to write samples/manifest.parquet into [VIDEOS_DIR].",
)
@click.option(
    "--copy", is_flag=True, help="Copy the videos into RUN_DIR/samples/ (default: reference them)."
)
@click.option(
    "--ignore-unknown",
    is_flag=True,
    help="Leave out videos matching no prompt id (default: error).",
)
def ingest(
    videos_dir: Path, prompts_file: Path, run_dir: Path | None, copy: bool, ignore_unknown: bool
) -> None:
    """Bring in VIDEOS_DIR/*.mp4 from any model: writes samples/manifest.parquet (model=external).

    Understands the official naming {prompt_id}_F81_seed{NN}.mp4 and falls back to
    {prompt_id}*.mp4. Unreadable videos are kept (track rejects them as unreadable_video).
    """
    from spatialalign.prompts import read_prompts
    from spatialalign.sampling.ingest import ingest_videos

    result = ingest_videos(
        videos_dir, read_prompts(prompts_file), run_dir, copy=copy, ignore_unknown=ignore_unknown
    )
    click.echo(result.summary())
