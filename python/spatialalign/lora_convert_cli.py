"""``spatialalign convert-lora IN OUT --to FORMAT``: Wan LoRA between diffusers, DiffSynth
(the official SpatialAlign release) and ComfyUI key names."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.lora_convert import FORMATS, convert_lora


@click.command("convert-lora")
@click.argument("src", metavar="IN", type=click.Path(path_type=Path))
@click.argument("dst", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "to",
    type=click.Choice(FORMATS),
    required=True,
    help="Output key layout: diffusers (WanPipeline.load_lora_weights), diffsynth "
    "(official SpatialAlign / DiffSynth-Studio) or comfyui (diffusion_model. prefix).",
)
@click.option(
    "--alpha",
    type=float,
    default=None,
    help="LoRA alpha for every layer, overriding the file's (DiffSynth checkpoints do not "
    "record theirs). Default: the file's alpha, else the rank (scale 1).",
)
@click.option(
    "--fold-alpha",
    is_flag=True,
    help="Multiply alpha/rank into lora_B and write alpha = rank, for loaders that ignore alpha.",
)
def convert_lora_cmd(src: Path, dst: Path, to: str, alpha: float | None, fold_alpha: bool) -> None:
    """Convert the Wan LoRA IN (.safetensors, or a .ckpt/.pt read weights-only) to OUT
    (.safetensors), detecting IN's format from its keys."""
    result = convert_lora(src, dst, to, alpha=alpha, fold_alpha=fold_alpha)
    click.echo(result.summary())
