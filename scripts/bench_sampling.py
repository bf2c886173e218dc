"""Toy sampling throughput (videos/s) at several batch sizes, model only and end to end.

    .venv/bin/python scripts/bench_sampling.py [--threads 2] [--videos 128] [--batch-sizes 1 16 64]

Each figure is the best of ``--repeats`` runs (the machine may be shared).
"model" times ``ToyPipeline.__call__`` (20 steps, guidance 3 by default); "end to end"
times ``sample_videos`` into a fresh temporary run directory (generation + lossless mp4
writing + manifest), what ``spatialalign sample`` does. Prompts are the first
``videos / seeds`` of the official 120 test prompts, seeds 0..seeds-1. Uses the shipped
toy weights, or ``--model-path DIR``, or ``--random`` (the tiny test model).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from spatialalign.models.backends import ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.prompts import read_prompts
from spatialalign.sampling.sampler import sample_videos

OFFICIAL_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "official_eval120.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--videos", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--prompts", type=Path, default=OFFICIAL_CSV)
    ap.add_argument("--model-path", type=Path, default=None)
    ap.add_argument("--random", action="store_true", help="use ToyPipeline.random(seed=0)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="report the best of N runs (shared machine)"
    )
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    pipe = (
        ToyPipeline.random(seed=0) if args.random else ToyPipeline.from_pretrained(args.model_path)
    )
    which = "random" if args.random else str(args.model_path or "shipped")
    prompts = read_prompts(args.prompts)[: args.videos // args.seeds]
    n = len(prompts) * args.seeds
    texts = [p.text for p in prompts for _ in range(args.seeds)]
    seeds = [s for _ in prompts for s in range(args.seeds)]
    print(
        f"toy model: {which}, {pipe.num_frames}x{pipe.height}x{pipe.width}, "
        f"{args.steps} steps, guidance {args.guidance}, {args.threads} threads, {n} videos"
    )
    pipe(texts[:2], seeds[:2], num_inference_steps=2, guidance_scale=args.guidance)  # warm-up

    print("| batch size | model videos/s | end-to-end videos/s |")
    print("|---:|---:|---:|")
    for bs in args.batch_sizes:
        model_s, e2e_s = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for i in range(0, n, bs):
                pipe(
                    texts[i : i + bs],
                    seeds[i : i + bs],
                    num_inference_steps=args.steps,
                    guidance_scale=args.guidance,
                    batch_size=bs,
                )
            model_s.append(time.perf_counter() - t)
            backend = ToyBackend(pipe, steps=args.steps, guidance=args.guidance)
            with tempfile.TemporaryDirectory() as run:
                t = time.perf_counter()
                sample_videos(
                    run, backend, prompts, seeds=args.seeds, batch_size=bs, progress=False
                )
                e2e_s.append(time.perf_counter() - t)
        print(f"| {bs} | {n / min(model_s):.1f} | {n / min(e2e_s):.1f} |", flush=True)


if __name__ == "__main__":
    main()
