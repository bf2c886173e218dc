"""``spatialalign train RUN_DIR``: the options are :class:`TrainConfig`'s fields, their
values taken from a recipe (:data:`~spatialalign.training.config.RECIPES`) unless given;
``spatialalign export-adapter RUN --step N``: the LoRA of a kept checkpoint."""

from __future__ import annotations

import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options
from spatialalign.models.backends import BackendConfig
from spatialalign.training.config import (
    RECIPE_FOR_MODEL,
    RECIPES,
    TrainConfig,
    default_recipe,
    describe_recipes,
    recipe_default_text,
    resolve_recipe,
)
from spatialalign.training.export import EXPORT_FORMATS

EXPLICIT = (
    click.core.ParameterSource.COMMANDLINE,
    click.core.ParameterSource.ENVIRONMENT,
    click.core.ParameterSource.PROMPT,
)


TRAIN_MODEL_FIELDS = ("model", "model_path", "text_encoder_dir", "vae_tiling")
"""The back end's settings training needs (the model to load and how to encode for it)."""
NOT_TRAIN_MODEL_FIELDS = tuple(
    f.name for f in fields(BackendConfig) if f.name not in TRAIN_MODEL_FIELDS
)


@click.command("train")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click_options(BackendConfig, exclude=NOT_TRAIN_MODEL_FIELDS)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    "gradient_checkpointing",
    default=None,
    help="Recompute activations in the backward pass (less memory, one more forward per "
    "block).  [default: on for --model wan, off for toy]",
)
@click.option(
    "--encode/--no-encode",
    default=True,
    show_default=True,
    help="Encode videos and prompts the cache lacks (else a missing item is an error).",
)
@click.option(
    "--recipe",
    type=click.Choice(list(RECIPES)),
    default=None,
    help="A named set of option values (options given explicitly override them): "
    "official = the official release's Wan2.1 run (DESIGN.md 'The official run'), toy = the "
    "toy model's tuned run. Values: "
    + describe_recipes()
    + ".  [default: "
    + ", ".join(f"{r} for --model {m}" for m, r in RECIPE_FOR_MODEL.items())
    + "]",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click_options(TrainConfig, exclude=("gradient_checkpointing",))
def train(
    run_dir: Path,
    model: str,
    model_path: str | None,
    text_encoder_dir: str | None,
    vae_tiling: bool,
    gradient_checkpointing: bool | None,
    encode: bool,
    recipe: str | None,
    quiet: bool,
    **options: Any,
) -> None:
    """Train a SpatialAlign LoRA (DPO + zeroth-order regulariser by default) on RUN_DIR's
    pairs.parquet into RUN_DIR/run/ (pytorch_lora_weights.safetensors, checkpoints, logs).

    Videos and prompts are encoded once into RUN_DIR/cache/. Several processes:
    `accelerate launch` or `torchrun` in front of `spatialalign train`.

    --model wan trains the official recipe by default (timesteps on the official 1000-point
    grid with shift 5, a random prompt then a random pair of it at every draw, 48 pairs a
    step, weight decay 0.01, no clipping, cosine to 3000 stopped at 2400, a checkpoint every
    100 steps kept), --model toy the toy recipe; `--recipe` picks one, an option given
    explicitly overrides its value, and train_config.json records both.

    --model wan loads on the CPU, encodes with the text encoder and then the VAE on the
    GPU (one at a time), frees them and only then moves the transformer to the GPU;
    gradient checkpointing is on unless --no-gradient-checkpointing.

    One train at a time per RUN_DIR (a second one fails at once, naming the first's pid).
    Refused: pairs.parquet made from other scores than RUN_DIR holds (rerun `pairs`), a
    non-finite number, a --lora-rank above the smallest targeted layer. A NaN/infinite
    loss, gradient or weight, or a checkpoint that cannot be written (full disk), stops
    the run with one line and keeps the last checkpoint for --resume. Ctrl-C / SIGTERM
    save a checkpoint and exit 130 / 143.
    """
    from spatialalign.training.run import train_run

    ctx = click.get_current_context()
    explicit = {name for name in options if ctx.get_parameter_source(name) in EXPLICIT}
    recipe = recipe or default_recipe(model)
    try:
        cfg = resolve_recipe(recipe, options, explicit)
        cfg.validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    done = train_run(
        run_dir,
        cfg,
        model=model,
        model_path=model_path,
        encode=encode,
        progress=not quiet,
        text_encoder_dir=text_encoder_dir,
        vae_tiling=vae_tiling,
        gradient_checkpointing=gradient_checkpointing,
        recipe=recipe,
    )
    res = done.result
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not quiet and (done.cache.latents_encoded or done.cache.text_encoded):
        click.echo(done.cache.line())
    last = res.last_log
    terms = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "accuracy") if k in last)
    if res.interrupted:
        click.echo(
            f"interrupted at step {res.steps}/{cfg.max_steps}: checkpoint saved in "
            f"{res.out_dir}; continue with --resume",
            err=True,
        )
        sys.exit(128 + (res.signal or signal.SIGINT))  # the shell's code: 130 SIGINT, 143 SIGTERM
    unit = "pairs" if cfg.loss.startswith("dpo") else "samples"
    if done.reused:
        click.echo(
            f"already trained: {res.out_dir} holds this run (same configuration, pairs and "
            f"model), finished at step {res.steps} -> {res.adapter}"
        )
        return
    click.echo(
        f"trained {cfg.loss} LoRA on {done.n_items} {unit} of {done.n_prompts} prompts: "
        f"{res.steps} steps{', ' + terms if terms else ''} -> {res.adapter}"
    )


for _param in train.params:  # the defaults of recipe fields depend on --recipe / --model
    if isinstance(_param, click.Option) and _param.name is not None:
        _text = recipe_default_text(_param.name)
        if _text is not None:
            _param.show_default = _text


@click.command("export-adapter")
@click.argument("run", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
@click.option("--step", type=int, required=True, help="The checkpoint's step.")
@click.option(
    "--to",
    "to",
    type=click.Choice(EXPORT_FORMATS),
    default="diffusers",
    show_default=True,
    help="Output format (as convert-lora): diffusers (WanPipeline.load_lora_weights, sample "
    "--adapter), diffsynth (the official release / DiffSynth-Studio: alpha folded), comfyui, "
    "kohya.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="A .safetensors file or a directory.  [default: RUN/run/adapters/step-NNNNNNN/, "
    "pytorch_lora_weights.safetensors or lora_<format>.safetensors]",
)
def export_adapter(run: Path, step: int, to: str, out: Path | None) -> None:
    """Write the LoRA of RUN's training checkpoint of step N (RUN: a run directory, or its
    run/), in diffusers' format as the trainer writes its adapter, or converted.

    Checkpoints are kept by `train --keep-checkpoints N` (the latest N) and
    `--keep-checkpoint-every K` (every K-th step, for good; the official recipe keeps all,
    one every 100 steps). A step without a checkpoint is refused, listing the steps there are.
    """
    from spatialalign.training.export import export_adapter as export

    click.echo(export(run, step, to=to, out=out).line())
