"""``spatialalign prompts RUN_DIR``: write the DSR-Dataset (or an imported prompt file)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import click

from spatialalign.core.dsr.files import read_prompts
from spatialalign.core.dsr.grammar import FORMS
from spatialalign.prompts.generate import MIXED
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT, WORLD_SPLITS, world_split
from spatialalign.rundir.layout import RunDir


@click.command("prompts")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--world", type=click.Choice(list(WORLD_SPLITS)), default="toy", show_default=True,
              help="Whose split the defaults are: toy (the toy model's: 500 + 120, the six "
              "paper types, 'then') or hard (toy-hard's: 600 + 120, all twelve types, both "
              "phrasings).")  # fmt: skip
@click.option("--train", "n_train", type=click.IntRange(min=0), default=None,
              help="Training prompts to generate.  [default: the world's, "
              f"toy {TOY_SPLIT.n_train}, hard {HARD_SPLIT.n_train}]")  # fmt: skip
@click.option("--test", "n_test", type=click.IntRange(min=0), default=None,
              help=f"Test prompts to generate.  [default: {TOY_SPLIT.n_test}]")  # fmt: skip
@click.option(
    "--seed", type=int, default=None, help=f"Generator seed.  [default: {TOY_SPLIT.seed}]"
)
@click.option("--form", type=click.Choice((*FORMS, MIXED)), default=None,
              help="Phrasing: 'then' (the paper's), 'from-to' or 'mixed' (both, half each).  "
              "[default: the world's, toy then, hard mixed]")  # fmt: skip
@click.option("--bottom", is_flag=True,
              help="Also generate the six DSR types with BOTTOM (the hard world's always do).")  # fmt: skip
@click.option("--official-csv", is_flag=True,
              help="Also write RUN_DIR/prompts_official.csv in the official format.")  # fmt: skip
@click.option("--from", "source", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Import this prompt file (Parquet/CSV/official CSV/JSONL) instead of "
              "generating.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite prompt files that differ.")
def prompts(
    run_dir: Path,
    world: str,
    n_train: int | None,
    n_test: int | None,
    seed: int | None,
    form: str | None,
    bottom: bool,
    official_csv: bool,
    source: Path | None,
    force: bool,
) -> None:
    """Write RUN_DIR/prompts.parquet: the seeded DSR-Dataset, or the prompts of --from FILE.

    The defaults are the toy split (what the toy model was pretrained on and is evaluated
    with); --world hard makes them the hard world's split (toy-hard's)."""
    if source is not None:
        given = (n_train, n_test, form, seed)
        if any(v is not None for v in given) or bottom or world != "toy":
            raise click.UsageError(
                "--from cannot be combined with --world/--train/--test/--seed/--form/--bottom"
            )
        items = read_prompts(source)
        origin = f"from {source}"
    else:
        split = world_split(world)
        split = replace(
            split,
            n_train=split.n_train if n_train is None else n_train,
            n_test=split.n_test if n_test is None else n_test,
            seed=split.seed if seed is None else seed,
            form=form or split.form,
            include_bottom=split.include_bottom or bottom,
        )
        items = split.prompts()
        origin = f"seed {split.seed}, form {split.form}" + (
            ", hard world" if world == "hard" else ""
        )
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
