"""``spatialalign pairs RUN_DIR``: winner/loser pairs per prompt for DPO training."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.presets import OFFICIAL
from spatialalign.pairs.build import PairConfig


@click.command("pairs")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--tau",
    type=click.FloatRange(0.0, 1.0),
    default=OFFICIAL.tau_train,
    show_default=True,
    help="Valid samples with DSR >= tau win; the other valid ones lose.",
)
@click.option(
    "--no-tau",
    is_flag=True,
    help="Ablation: random pairs of valid samples ordered by relative DSR (no threshold).",
)
@click.option(
    "--max-per-prompt",
    type=click.IntRange(min=1),
    default=PairConfig.max_per_prompt,
    show_default=True,
    help="Most pairs kept per prompt (a seeded random subset).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the capped subset.")
@click.option(
    "--animals",
    default=None,
    help="Comma-separated animals: keep only their prompts (a transfer probe).",
)
@click.option(
    "--invalid-losers",
    is_flag=True,
    help="Not the paper's: invalid samples (rejected by the tracker) also lose to the "
    "prompt's winners, so training sees what makes a video invalid.",
)
def pairs(
    run_dir: Path,
    tau: float,
    no_tau: bool,
    max_per_prompt: int,
    seed: int,
    animals: str | None,
    invalid_losers: bool,
) -> None:
    """Build RUN_DIR/pairs.parquet from RUN_DIR/scores.parquet (invalid samples never pair,
    unless --invalid-losers)."""
    from spatialalign.pairs.run import pair_run

    chosen = None
    if animals is not None:
        chosen = tuple(sorted({a.strip() for a in animals.split(",") if a.strip()}))
        if not chosen:
            raise click.BadParameter("name at least one animal", param_hint="--animals")
    cfg = PairConfig(
        tau=None if no_tau else tau,
        max_per_prompt=max_per_prompt,
        seed=seed,
        animals=chosen,
        invalid_losers=invalid_losers,
    )
    path, report = pair_run(run_dir, cfg)
    click.echo(f"{report.summary()} -> {path}")
