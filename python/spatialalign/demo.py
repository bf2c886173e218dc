"""``spatialalign demo OUT_DIR``: the pipeline that exists so far, on the embedded toy default.

By default it runs the real stages on the toy world, exactly as a user would from the
command line: ``prompts`` (a small seeded test set) -> ``sample`` (the shipped toy T2V
model) -> ``track`` (the toy colour detector, toy validity rules) -> ``score-batch``
(the toy preset, which ``track`` recorded), then prints the summary table and where the
files are. Every stage is resumable, so rerunning the demo reuses what is already there.

``--synthetic`` instead scores a small run that ships with the package
(``spatialalign/data/demo/``, written by ``scripts/make_demo_data.py``: 30 prompts x 3
seeds with tracks that mimic good, bad, gappy, rejected and untracked videos), which
needs neither torch nor weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from spatialalign.config import OFFICIAL
from spatialalign.errors import SpatialAlignError
from spatialalign.io import atomic_path
from spatialalign.rundir import RunDir


def _demo_files() -> tuple[str, ...]:
    """The shipped demo run's files, relative to a run directory (names from RunDir)."""
    run = RunDir(Path("."))
    paths = (run.prompts_path, run.manifest_path, run.tracks_path, run.detections_path)
    return tuple(p.relative_to(run.root).as_posix() for p in paths)


DEMO_FILES: tuple[str, ...] = _demo_files()


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


def run_toy_pipeline(out_dir: Path, *, n_prompts: int, seeds: int, plots: bool) -> None:
    """prompts -> sample -> track -> score-batch on the toy default, through the real verbs."""
    from spatialalign.cli import cli

    stages = [
        ["prompts", str(out_dir), "--train", "0", "--test", str(n_prompts), "--seed", "0"],
        ["sample", str(out_dir), "--model", "toy", "--seeds", str(seeds)],
        ["track", str(out_dir), "--detector", "toy", "--preset", "toy"],
        # no --preset: score-batch uses the one track recorded (toy)
        ["score-batch", str(out_dir), *(["--plots"] if plots else [])],
    ]
    for args in stages:
        click.secho(f"$ spatialalign {' '.join(args)}", bold=True)
        cli.main(args=args, prog_name="spatialalign", standalone_mode=False)


@click.command("demo")
@click.argument("out_dir", type=click.Path(path_type=Path), default=Path("demo_out"))
@click.option(
    "--prompts",
    "n_prompts",
    type=click.IntRange(min=6),
    default=24,
    show_default=True,
    help="Test prompts to generate (balanced over the six DSR types).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=2, show_default=True, help="Videos per prompt."
)
@click.option("--plots", is_flag=True, help="Also draw per-video SSR curves.")
@click.option(
    "--synthetic",
    is_flag=True,
    help="Score the shipped synthetic tracks instead (no model, no torch needed).",
)
def demo(out_dir: Path, n_prompts: int, seeds: int, plots: bool, synthetic: bool) -> None:
    """Run the toy pipeline (prompts -> sample -> track -> score-batch) in OUT_DIR."""
    if not synthetic:
        run_toy_pipeline(out_dir, n_prompts=n_prompts, seeds=seeds, plots=plots)
        run = RunDir(out_dir)
        files = (run.prompts_path, run.samples_dir, run.tracks_path, run.detections_path)
        files += (run.scores_path, run.summary_path, run.correctness_path)
        click.echo(f"demo run in {out_dir}/: " + ", ".join(p.name for p in files))
        return

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
