"""``spatialalign track RUN_DIR``: detect, validate and track every video of a run."""

from __future__ import annotations

from pathlib import Path

import click

from spatialalign.config import PRESETS, scoring_config
from spatialalign.detection.registry import (
    DEFAULT_ONNX_DIR,
    DETECTORS,
    detector_weights,
    make_detector,
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
) -> None:
    """Write RUN_DIR/tracks.parquet and detections.parquet from the run's videos.

    Resumable: a sample is skipped only when it was tracked with these settings from a
    video with the same content (a rerun says how many it redid and why). Sharded by
    RANK/WORLD_SIZE under torchrun or accelerate launch; rank 0 merges the tables.
    """
    from spatialalign.detection.pipeline import track_run
    from spatialalign.detection.tracker import tracker_config

    preset = preset or ("toy" if detector == "toy" else "official")
    scoring = scoring_config(preset, box_threshold=box_threshold, text_threshold=text_threshold)
    det = make_detector(
        detector,
        model_dir=model_dir,
        onnx_dir=onnx_dir,
        box_threshold=scoring.box_threshold,
        text_threshold=scoring.text_threshold,
        device=device,
        batch_size=batch_size,
        sam=sam,
    )
    summary = track_run(
        run_dir,
        det,
        scoring,
        tracker_config(preset),
        prompts=prompts_file,
        preset=preset,
        settings=detector_weights(detector, model_dir, onnx_dir, sam),
        overwrite=overwrite,
        merge_timeout=merge_timeout,
    )
    click.echo(summary.line())
