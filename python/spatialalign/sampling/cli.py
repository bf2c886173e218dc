"""``spatialalign sample`` and ``spatialalign ingest``: thin click layers over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options
from spatialalign.parallel.workers import WorkerSpec
from spatialalign.sampling.batching import BatchSpec
from spatialalign.sampling.model_options import model_options, pop_backend_config
from spatialalign.sampling.seeds import SeedRange, pop_seed_range


@click.command("sample")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Prompt file (default: RUN_DIR/prompts.parquet).",
)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "test"]),
    default="all",
    show_default=True,
    help="Which prompts of the file to sample.",
)
@click_options(SeedRange)
@click_options(BatchSpec)
@click_options(WorkerSpec)
@model_options
def sample(
    run_dir: Path,
    prompts_file: Path | None,
    split: str,
    batch_size: int | None,
    workers: int | None,
    **options: Any,
) -> None:
    """Generate a video per prompt x seed into RUN_DIR/samples/ (resumable, shards by rank).

    Seeds S..S+N-1 (--first-seed S, --seeds N; default 0..4); each video is named with its
    seed.

    A rerun regenerates exactly the videos whose prompt text, model, adapter or settings
    changed (each video records what it was made from) and says why. Under torchrun /
    accelerate launch each rank takes its share of the pending samples; the manifest
    (samples/manifest.parquet) is merged at the end; without a launcher, --workers N
    processes share the work the same way. --batch-size N samples N videos of
    the same shape in one pipeline call (wan: prompts and seeds batched together).
    """
    from spatialalign.models.registry import is_toy
    from spatialalign.parallel.workers import Workers, preload_for, resolve_workers
    from spatialalign.sampling.run import planned_videos, sample_on_workers

    seed_range = pop_seed_range(options)
    config = pop_backend_config(options)
    videos = planned_videos(run_dir, prompts_file, split, seed_range.seeds)
    toy = is_toy(config.model)
    n = resolve_workers(workers, toy, config.device, videos)
    with Workers(n, preload_for(toy)) as pool:
        result = sample_on_workers(
            run_dir,
            config,
            pool,
            prompts_file=prompts_file,
            split=split,
            seeds=seed_range.seeds,
            first_seed=seed_range.first_seed,
            batch_size=batch_size,
        )
    click.echo(result.summary())


@click.command("ingest")
@click.argument("videos_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--prompts",
    "prompts_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The prompts the videos were generated from (Parquet, CSV, official CSV, JSONL).",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory to write samples/manifest.parquet into [VIDEOS_DIR].",
)
@click.option(
    "--copy", is_flag=True, help="Copy the videos into RUN_DIR/samples/ (default: reference them)."
)
@click.option(
    "--ignore-unknown",
    is_flag=True,
    help="Leave out videos matching no prompt id (default: error).",
)
def ingest(
    videos_dir: Path, prompts_file: Path, run_dir: Path | None, copy: bool, ignore_unknown: bool
) -> None:
    """Bring in VIDEOS_DIR/*.mp4 from any model: writes samples/manifest.parquet (model=external).

    Understands the official naming {prompt_id}_F81_seed{NN}.mp4 and falls back to
    {prompt_id}*.mp4. Unreadable videos are kept (track rejects them as unreadable_video).
    """
    from spatialalign.core.dsr.files import read_prompts
    from spatialalign.sampling.ingest import ingest_videos

    result = ingest_videos(
        videos_dir, read_prompts(prompts_file), run_dir, copy=copy, ignore_unknown=ignore_unknown
    )
    click.echo(result.summary())
