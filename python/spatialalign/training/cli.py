"""``spatialalign train RUN_DIR``: the options are :class:`TrainConfig`'s fields."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from spatialalign.options import click_options, from_options
from spatialalign.training.config import TrainConfig


@click.command("train")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", type=click.Choice(["toy", "wan"]), default="toy", show_default=True)
@click.option(
    "--model-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model directory (toy: default the shipped weights; wan: a local diffusers "
    "WanPipeline directory or the original Wan2.1 files).",
)
@click.option(
    "--text-encoder-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="wan, original Wan2.1 layout: a transformers UMT5 encoder directory (e.g. "
    "Wan2.1-T2V-1.3B-Diffusers or its text_encoder/); default text_encoder/ beside the files.",
)
@click.option(
    "--vae-tiling",
    is_flag=True,
    help="wan: encode the videos in VAE tiles (bounded memory at any resolution; frames "
    "larger than a tile get other latents, so the cache re-encodes when this changes).",
)
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click_options(TrainConfig, exclude=("gradient_checkpointing",))
def train(
    run_dir: Path,
    model: str,
    model_path: Path | None,
    text_encoder_dir: Path | None,
    vae_tiling: bool,
    gradient_checkpointing: bool | None,
    encode: bool,
    quiet: bool,
    **options: Any,
) -> None:
    """Train a SpatialAlign LoRA (DPO + zeroth-order regulariser by default) on RUN_DIR's
    pairs.parquet into RUN_DIR/run/ (pytorch_lora_weights.safetensors, checkpoints, logs).

    Videos and prompts are encoded once into RUN_DIR/cache/. Several processes:
    `accelerate launch` or `torchrun` in front of `spatialalign train`.

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

    cfg = from_options(TrainConfig, options)
    try:
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
