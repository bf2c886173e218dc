"""``spatialalign export-onnx``: GroundingDINO (+ optional SAM) -> verified ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export-onnx")
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Local transformers GroundingDINO checkpoint (e.g. grounding-dino-tiny).")  # fmt: skip
@click.option("--sam", "sam_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also export this local transformers SAM checkpoint (encoder + box decoder).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("models/onnx"), show_default=True, help="Output directory.")  # fmt: skip
@click.option("--frame-size", type=(int, int), default=(480, 832), show_default=True,
              help="Video frame HEIGHT WIDTH; the graph's image size is what the processor makes of it.")  # fmt: skip
@click.option("--image-size", type=(int, int), default=None,
              help="Graph pixel_values HEIGHT WIDTH (overrides --frame-size); smaller frames are padded.")  # fmt: skip
@click.option("--text-len", type=click.IntRange(min=4), default=32, show_default=True,
              help="Padded caption length in tokens.")  # fmt: skip
@click.option("--opset", type=click.IntRange(min=16), default=17, show_default=True)
@click.option("--verify-video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Verify on this video's first frame instead of a built-in synthetic frame.")  # fmt: skip
@click.option("--force", is_flag=True, help="Re-export even if a matching export exists.")
def export_onnx(
    model_dir: Path,
    sam_dir: Path | None,
    out: Path,
    frame_size: tuple[int, int],
    image_size: tuple[int, int] | None,
    text_len: int,
    opset: int,
    verify_video: Path | None,
    force: bool,
) -> None:
    """Export GroundingDINO (and SAM) to ONNX, verified against PyTorch before writing."""
    from spatialalign.detection.export import ExportSettings, export_grounding_dino, export_sam

    frame = None
    if verify_video is not None:
        from spatialalign.core.video import read_video

        frame = read_video(verify_video)[0]
        frame_size = tuple(frame.shape[:2]) if image_size is None else frame_size
    settings = ExportSettings(
        frame_size=tuple(frame_size),
        image_size=tuple(image_size) if image_size else None,
        text_len=text_len,
        opset=opset,
    )
    with click.progressbar(length=2 if sam_dir else 1, label="exporting", file=None) as bar:
        g = export_grounding_dino(model_dir, out, settings, verify_frame=frame, force=force)
        bar.update(1)
        s = export_sam(sam_dir, out, force=force) if sam_dir else None
        if s is not None:
            bar.update(1)
    parts = [_line("GroundingDINO", g, f"{g['image_size'][0]}x{g['image_size'][1]}")]
    if s is not None:
        parts.append(_line("SAM", s, f"{s['image_size']}px"))
    click.echo(f"export-onnx: {'; '.join(parts)} -> {out}")


def _line(name: str, sidecar: dict, size: str) -> str:
    if sidecar.get("skipped"):
        return f"{name} already exported ({size}), skipped"
    checks = sidecar["verification"]
    worst = max(
        max(
            r.get("max_abs_logits_agreeing", 0.0),
            r.get("max_abs_boxes_agreeing", 0.0),
            r.get("max_abs", 0.0),
        )
        for r in checks
    )
    differ = sum(r.get("slots_differ", 0) for r in checks)
    note = f", {differ} reordered query slot(s)" if differ else ""
    return f"{name} {size} verified (max |ONNX-PyTorch| {worst:.1e}{note})"
