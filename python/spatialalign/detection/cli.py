"""``spatialalign track RUN_DIR``: detect, validate and track every video of a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from spatialalign.core.options import click_options, from_options
from spatialalign.detection.spec import TrackSpec, manifest_preset
from spatialalign.parallel.workers import WorkerSpec

TRACK_FLAGS = {"gdino_dir": ("--model-dir",)}
"""``track`` names the GroundingDINO checkpoint ``--model-dir`` (``eval``/``loop``: ``--gdino-dir``)."""


@click.command("track")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click_options(TrackSpec, flags=TRACK_FLAGS)
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Prompt file.  [default: RUN_DIR/prompts.parquet]")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Redo samples already tracked with these settings.")
@click.option("--merge-timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds rank 0 waits for the other ranks' parts before giving up.")  # fmt: skip
@click_options(WorkerSpec)
def track(
    run_dir: Path,
    prompts_file: Path | None,
    overwrite: bool,
    merge_timeout: float,
    workers: int | None,
    **options: Any,
) -> None:
    """Write RUN_DIR/tracks.parquet and detections.parquet from the run's videos.

    The validity preset defaults to the one of the model that sampled the videos (the
    manifest's model: toy, toy-hard; official for wan), else to the detector's.

    Resumable: a sample is skipped only when it was tracked with these settings from a
    video with the same content (a rerun says how many it redid and why). Sharded by
    RANK/WORLD_SIZE under torchrun or accelerate launch; rank 0 merges the tables.
    """
    from spatialalign.detection.sharded import track_on_workers, track_with
    from spatialalign.parallel.workers import Workers, resolve_workers
    from spatialalign.rundir.layout import RunDir

    spec = from_options(TrackSpec, options)
    spec.detection.validate()
    if spec.preset is None:  # the preset of the model that sampled the videos, if known
        spec = replace(spec, preset=manifest_preset(run_dir) or spec.preset_name)
    n = 1
    if not overwrite and workers != 1:
        videos = RunDir(run_dir).require().read_manifest(["seed"], resolve_paths=False).num_rows
        toy = spec.detection.detector == "toy"  # the colour detector: tiny CPU work
        n = resolve_workers(workers, toy, spec.device, videos)
    if n == 1:  # one process (or one of a launcher's ranks)
        summary = track_with(
            spec, run_dir, prompts=prompts_file, overwrite=overwrite, merge_timeout=merge_timeout
        )
    else:
        with Workers(n, ("spatialalign.detection.sharded",)) as pool:
            summary = track_on_workers(run_dir, spec, pool, prompts=prompts_file)
    click.echo(summary.line())
