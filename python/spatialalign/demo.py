"""``spatialalign demo OUT_DIR``: the whole job on the embedded toy default, in a minute or two.

By default it runs the real verbs, exactly as a user would from the command line: the
shipped toy T2V model and the shipped DPO+ZO-aligned LoRA (``toy/weights/aligned/``) are
each evaluated on the same toy TEST prompts and seeds (``eval``: sample -> track with the
toy colour detector -> score-batch with the toy preset -> metrics), then compared
(``compare``: Correctness@0.7 with bootstrap intervals) and reported (``report``: one static
HTML page with curves, per-type bars, the training curves and before/after videos).
Every stage is resumable, so rerunning the demo reuses what is already there.

``--synthetic`` instead scores a small run that ships with the package
(``spatialalign/data/demo/``, written by ``scripts/make_demo_data.py``: 30 prompts x 3
seeds with tracks that mimic good, bad, gappy, rejected and untracked videos), which
needs neither torch nor weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.core.presets import OFFICIAL
from spatialalign.models.toy.shipped import aligned_adapter
from spatialalign.rundir.layout import RunDir


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


def demo_commands(out_dir: Path, *, n_prompts: int, seeds: int) -> list[list[str]]:
    """The verbs the demo runs: eval base and aligned, compare them, report."""
    base, aligned = str(out_dir / "base"), str(out_dir / "aligned")
    prompts = ["--prompts", f"toy-test:{n_prompts}", "--seeds", str(seeds)]
    return [
        ["eval", base, "--model", "toy", *prompts],
        ["eval", aligned, "--model", "toy", "--adapter", str(aligned_adapter()), *prompts],
        ["compare", base, aligned, "--names", "base,aligned", "--out", str(out_dir / "compare")],
        ["report", base, aligned, "--names", "base,aligned", "--out", str(out_dir / "report")],
    ]


def run_toy_demo(out_dir: Path, *, n_prompts: int, seeds: int) -> None:
    """Base vs aligned toy model through the real verbs, each command printed first.

    The verbs are the stages' own click commands (the top-level ``cli`` registers this
    demo, so the demo does not import it back).
    """
    from spatialalign.evaluation.cli import eval_cmd
    from spatialalign.evaluation.compare_cli import compare
    from spatialalign.report.cli import report

    verbs = {"eval": eval_cmd, "compare": compare, "report": report}
    for args in demo_commands(out_dir, n_prompts=n_prompts, seeds=seeds):
        click.secho(f"$ spatialalign {' '.join(args)}", bold=True)
        verbs[args[0]].main(
            args=args[1:], prog_name=f"spatialalign {args[0]}", standalone_mode=False
        )


@click.command("demo")
@click.argument("out_dir", type=click.Path(path_type=Path), default=Path("demo_out"))
@click.option(
    "--prompts",
    "n_prompts",
    type=click.IntRange(min=6),
    default=24,
    show_default=True,
    help="Toy TEST prompts to evaluate (the first N of the split `toy evaluate` uses).",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=2, show_default=True, help="Videos per prompt."
)
@click.option("--plots", is_flag=True, help="--synthetic: also draw per-video SSR curves.")
@click.option(
    "--synthetic",
    is_flag=True,
    help="Score the shipped synthetic tracks instead (no model, no torch needed).",
)
def demo(out_dir: Path, n_prompts: int, seeds: int, plots: bool, synthetic: bool) -> None:
    """Base vs aligned toy model on toy TEST prompts: eval both, compare, report (OUT_DIR)."""
    if not synthetic:
        run_toy_demo(out_dir, n_prompts=n_prompts, seeds=seeds)
        click.echo(
            f"demo: runs {out_dir / 'base'} and {out_dir / 'aligned'}; table "
            f"{out_dir / 'compare' / 'comparison.md'}; report {out_dir / 'report' / 'index.html'}"
        )
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
