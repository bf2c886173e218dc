"""``spatialalign rl RUN_DIR --model toy|wan``: online GRPO with the DSR-Score as reward; the
options are :class:`~spatialalign.rl.config.RLConfig`'s fields, the model's (as ``sample``'s,
less ``--adapter``) and the detector's (as ``track``'s)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options, from_options
from spatialalign.detection.spec import TrackSpec
from spatialalign.models.backends import BackendConfig
from spatialalign.rl.config import RLConfig

BACKEND_EXCLUDED = ("adapter", "max_sequence_length", "offload", "compile", "vae_slicing")
"""Back-end settings ``rl`` does not offer: it trains its own adapter, and the model's
weights must stay on the device (no offload) and trainable (no compile)."""


@click.command("rl")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click_options(BackendConfig, exclude=BACKEND_EXCLUDED)
@click_options(TrackSpec, exclude=("device",), flags={"batch_size": ("--detector-batch-size",)})
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    "gradient_checkpointing",
    default=None,
    help="Recompute activations in the backward pass.  [default: on for --model wan, off for toy]",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click_options(RLConfig, exclude=("gradient_checkpointing",))
def rl(run_dir: Path, gradient_checkpointing: bool | None, quiet: bool, **options: Any) -> None:
    """Align a model online with GRPO: each iteration samples --group-size videos for each of
    --prompts-per-iteration TRAIN prompts with an SDE sampler that records each step's
    log-probability, tracks and scores them (the DSR-Score of valid videos, --invalid-reward
    for rejected ones), keeps each group's top-k and bottom-k videos, and updates a LoRA
    with the clipped policy ratio and a KL term to the model without the adapter.

    RUN_DIR's prompts.parquet gives the TRAIN prompts (toy, toy-hard: the model's TRAIN split
    is written there when absent); the validity preset is the model's unless --preset. Writes RUN_DIR/rl/iter-NNNNNNN.parquet (every video's verdict,
    reward, advantage, kept), RUN_DIR/run/ (the LoRA as train writes it: sample --adapter,
    eval, export-adapter --step ITERATION, convert-lora; checkpoints; train_log.jsonl and
    TensorBoard) and rl_config.json. A rerun continues from the last finished iteration
    (the same adapter, bit for bit, as an uninterrupted run); other settings are refused.
    Ctrl-C / SIGTERM finish the iteration, save and exit 130 / 143.
    """
    from spatialalign.rl.run import rl_run

    backend = from_options(BackendConfig, options)
    track = from_options(TrackSpec, options)
    cfg = from_options(RLConfig, options, gradient_checkpointing=gradient_checkpointing)
    try:
        cfg.validate()
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    result = rl_run(run_dir, cfg, backend, track, progress=not quiet)
    last = result.last_log
    if result.interrupted:
        click.echo(
            f"interrupted after iteration {result.iterations}/{cfg.iterations}: checkpoint "
            f"saved in {result.out_dir}; rerun the same command to continue",
            err=True,
        )
        sys.exit(128 + (result.signal or signal.SIGINT))
    if result.start >= cfg.iterations:
        click.echo(f"already done: {run_dir} finished iteration {result.iterations} -> "
                   f"{result.adapter}")  # fmt: skip
        return
    terms = ", ".join(f"{k} {last[k]:.3f}" for k in ("reward_mean", "validness", "correct_0.7")
                      if k in last)  # fmt: skip
    click.echo(
        f"rl: iterations {result.start + 1}-{result.iterations} "
        f"({cfg.videos_per_iteration()} videos each), last: {terms} -> {result.adapter}"
    )
