"""Toy sampling throughput: achieved GFLOP/s against the machine's matmul peak, the
previous sampling loop against the current one, and where ``sample_videos`` spends its time.

    .venv/bin/python scripts/bench_sampling.py [--threads 1] [--videos 64] [--batch-size 16]
        [--repeats 5] [--json out.json]

Three parts, all in one process at ``--threads`` torch threads:

1. **Model vs peak.** The toy transformer's FLOPs per forward are counted with
   ``torch.utils.flop_counter.FlopCounterMode`` (one forward at the sampling batch: 2 x
   batch with guidance); a clip batch makes ``--steps`` forwards. The peak is
   ``torch.mm`` (same dtype) over exactly the model's linear shapes at that batch (each
   block's q/k/v/o, cross-attention q/o and both FFN matmuls, tokens x in @ in x out),
   timed in the same run. Achieved = FLOPs / time of ``sample_latents``.
2. **Old vs new, side by side.** ``legacy_sample_latents`` (the loop before issue 21:
   ``sample_latents(reuse_constants=False)``, the text projection and cross-attention
   keys/values recomputed every step; now under ``inference_mode`` too, which alone
   measured ~0.7 ms a batch) and ``ToyPipeline.sample_latents`` alternate on the same batch, ``--repeats``
   times each; the latents are checked bit-identical. Medians of wall time and of process
   CPU time (on a shared machine the CPU time is the steadier of the two).
3. **End to end.** ``sample_videos`` (what ``spatialalign sample --model toy`` does) into a
   fresh run directory, the old and the new loop alternating, with its time split into
   model (denoising), codec decode, mp4 encoding + file write (``write_video``), manifest
   part writes and the rest (planning, probing, records, merge).

Prompts: the first ``videos / seeds`` of the official 120 test prompts, seeds
0..seeds-1. Uses the shipped toy weights, ``--model-path DIR``, or ``--random``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from spatialalign.models.backends import ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.prompts import read_prompts
from spatialalign.sampling import sampler as sampler_mod
from spatialalign.sampling.sampler import sample_videos
from torch.utils.flop_counter import FlopCounterMode

OFFICIAL_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "official_eval120.csv"


@torch.no_grad()
def legacy_sample_latents(
    pipe: ToyPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 3.0,
) -> torch.Tensor:
    """The loop before issue 21 (the baseline): every module runs at every step."""
    return pipe.sample_latents(
        prompts,
        seeds,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        reuse_constants=False,
    )


class LegacyPipeline:
    """``ToyPipeline.__call__`` with the legacy denoising loop (for the end-to-end baseline)."""

    def __init__(self, pipe: ToyPipeline) -> None:
        self.pipe = pipe
        self.num_frames, self.height, self.width, self.fps = (
            pipe.num_frames,
            pipe.height,
            pipe.width,
            pipe.fps,
        )

    def state_dict(self) -> dict:
        return self.pipe.state_dict()

    def __call__(self, prompts, seeds, *, num_inference_steps=20, guidance_scale=3.0, **_):
        lat = legacy_sample_latents(
            self.pipe,
            list(prompts),
            list(seeds),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
        )
        with torch.no_grad():
            return self.pipe.vae.decode_frames(lat)


def forward_flops(pipe: ToyPipeline, prompts: Sequence[str], seeds: Sequence[int], guidance: float):
    """FLOPs of one transformer forward at this batch (2x with guidance), by operator."""
    latents = pipe.prepare_latents(seeds)
    context = pipe.encode_prompt(prompts)
    if guidance > 1.0:
        latents = torch.cat([latents, latents])
        context = torch.cat([context, pipe.encode_prompt([""] * len(prompts))])
    t = pipe.scheduler.timesteps[0] if len(pipe.scheduler.timesteps) else torch.tensor(999.0)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        pipe.transformer(
            hidden_states=latents,
            timestep=t.expand(latents.shape[0]),
            encoder_hidden_states=context,
            return_dict=False,
        )
    by_op = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), by_op


def linear_shapes(pipe: ToyPipeline, batch: int, guidance: float) -> list[tuple[int, int, int]]:
    """(M, K, N) of the transformer's per-token matmuls at this batch, one forward."""
    cfg = pipe.transformer.config
    _, f, h, w = pipe.latent_shape
    pt, ph, pw = cfg.patch_size
    tokens = (2 if guidance > 1.0 else 1) * batch * (f // pt) * (h // ph) * (w // pw)
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    per_block = [(tokens, dim, dim)] * 6 + [(tokens, dim, cfg.ffn_dim), (tokens, cfg.ffn_dim, dim)]
    return per_block * cfg.num_layers + [(tokens, dim, cfg.out_channels * pt * ph * pw)]


class MatmulPeak:
    """``torch.mm`` (float32) over ``shapes``: one sweep's FLOPs and its wall and CPU time."""

    def __init__(self, shapes: list[tuple[int, int, int]]) -> None:
        self.mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
        self.flops = sum(2 * m * k * n for m, k, n in shapes)
        self.sweep()

    def sweep(self, times: int = 10) -> tuple[float, float]:
        """GFLOP/s by wall time and by CPU time over ``times`` sweeps."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(times):
            for a, b in self.mats:
                torch.mm(a, b)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return times * self.flops / wall / 1e9, times * self.flops / cpu / 1e9


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


class Split:
    """Wraps the functions ``sample_videos`` calls and adds up the wall time in each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start

        setattr(owner, name, call)
        self._undo.append((owner, name, fn))

    def undo(self) -> None:
        for owner, name, fn in reversed(self._undo):
            if name in getattr(owner, "__dict__", {}) and isinstance(owner, torch.nn.Module):
                delattr(owner, name)
            else:
                setattr(owner, name, fn)
        self._undo.clear()


def end_to_end(pipe, backend_pipe, prompts, args) -> tuple[float, dict[str, float]]:
    """One ``sample_videos`` run: its wall time and the split (wall), plus its CPU time."""
    split = Split()
    split.wrap(pipe.vae, "decode_frames", "codec decode")
    split.wrap(sampler_mod, "write_video", "mp4 encode + file write")
    split.wrap(sampler_mod, "write_rows", "manifest part writes")
    backend = ToyBackend(backend_pipe, steps=args.steps, guidance=args.guidance)
    backend._identity = "weights:bench"  # hashing the weights is per run, not per clip
    split.wrap(backend, "generate", "generate")
    try:
        with tempfile.TemporaryDirectory() as run:
            wall, cpu, _ = timed(
                lambda: sample_videos(
                    run,
                    backend,
                    prompts,
                    seeds=args.seeds,
                    batch_size=args.batch_size,
                    progress=False,
                )
            )
    finally:
        split.undo()
    s = dict(split.seconds)
    s["model (denoising)"] = s.pop("generate") - s.get("codec decode", 0.0)
    s["rest (plan, probe, records, merge)"] = wall - sum(s.values())
    s["CPU time"] = cpu
    return wall, s


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16, help="the toy sample default")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--prompts", type=Path, default=OFFICIAL_CSV)
    ap.add_argument("--model-path", type=Path, default=None)
    ap.add_argument("--random", action="store_true", help="use ToyPipeline.random(seed=0)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each variant (medians)")
    ap.add_argument("--skip-e2e", action="store_true", help="parts 1-2 only")
    ap.add_argument(
        "--profile", action="store_true", help="also print torch.profiler's top ops (new loop)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    pipe = (
        ToyPipeline.random(seed=0) if args.random else ToyPipeline.from_pretrained(args.model_path)
    )
    which = "random" if args.random else str(args.model_path or "shipped")
    prompts = read_prompts(args.prompts)[: args.videos // args.seeds]
    texts = [p.text for p in prompts for _ in range(args.seeds)]
    seeds = [s for _ in prompts for s in range(args.seeds)]
    bs = min(args.batch_size, len(texts))
    bt, bseeds = texts[:bs], seeds[:bs]
    print(
        f"toy model: {which}, {pipe.num_frames}x{pipe.height}x{pipe.width}, {args.steps} "
        f"steps, guidance {args.guidance}, {args.threads} thread(s), batch {bs}, "
        f"{len(texts)} videos end to end, {args.repeats} repeats"
    )
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    # 1. FLOPs and the matmul peak at the model's shapes
    flops, by_op = forward_flops(pipe, bt, bseeds, args.guidance)
    batch_flops = flops * args.steps
    peak_mm = MatmulPeak(linear_shapes(pipe, bs, args.guidance))
    share = ", ".join(f"{k.split('.')[-1]} {v / flops:.0%}" for k, v in by_op.items())
    print(f"\nFLOPs per forward (batch {bs}, x2 for guidance): {flops / 1e9:.3f} G ({share})")

    # 2. legacy vs current sample_latents, alternating
    kw = {"num_inference_steps": args.steps, "guidance_scale": args.guidance}
    legacy_sample_latents(pipe, bt[:2], bseeds[:2], num_inference_steps=2)  # warm-up
    pipe.sample_latents(bt[:2], bseeds[:2], num_inference_steps=2)
    runs: dict[str, dict[str, list[float]]] = {
        "old": {"wall": [], "cpu": []},
        "new": {"wall": [], "cpu": []},
    }
    ref = new = None
    peaks: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(args.repeats):
        pw, pc = peak_mm.sweep()
        peaks["wall"].append(pw)
        peaks["cpu"].append(pc)
        w, c, ref = timed(lambda: legacy_sample_latents(pipe, bt, bseeds, **kw))
        runs["old"]["wall"].append(w)
        runs["old"]["cpu"].append(c)
        w, c, new = timed(lambda: pipe.sample_latents(bt, bseeds, **kw))
        runs["new"]["wall"].append(w)
        runs["new"]["cpu"].append(c)
    identical = bool(torch.equal(ref, new))
    peak_w, peak_c = median(peaks["wall"]), median(peaks["cpu"])
    peak = peak_c
    print(
        f"torch.mm at the model's linear shapes (same run, alternating; medians): "
        f"{peak_w:.1f} GFLOP/s wall, {peak_c:.1f} GFLOP/s CPU"
    )
    print(
        f"\nsample_latents, batch {bs} (medians of {args.repeats}); latents bit-identical: "
        f"{identical}"
    )
    print(
        "| loop | wall s | CPU s | clips/s (wall) | GFLOP/s (wall) | of mm peak | "
        "GFLOP/s (CPU) | of mm peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    model = {}
    for name in ("old", "new"):
        w, c = median(runs[name]["wall"]), median(runs[name]["cpu"])
        gw, gc = batch_flops / w / 1e9, batch_flops / c / 1e9
        model[name] = {
            "wall_s": w,
            "cpu_s": c,
            "clips_per_s": bs / w,
            "gflops_wall": gw,
            "gflops_cpu": gc,
            "peak_fraction_wall": gw / peak_w,
            "peak_fraction_cpu": gc / peak_c,
        }
        print(
            f"| {name} | {w:.3f} | {c:.3f} | {bs / w:.1f} | {gw:.1f} | {gw / peak_w:.0%} | "
            f"{gc:.1f} | {gc / peak_c:.0%} |"
        )
    ratio_w = model["old"]["wall_s"] / model["new"]["wall_s"]
    ratio_c = model["old"]["cpu_s"] / model["new"]["cpu_s"]
    paired = median([o / n for o, n in zip(runs["old"]["cpu"], runs["new"]["cpu"], strict=True)])
    print(
        f"new / old clips/s, model only: {ratio_w:.2f}x wall, {ratio_c:.2f}x CPU "
        f"(median of paired CPU ratios {paired:.2f}x)"
    )
    out |= {
        "flops_per_forward": flops,
        "flops_by_op": by_op,
        "mm_peak_gflops_wall": peak_w,
        "mm_peak_gflops_cpu": peak,
        "model": model,
        "model_ratio_wall": ratio_w,
        "model_ratio_cpu": ratio_c,
        "latents_identical": identical,
    }

    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            pipe.sample_latents(bt, bseeds, **kw)
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]
        print(
            "self CPU time by op (new loop): "
            + ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in top)
        )
        out["profile"] = {e.key: e.self_cpu_time_total / total for e in top}

    # 3. end to end, alternating
    if not args.skip_e2e:
        e2e: dict[str, list[tuple[float, dict[str, float]]]] = {"old": [], "new": []}
        legacy = LegacyPipeline(pipe)
        end_to_end(pipe, pipe, prompts[:2], args)  # warm-up (pyarrow, PyAV, x264)
        for _ in range(max(1, args.repeats // 2)):
            e2e["old"].append(end_to_end(pipe, legacy, prompts, args))
            e2e["new"].append(end_to_end(pipe, pipe, prompts, args))
        n = len(texts)
        print(
            f"\nsample_videos, {n} videos, batch {args.batch_size} "
            f"(medians of {len(e2e['new'])}; seconds per clip, ms)"
        )
        labels = [k for k in e2e["new"][0][1] if k != "CPU time"]
        print("| part | old ms/clip | new ms/clip |")
        print("|---|---:|---:|")
        out["e2e"] = {}
        for name in ("old", "new"):
            out["e2e"][name] = {
                "wall_s": median([w for w, _ in e2e[name]]),
                "split_s": {k: median([s[k] for _, s in e2e[name]]) for k in labels},
                "cpu_s": median([s["CPU time"] for _, s in e2e[name]]),
            }
        for k in labels:
            o, nw = out["e2e"]["old"]["split_s"][k], out["e2e"]["new"]["split_s"][k]
            print(f"| {k} | {o / n * 1e3:.1f} | {nw / n * 1e3:.1f} |")
        wo, wn = out["e2e"]["old"]["wall_s"], out["e2e"]["new"]["wall_s"]
        print(f"| **total** | {wo / n * 1e3:.1f} | {wn / n * 1e3:.1f} |")
        print(
            f"end to end: old {n / wo:.1f} clips/s, new {n / wn:.1f} clips/s, "
            f"new / old {wo / wn:.2f}x"
        )
        co, cn = out["e2e"]["old"]["cpu_s"], out["e2e"]["new"]["cpu_s"]
        print(
            f"end to end by CPU time: old {n / co:.1f}, new {n / cn:.1f} clips per CPU-second, "
            f"new / old {co / cn:.2f}x"
        )
        out["e2e_ratio"] = wo / wn
        out["e2e_ratio_cpu"] = co / cn

    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
