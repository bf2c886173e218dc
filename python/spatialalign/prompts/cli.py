"""``spatialalign prompts RUN_DIR``: write the DSR-Dataset (or an imported prompt file)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from spatialalign.core.dsr.files import read_prompts
from spatialalign.core.dsr.grammar import FORMS
from spatialalign.prompts.generate import generate_dataset
from spatialalign.prompts.splits import TOY_SPLIT
from spatialalign.rundir.layout import RunDir


@click.command("prompts")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--train", "n_train", type=click.IntRange(min=0), default=None,
              help=f"Training prompts to generate.  [default: {TOY_SPLIT.n_train}]")  # fmt: skip
@click.option("--test", "n_test", type=click.IntRange(min=0), default=None,
              help=f"Test prompts to generate.  [default: {TOY_SPLIT.n_test}]")  # fmt: skip
@click.option("--seed", type=int, default=TOY_SPLIT.seed, show_default=True, help="Generator seed.")
@click.option("--form", type=click.Choice(FORMS), default=None,
              help="Phrasing: 'then' (the paper's) or 'from-to'.  [default: then]")  # fmt: skip
@click.option("--bottom", is_flag=True, help="Also generate the six DSR types with BOTTOM.")
@click.option("--official-csv", is_flag=True,
              help="Also write RUN_DIR/prompts_official.csv in the official format.")  # fmt: skip
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Import this prompt file (Parquet/CSV/official CSV/JSONL) instead of "
              "generating.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite prompt files that differ.")
def prompts(
    run_dir: Path,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    form: str | None,
    bottom: bool,
    official_csv: bool,
    source: Path | None,
    force: bool,
) -> None:
    """Write RUN_DIR/prompts.parquet: the seeded DSR-Dataset, or the prompts of --from FILE."""
    if source is not None:
        if n_train is not None or n_test is not None or form is not None or bottom:
            raise click.UsageError("--from cannot be combined with --train/--test/--form/--bottom")
        items = read_prompts(source)
        origin = f"from {source}"
    else:
        items = generate_dataset(
            n_train=TOY_SPLIT.n_train if n_train is None else n_train,
            n_test=TOY_SPLIT.n_test if n_test is None else n_test,
            seed=seed,
            form=form or "then",
            include_bottom=bottom,
        )
        origin = f"seed {seed}, form {form or 'then'}"
    run = RunDir(run_dir)
    status = run.publish_prompts(items, official_csv=official_csv, force=force)
    stale = run.official_csv_path
    if not official_csv and status[run.prompts_path] == "written" and stale.exists():
        click.echo(f"warning: {stale} is left from an earlier run; it differs", err=True)
    splits = Counter(p.split or "unsplit" for p in items)
    types = len({p.dsr_type for p in items})
    parts = ", ".join(f"{n} {s}" for s, n in sorted(splits.items(), key=lambda kv: -kv[1]))
    files = ", ".join(
        f"{path} ({'unchanged, skipped' if s == 'unchanged' else s})" for path, s in status.items()
    )
    click.echo(f"prompts: {len(items)} prompts ({parts}; {types} DSR types; {origin}) -> {files}")
