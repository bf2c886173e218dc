"""``spatialalign demo OUT_DIR``: score a small synthetic run that ships with the package.

The run (``spatialalign/data/demo/``, written by ``scripts/make_demo_data.py``) holds 30
prompts x 3 seeds with tracked boxes that mimic good, bad, gappy, rejected and
untracked videos. The demo copies it into ``OUT_DIR`` and runs ``score-batch`` on it,
so a fresh install shows the whole scoring output in a second, without a GPU or weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from spatialalign.config import OFFICIAL
from spatialalign.errors import SpatialAlignError
from spatialalign.io import atomic_path

DEMO_FILES: tuple[str, ...] = (
    "prompts.parquet",
    "samples/manifest.parquet",
    "tracks.parquet",
    "detections.parquet",
)


def demo_data_dir() -> resources.abc.Traversable:
    """The shipped demo run inside the installed package."""
    return resources.files("spatialalign") / "data" / "demo"


def copy_demo_run(out_dir: str | Path) -> Path:
    """Copies the shipped demo run into ``out_dir`` (atomic per file) and returns it."""
    out_dir = Path(out_dir)
    source = demo_data_dir()
    for name in DEMO_FILES:
        item = source.joinpath(*name.split("/"))
        if not item.is_file():
            raise SpatialAlignError(f"demo data missing from the installation: {name}")
        with atomic_path(out_dir / name) as tmp:
            tmp.write_bytes(item.read_bytes())
    return out_dir


@click.command("demo")
@click.argument("out_dir", type=click.Path(path_type=Path), default=Path("demo_out"))
@click.option("--plots", is_flag=True, help="Also draw per-video SSR curves.")
def demo(out_dir: Path, plots: bool) -> None:
    """Score the shipped synthetic demo run in OUT_DIR (default: demo_out)."""
    from spatialalign.scoring.batch import score_run
    from spatialalign.scoring.summary import format_summary, one_line

    copy_demo_run(out_dir)
    click.echo(f"demo run copied to {out_dir}/ ({', '.join(DEMO_FILES)})")
    result = score_run(out_dir, config=OFFICIAL, plots=plots)
    click.echo(format_summary(result.summary))
    click.echo("files:")
    for what, path in result.paths.items():
        click.echo(f"  {what:<12}{path}")
    click.echo(one_line(result.summary))
