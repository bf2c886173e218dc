"""``spatialalign report RUN_DIR... --out report/``: one static HTML page comparing runs."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import click_options, from_options
from spatialalign.evaluation.compare import CompareConfig
from spatialalign.report.build import build_report


def parse_train_logs(values: tuple[str, ...]) -> dict[str, Path]:
    """``NAME=PATH`` options -> {name: path}."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SpatialAlignError(f"--train-log wants NAME=PATH, got {value!r}")
        if name in out:
            raise SpatialAlignError(f"--train-log given twice for {name!r}")
        out[name] = Path(path)
    return out


@click.command("report")
@click.argument(
    "run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Report directory: index.html beside its figures and media/.",
)
@click.option("--names", default=None, help="Comma-separated run names [default: directory names].")
@click.option(
    "--train-log",
    "train_logs",
    multiple=True,
    metavar="NAME=PATH",
    help="The JSONL train log of the run named NAME (repeatable) [default: "
    "RUN_DIR/run/train_log.jsonl, else the one beside the run's adapter, when present].",
)
@click.option(
    "--grid",
    "n_grid",
    type=click.IntRange(min=0, max=200),
    default=6,
    show_default=True,
    help="Prompt/seed pairs in the before/after grid.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into --out even when it is a non-empty directory that holds no report.",
)
@click_options(CompareConfig)
def report(
    run_dirs: tuple[Path, ...],
    out_dir: Path,
    names: str | None,
    train_logs: tuple[str, ...],
    n_grid: int,
    force: bool,
    **bootstrap: float,
) -> None:
    """Write a self-contained HTML report of scored runs (the first is the baseline):
    comparison table, correctness curves, per-type bars, training curves, and the same
    prompt/seed across runs (videos beside their SSR curves)."""
    result = build_report(
        run_dirs,
        out_dir,
        names=names,
        train_logs=parse_train_logs(train_logs),
        n_grid=n_grid,
        config=from_options(CompareConfig, bootstrap),
        force=force,
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(result.comparison.to_markdown())
    for line in result.comparison.rests_on():
        click.echo(f"report: {line}")
    click.echo(
        f"report: {len(run_dirs)} run(s), {result.n_grid_rows} grid row(s), "
        f"{result.n_videos} video(s) -> {result.index}"
    )
