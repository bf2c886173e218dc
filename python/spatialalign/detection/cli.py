"""``spatialalign track RUN_DIR``: detect, validate and track every video of a run."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.core.presets import PRESETS
from spatialalign.detection.registry import (
    DEFAULT_ONNX_DIR,
    DETECTORS,
)


@click.command("track")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--detector", type=click.Choice(DETECTORS), default="toy", show_default=True,
              help="Detector back end.")  # fmt: skip
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local GroundingDINO checkpoint (gdino-torch).")  # fmt: skip
@click.option("--onnx-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Exported ONNX graphs (gdino-onnx).  [default: {DEFAULT_ONNX_DIR}]")  # fmt: skip
@click.option("--sam", type=click.Path(path_type=Path), default=None,
              help="Refine boxes with SAM from this local checkpoint / ONNX directory.")  # fmt: skip
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Validity thresholds.  [default: toy for the toy detector, else official]")  # fmt: skip
@click.option("--box-threshold", type=click.FloatRange(0, 1), default=None,
              help="GroundingDINO box threshold.  [default: the preset's, 0.4]")  # fmt: skip
@click.option("--text-threshold", type=click.FloatRange(0, 1), default=None,
              help="GroundingDINO text threshold.  [default: the preset's, 0.3]")  # fmt: skip
@click.option("--device", default=None, help="Torch device for gdino-torch (default: auto).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Frames per ONNX Runtime batch (gdino-onnx).")  # fmt: skip
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Prompt file.  [default: RUN_DIR/prompts.parquet]")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Redo samples already tracked with these settings.")
@click.option("--merge-timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds rank 0 waits for the other ranks' parts before giving up.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes that share the work [toy detector on the CPU: one per core and "
              "per 200 videos, up to 8; else 1; under torchrun 1].")  # fmt: skip
def track(
    run_dir: Path,
    detector: str,
    model_dir: Path | None,
    onnx_dir: Path | None,
    sam: Path | None,
    preset: str | None,
    box_threshold: float | None,
    text_threshold: float | None,
    device: str | None,
    batch_size: int,
    prompts_file: Path | None,
    overwrite: bool,
    merge_timeout: float,
    workers: int | None,
) -> None:
    """Write RUN_DIR/tracks.parquet and detections.parquet from the run's videos.

    Resumable: a sample is skipped only when it was tracked with these settings from a
    video with the same content (a rerun says how many it redid and why). Sharded by
    RANK/WORLD_SIZE under torchrun or accelerate launch; rank 0 merges the tables.
    """
    from spatialalign.detection.sharded import TrackSpec, track_on_workers, track_with
    from spatialalign.parallel.workers import Workers, resolve_workers
    from spatialalign.rundir.layout import RunDir

    spec = TrackSpec(
        detector=detector,
        gdino_dir=_str(model_dir),
        onnx_dir=_str(onnx_dir),
        sam=_str(sam),
        device=device,
        preset=preset,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        batch_size=batch_size,
    )
    n = 1
    if not overwrite and workers != 1:
        videos = RunDir(run_dir).require().read_manifest(["seed"], resolve_paths=False).num_rows
        n = resolve_workers(workers, "toy" if detector == "toy" else detector, device, videos)
    if n == 1:  # one process (or one of a launcher's ranks)
        summary = track_with(
            spec, run_dir, prompts=prompts_file, overwrite=overwrite, merge_timeout=merge_timeout
        )
    else:
        with Workers(n, ("spatialalign.detection.sharded",)) as pool:
            summary = track_on_workers(run_dir, spec, pool, prompts=prompts_file)
    click.echo(summary.line())


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
