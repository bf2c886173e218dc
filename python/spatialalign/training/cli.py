"""``spatialalign train RUN_DIR``: the options are :class:`TrainConfig`'s fields."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from spatialalign.training.config import TrainConfig
from spatialalign.training.options import click_options, from_options


@click.command("train")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", type=click.Choice(["toy", "wan"]), default="toy", show_default=True)
@click.option(
    "--model-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model directory (toy: default the shipped weights; wan: a local diffusers "
    "WanPipeline directory).",
)
@click.option(
    "--encode/--no-encode",
    default=True,
    show_default=True,
    help="Encode videos and prompts the cache lacks (else a missing item is an error).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click_options(TrainConfig)
def train(
    run_dir: Path, model: str, model_path: Path | None, encode: bool, quiet: bool, **options: Any
) -> None:
    """Train a SpatialAlign LoRA (DPO + zeroth-order regulariser by default) on RUN_DIR's
    pairs.parquet into RUN_DIR/run/ (pytorch_lora_weights.safetensors, checkpoints, logs).

    Videos and prompts are encoded once into RUN_DIR/cache/. Several processes:
    `accelerate launch` or `torchrun` in front of `spatialalign train`.
    """
    from spatialalign.training.run import train_run

    cfg = from_options(TrainConfig, options)
    try:
        cfg.validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    done = train_run(
        run_dir, cfg, model=model, model_path=model_path, encode=encode, progress=not quiet
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
        sys.exit(130)
    unit = "pairs" if cfg.loss.startswith("dpo") else "samples"
    click.echo(
        f"trained {cfg.loss} LoRA on {done.n_items} {unit} of {done.n_prompts} prompts: "
        f"{res.steps} steps{', ' + terms if terms else ''} -> {res.adapter}"
    )
