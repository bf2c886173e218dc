"""``spatialalign compare RUN_A RUN_B ...``: the paper-style table of several scored runs."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.evaluation.compare import CompareConfig, compare_runs
from spatialalign.evaluation.run_tables import read_run_table, run_names, write_comparison


@click.command("compare")
@click.argument(
    "run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option("--names", default=None, help="Comma-separated run names [default: directory names].")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("compare"),
    show_default=True,
    help="Where comparison.md, comparison.json and correctness_curves.png go.",
)
@click.option(
    "--n-boot",
    type=click.IntRange(min=1, max=1_000_000),
    default=2000,
    show_default=True,
    help="Bootstrap replicates.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Interval coverage.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
def compare(
    run_dirs: tuple[Path, ...],
    names: str | None,
    out_dir: Path,
    n_boot: int,
    confidence: float,
    seed: int,
) -> None:
    """Compare scored runs (the first is the baseline): Correct@0.7 with a prompt-bootstrap
    interval, validness, metric means, and the overlaid correctness curves."""
    labels = run_names(run_dirs, names)
    tables = [(name, read_run_table(d)) for name, d in zip(labels, run_dirs, strict=True)]
    config = CompareConfig(n_boot=n_boot, confidence=confidence, seed=seed)
    comparison = compare_runs(tables, config=config)
    files = write_comparison(comparison, out_dir)
    click.echo(comparison.to_markdown())
    click.echo(
        f"compare: {len(tables)} run(s), baseline {labels[0]!r} -> "
        f"{files.markdown}, {files.json}, {files.curves}"
    )
