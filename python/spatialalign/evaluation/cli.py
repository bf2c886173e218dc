"""``spatialalign eval RUN_DIR``: a thin click layer over :func:`.eval_run.eval_run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options, from_options
from spatialalign.detection.spec import DetectorSpec
from spatialalign.parallel.workers import WorkerSpec
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT
from spatialalign.sampling.batching import BatchSpec
from spatialalign.sampling.model_options import model_options, pop_backend_config
from spatialalign.sampling.seeds import SeedRange, pop_seed_range


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


@click.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prompts", default=None,
              help="Prompt file (Parquet/CSV/official CSV/JSONL), or toy-test[:N] for the toy "
              f"TEST split ({TOY_SPLIT.n_test} prompts), toy-hard-test[:N] for the hard world's "
              f"({HARD_SPLIT.n_test}).  [default: RUN_DIR/prompts.parquet]")  # fmt: skip
@click.option("--split", default="auto", show_default=True,
              help="Prompts of the file to evaluate: auto (test when present, else all), "
              "all, train, test.")  # fmt: skip
@click_options(SeedRange)
@click.option("--best-of", type=int, default=1, show_default=True,
              help="Sample N candidates per slot and keep the highest DSR-Score.")  # fmt: skip
@click_options(DetectorSpec)
@click.option("--dinov2", type=click.Path(path_type=Path), default=None,
              help="Local DINOv2 directory: adds ID consistency.")  # fmt: skip
@click.option("--clip", type=click.Path(path_type=Path), default=None,
              help='Local CLIP directory: adds CLIP-IQA "natural".')  # fmt: skip
@click.option("--musiq", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="VBench imaging quality: a local MUSIQ SPAQ checkpoint (.safetensors, or "
              ".pth read with weights_only); needs the iqa extra.")  # fmt: skip
@click.option("--dinov2-size", type=click.IntRange(min=14), default=518, show_default=True,
              help="DINOv2 input side for the animal crops.")  # fmt: skip
@click_options(BatchSpec)
@click_options(WorkerSpec)
@model_options
def eval_cmd(
    run_dir: Path,
    prompts: str | None,
    split: str,
    best_of: int,
    dinov2: Path | None,
    clip: Path | None,
    musiq: Path | None,
    dinov2_size: int,
    batch_size: int | None,
    workers: int | None,
    **options: Any,
) -> None:
    """Evaluate a model: sample the test prompts with seeds S..S+N-1, track, score, measure.

    Seeds: --first-seed S (default 0), --seeds N (default 5: the paper's seeds 0-4).

    Writes RUN_DIR/scores.parquet, summary.json (score-batch's, plus metric means and the
    sampling compute) and metrics.parquet. Resumable: a rerun redoes only what changed.
    With --best-of N, N candidates per slot go to RUN_DIR/candidates/ and the run keeps
    the one with the highest DSR-Score per slot.
    """
    from spatialalign.evaluation.eval_run import EvalRunConfig, eval_run

    seed_range = pop_seed_range(options)
    backend = pop_backend_config(options)
    cfg = EvalRunConfig(
        backend=backend,
        prompts=prompts,
        split=split,
        seeds=seed_range.seeds,
        first_seed=seed_range.first_seed,
        best_of=best_of,
        batch_size=batch_size,
        detection=from_options(DetectorSpec, options),
        dinov2=_str(dinov2),
        clip=_str(clip),
        musiq=_str(musiq),
        dino_image_size=dinov2_size,
        workers=workers,
    )
    result = eval_run(
        run_dir, cfg, echo=lambda line: click.echo(line, err=line.startswith("warning:"))
    )
    click.echo(result.line())
