"""``spatialalign convert-lora IN OUT --to FORMAT``: Wan LoRA between diffusers, DiffSynth
(the official SpatialAlign release), ComfyUI and kohya/musubi key names."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.convert import FORMATS, convert_lora


@click.command("convert-lora")
@click.argument("src", metavar="IN", type=click.Path(path_type=Path))
@click.argument("dst", metavar="OUT", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "to",
    type=click.Choice(FORMATS),
    required=True,
    help="Output key layout: diffusers (WanPipeline.load_lora_weights), diffsynth "
    "(official SpatialAlign / DiffSynth-Studio), comfyui (diffusion_model. prefix) or kohya "
    "(musubi-tuner's lora_unet_*.lora_down/lora_up/alpha).",
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
    help="Multiply alpha/rank into lora_B and write alpha = rank, for loaders that ignore "
    "alpha (the default for --to diffsynth: DiffSynth's loader does).",
)
@click.option(
    "--keep-alpha",
    is_flag=True,
    help="--to diffsynth: keep lora_B as it is and write alpha as .alpha tensors (which "
    "DiffSynth ignores) instead of folding it.",
)
@click.option(
    "--peft-names",
    is_flag=True,
    help="--to diffsynth: peft's .lora_A.default.weight names, which the official train.py "
    "--pretrained_lora_path expects.",
)
def convert_lora_cmd(
    src: Path,
    dst: Path,
    to: str,
    alpha: float | None,
    fold_alpha: bool,
    keep_alpha: bool,
    peft_names: bool,
) -> None:
    """Convert the Wan LoRA IN (.safetensors, or a .ckpt/.pt read weights-only, including the
    official trainer's full Lightning checkpoint) to OUT (.safetensors), detecting IN's format
    from its keys."""
    if fold_alpha and keep_alpha:
        raise SpatialAlignError("--fold-alpha and --keep-alpha exclude each other")
    fold = True if fold_alpha else False if keep_alpha else None
    result = convert_lora(src, dst, to, alpha=alpha, fold_alpha=fold, peft_names=peft_names)
    click.echo(result.summary())
    if result.ignored:
        click.echo(f"note: {result.ignored}", err=True)
