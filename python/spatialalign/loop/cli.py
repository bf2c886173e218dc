"""``spatialalign loop RUN_DIR --rounds K``: options derived from LoopConfig and TrainConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options
from spatialalign.loop.config import LoopConfig, LoopTrainDefaults

LOOP_OWN = ("mode", "train")
"""LoopConfig fields with hand-written options (--merge/--continue-adapter) or none."""


@click.command("loop")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--merge", "mode", flag_value="merge", default=True,
              help="Each round: a fresh LoRA on the previous round's model (its reference), "
              "fused into round_k/model/.  [default]")  # fmt: skip
@click.option("--continue-adapter", "mode", flag_value="continue",
              help="One LoRA on the starting model, trained on across rounds.")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click_options(LoopConfig, exclude=LOOP_OWN)
@click_options(LoopTrainDefaults, exclude=("resume",))
def loop(run_dir: Path, mode: str, quiet: bool, **options: Any) -> None:
    """Self-improvement loop: round 0 evaluates the model; round k samples the TRAIN prompts
    with round k-1's model, tracks, scores, pairs, trains a LoRA, (merges) and evaluates.

    Writes RUN_DIR/round_k/{train,eval,model}/, RUN_DIR/loop.json and loop.md (the per-round
    table). A killed loop resumes where it stopped when rerun with the same settings
    (--rounds may grow). One loop per RUN_DIR at a time: a second one fails at once, naming
    the first one's pid. Training stopped by Ctrl-C / SIGTERM exits 130 / 143.
    """
    from spatialalign.core.options import from_options
    from spatialalign.loop.config import loop_train_config
    from spatialalign.loop.run import loop_run
    from spatialalign.loop.table import to_markdown

    train_cfg = from_options(LoopTrainDefaults, options)
    cfg = from_options(
        LoopConfig, options, mode=mode, train=loop_train_config(**_train_fields(train_cfg))
    )
    result = loop_run(run_dir, cfg, echo=click.echo, progress=not quiet)
    click.echo(to_markdown(result.rows), nl=False)
    last = result.rows[-1]
    click.echo(
        f"loop: {len(result.rows) - 1} round(s), Correctness@0.7 {result.rows[0].correctness:.3f}"
        f" -> {last.correctness:.3f}, validness {result.rows[0].validness:.3f} -> "
        f"{last.validness:.3f} -> {result.layout.table_path}"
    )


def _train_fields(cfg: LoopTrainDefaults) -> dict[str, Any]:
    from dataclasses import fields

    from spatialalign.training.config import TrainConfig

    return {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)}
