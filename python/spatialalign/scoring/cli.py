"""``spatialalign score-batch DIR``: DSR-Score every video of a run directory."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.presets import PRESETS, scoring_config
from spatialalign.scoring.batch import recorded_preset, score_run
from spatialalign.scoring.summary import format_summary, one_line

MAX_M = 10_000
MAX_MIN_FRAMES = 1_000_000


@click.command("score-batch")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--prompts",
    "prompts_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Prompts file (Parquet/CSV/JSONL, official CSV too). Default: DIR/prompts.parquet.",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="Scoring thresholds preset.  [default: the one `track` recorded, else official]",
)
@click.option("--m", type=click.IntRange(min=1), default=None, help="Override: frames averaged.")
@click.option(
    "--min-frames", type=click.IntRange(min=1), default=None, help="Override: min kept frames."
)
@click.option("--plots", is_flag=True, help="Also draw per-video SSR curves into OUT/plots/.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory. Default: DIR.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the one-line summary.")
def score_batch(
    run_dir: Path,
    prompts_path: Path | None,
    preset: str | None,
    m: int | None,
    min_frames: int | None,
    plots: bool,
    out_dir: Path | None,
    quiet: bool,
) -> None:
    """Score DIR's tracks.parquet: writes scores.parquet, summary.json, correctness.png."""
    for name, value, most in (("--m", m, MAX_M), ("--min-frames", min_frames, MAX_MIN_FRAMES)):
        if value is not None and value > most:
            raise SpatialAlignError(f"{name} must be at most {most}, got {value}")
    recorded = recorded_preset(run_dir)
    warnings = []
    if preset is not None and recorded is not None and preset != recorded:
        warnings.append(
            f"track used the {recorded!r} preset; scoring with {preset!r} as told "
            f"(omit --preset to use {recorded!r})"
        )
    preset = preset or recorded or "official"
    config = scoring_config(preset, m=m, min_frames=min_frames)
    result = score_run(
        run_dir,
        prompts_path=prompts_path,
        config=config,
        preset=preset,
        out_dir=out_dir,
        plots=plots,
        progress=False if quiet else None,
    )
    for warning in warnings + result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not quiet:
        click.echo(format_summary(result.summary))
        click.echo("wrote " + ", ".join(str(p) for p in result.paths.values()))
    click.echo(one_line(result.summary))
