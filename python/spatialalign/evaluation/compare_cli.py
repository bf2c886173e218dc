"""``spatialalign compare RUN_A RUN_B ...``: the paper-style table of several scored runs."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.options import click_options, from_options
from spatialalign.evaluation.compare import CompareConfig, compare_runs
from spatialalign.evaluation.run_tables import (
    read_prompt_texts,
    read_prompt_types,
    read_run_table,
    refuse_other_texts,
    run_names,
    write_comparison,
)


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
@click_options(CompareConfig)
def compare(
    run_dirs: tuple[Path, ...],
    names: str | None,
    out_dir: Path,
    **bootstrap: float,
) -> None:
    """Compare scored runs (the first is the baseline): Correct@0.7 with a prompt-bootstrap
    interval, validness, metric means, and the overlaid correctness curves; comparison.md
    also breaks each run down per DSR type and per rejection reason."""
    labels = run_names(run_dirs, names)
    tables = [(name, read_run_table(d)) for name, d in zip(labels, run_dirs, strict=True)]
    warnings = refuse_other_texts(
        [(n, t, read_prompt_texts(d)) for (n, t), d in zip(tables, run_dirs, strict=True)]
    )
    config = from_options(CompareConfig, bootstrap)
    types = [read_prompt_types(d) for d in run_dirs]
    comparison = compare_runs(tables, config=config, dsr_types=types)
    files = write_comparison(comparison, out_dir)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(comparison.to_markdown())
    for line in comparison.rests_on():
        click.echo(f"compare: {line}")
    click.echo(
        f"compare: {len(tables)} run(s), baseline {labels[0]!r} -> "
        f"{files.markdown}, {files.json}, {files.curves}"
    )
