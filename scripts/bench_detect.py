"""Benchmark: gdino-onnx (batched, ONNX Runtime) vs gdino-torch (per frame, the official way).

Both run the same random-weight GroundingDINO at the published grounding-dino-tiny
architecture (Swin-T + BERT-base, 900 queries, built from hand-written configs:
nothing is downloaded) on the same synthetic videos at Wan's 480x832 frame size, and
the script checks that both give the same detections before reporting frames/s.

    make bench-detect                        # defaults below, a few minutes on a CPU
    .venv/bin/python scripts/bench_detect.py --videos 4 --frames 16 --batch-size 8

The model and its export are cached in --workdir, so reruns only time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("outputs/bench_detect"))
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--frames", type=int, default=4, help="frames per video")
    p.add_argument("--frame-size", type=int, nargs=2, default=(480, 832), metavar=("H", "W"))
    p.add_argument("--batch-size", type=int, default=4, help="gdino-onnx frames per batch")
    p.add_argument("--threads", type=int, default=0, help="torch / ORT threads (0 = default)")
    p.add_argument("--device", default="cpu", help="torch device for gdino-torch")
    p.add_argument("--tiny", action="store_true", help="tiny model instead (smoke test)")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import onnxruntime as ort
    import torch
    from spatialalign.detection.export import ExportSettings, export_grounding_dino, natural_frame
    from spatialalign.detection.gdino_onnx import GroundingDinoOnnxDetector
    from spatialalign.detection.gdino_torch import GroundingDinoTorchDetector

    # the random-model builders are test helpers (tests/tiny_models.py), not part of the
    # installed package: this script runs from a checkout, beside the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import save_grounding_dino

    if args.threads:
        torch.set_num_threads(args.threads)
    kind = "tiny" if args.tiny else "real"
    work = args.workdir / kind
    model_dir = work / "model"
    t0 = time.perf_counter()
    if not (model_dir / "model.safetensors").is_file():
        print(f"building a random GroundingDINO ({kind} config) in {model_dir}", flush=True)
        save_grounding_dino(model_dir, real_size=not args.tiny, seed=0)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    settings = ExportSettings(frame_size=tuple(args.frame_size), verify_batch=1)
    side = export_grounding_dino(model_dir, work / "onnx", settings)
    t_export = time.perf_counter() - t0
    print(f"export: {'cached' if side.get('skipped') else f'{t_export:.0f} s'}", flush=True)

    videos = [
        np.stack([natural_frame(*args.frame_size, seed=100 * v + f) for f in range(args.frames)])
        for v in range(args.videos)
    ]
    classes = [("cat", "stump"), ("horse", "tree")]
    torch_det = GroundingDinoTorchDetector(str(model_dir), device=args.device)
    onnx_det = GroundingDinoOnnxDetector(
        str(work / "onnx"), batch_size=args.batch_size, threads=args.threads or None
    )
    # warm-up (first-call allocations), not timed
    torch_det.detect(videos[0][:1], classes[0])
    onnx_det.detect(videos[0][:1], classes[0])

    n = sum(len(v) for v in videos)
    t0 = time.perf_counter()
    ref = [torch_det.detect(v, classes[i % 2]) for i, v in enumerate(videos)]
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = [onnx_det.detect(v, classes[i % 2]) for i, v in enumerate(videos)]
    t_onnx = time.perf_counter() - t0

    same_labels = all(
        a.labels == b.labels
        for va, vb in zip(ref, got, strict=True)
        for a, b in zip(va, vb, strict=True)
    )
    box_err = max(
        (
            float(np.abs(a.boxes - b.boxes).max())
            for va, vb in zip(ref, got, strict=True)
            for a, b in zip(va, vb, strict=True)
            if len(a.boxes) and a.boxes.shape == b.boxes.shape
        ),
        default=0.0,
    )
    result = {
        "model": f"grounding-dino-tiny architecture, random weights ({kind} config)",
        "frame_size": list(args.frame_size),
        "graph_image_size": side["image_size"],
        "videos": args.videos,
        "frames": n,
        "batch_size": args.batch_size,
        "gdino_torch_fps": n / t_torch,
        "gdino_onnx_fps": n / t_onnx,
        "speedup": t_torch / t_onnx,
        "same_labels": same_labels,
        "max_box_diff_px": box_err,
        "onnx_providers": onnx_det.providers,
        "torch_device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "build_s": t_build,
        "export_s": None if side.get("skipped") else t_export,
    }
    print(json.dumps(result, indent=2))
    print(
        f"bench-detect: gdino-torch {result['gdino_torch_fps']:.3f} frames/s, gdino-onnx "
        f"{result['gdino_onnx_fps']:.3f} frames/s (batch {args.batch_size}), "
        f"{result['speedup']:.2f}x on {n} frames; labels equal: {same_labels}"
    )
    if args.json:
        from spatialalign.core.fileio import write_json

        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
