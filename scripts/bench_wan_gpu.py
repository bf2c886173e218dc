"""GPU checks of issue 12 on the full-size Wan2.1-T2V-1.3B transformer with random weights.

Training goes through the project's own loop (``spatialalign.training.trainer.train``:
LoRA on the DESIGN.md targets in float32 over bf16 frozen weights, bf16 autocast, winner
and loser in one batched forward, the reference with the adapter disabled under no_grad,
the losses of ``training.losses``, AdamW, gradient clipping):

  (a) one dpo+zo optimizer step for one pair at 81x480x832 (latent 16x21x60x104), time and
      peak memory, with and without gradient checkpointing
  (b) sampling seconds per 50-step video (WanPipeline: CFG, UniPC, float32 VAE decode)
  (c) the dpo+zo / sft step-cost ratio (sft on the same two samples, no reference)
  (d) whether one dpo+zo step fits in 24 GB

Prints a Markdown table and writes JSON (``--json``). On a CPU, ``--estimate`` measures the
step's peak memory above the weights at full width and a few small token counts / layer
counts (fresh processes, resident high-water mark) and extrapolates it linearly to 30 layers
and 2 x 32,760 tokens: an estimate, not a measurement.

    python scripts/bench_wan_gpu.py --json bench_wan_gpu.json            # on a GPU
    python scripts/bench_wan_gpu.py --device cpu --estimate --json est.json
    python scripts/bench_wan_gpu.py --device cpu --layers 2 --scale 0.25 --frames 9 \\
        --sample-steps 2 --steps 1                                      # smoke test
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

GIB = 2**30
CARD_GIB = 24.0
CUDA_CONTEXT_GIB = 0.5
"""Not counted by the allocator: the CUDA context and kernels, about 0.3-0.6 GiB."""

# Wan-AI/Wan2.1-T2V-1.3B config.json (dim 1536, ffn_dim 8960, 30 layers, 12 heads, in/out 16,
# text 4096, freq 256, eps 1e-6, cross-attn norm) in WanTransformer3DModel's argument names
WAN21_T2V_1_3B: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,  # 12 x 128 = dim 1536
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}
TEXT_LEN = 512
"""Wan's text tokens (the cached embeddings are 512 x 4096)."""


def transformer_config(layers: int) -> dict[str, Any]:
    """The published config with ``layers`` blocks; its keys checked against diffusers."""
    from diffusers import WanTransformer3DModel

    names = set(inspect.signature(WanTransformer3DModel.__init__).parameters)
    unknown = set(WAN21_T2V_1_3B) - names
    if unknown:
        raise SystemExit(f"WanTransformer3DModel has no argument(s) {sorted(unknown)}")
    return {**WAN21_T2V_1_3B, "num_layers": layers}


def build_transformer(layers: int, device: str) -> Any:
    """Random full-width transformer, bf16, built on ``device`` (no float32 copy)."""
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            tr = WanTransformer3DModel(**transformer_config(layers))
    finally:
        torch.set_default_dtype(old)
    return tr


def video_size(args: argparse.Namespace) -> tuple[int, int, int]:
    """frames, height, width after ``--scale`` (sides rounded to multiples of 16)."""
    h = max(16, round(args.height * args.scale / 16) * 16)
    w = max(16, round(args.width * args.scale / 16) * 16)
    return args.frames, h, w


# ------------------------------------------------------------------------------ training
def train_bench(
    layers: int, device: str, latent: tuple, variants: list[tuple[str, bool]], steps: int
) -> list[dict]:
    """``steps`` optimizer steps (after one warm-up) of each (loss, checkpointing) through
    the project's ``train()`` on a fresh random transformer: median step time, peak memory."""
    import gc
    import tempfile

    import torch
    from spatialalign.models.wan.memory import PeakMemory
    from spatialalign.training.config import TrainConfig
    from spatialalign.training.data import Pair, Sample, TrainData
    from spatialalign.training.trainer import make_accelerator, train

    g = torch.Generator().manual_seed(0)
    data = TrainData(
        {"w": torch.randn(*latent, generator=g), "l": torch.randn(*latent, generator=g)},
        {"p": torch.randn(TEXT_LEN, WAN21_T2V_1_3B["text_dim"], generator=g)},
        [Pair("p", "w", "l")],
        [Sample("p", "w", 1.0), Sample("p", "l", 0.0)],  # sft: the same two samples
    )
    acc = None
    out = []
    for loss, ckpt in variants:
        cfg = TrainConfig(
            loss=loss,
            max_steps=steps + 1,
            train_batch_size=1 if loss.startswith("dpo") else 2,
            lr_warmup_steps=1,
            checkpoint_every=0,
            gradient_checkpointing=ckpt,
            mixed_precision="bf16",  # also on the CPU: the GPU run's precision
        )
        acc = acc or make_accelerator(cfg)
        tr = build_transformer(layers, device)
        times: list[float] = []
        row: dict[str, Any] = {"loss": loss, "checkpointing": ckpt}
        mem = PeakMemory(device).start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                train(tr, data, cfg, tmp, accelerator=acc, progress=False,
                      on_step=lambda s, r, t=times: t.append(r["step_time"]))  # fmt: skip
            row["step_s"] = statistics.median(times[1:])
        except torch.OutOfMemoryError:
            row["oom"] = True
        mem.stop()
        row.update(peak_gib=mem.peak / GIB, delta_gib=mem.delta / GIB)
        row["reserved_gib"] = mem.reserved / GIB
        out.append(row)
        del tr
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        print(json.dumps(row), file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------ sampling
def sample_bench(tr: Any, args: argparse.Namespace, size: tuple[int, int, int]) -> dict:
    """One video through WanPipeline (random text embeddings, no text encoder): denoising
    seconds per step (CFG: two forwards) and VAE decode seconds; 50-step total."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline
    from spatialalign.models.wan.memory import PeakMemory
    from spatialalign.models.wan.runtime import compile_transformer, set_attention, set_vae_switches

    with torch.device(args.device):
        vae = AutoencoderKLWan()  # diffusers' default config is Wan2.1's VAE
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae.float(), transformer=tr,
                       scheduler=scheduler)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    set_vae_switches(pipe, tiling=args.vae_tiling)
    set_attention(tr, args.attention)
    if args.compile:
        compile_transformer(tr)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, TEXT_LEN, WAN21_T2V_1_3B["text_dim"], generator=g).to(args.device)
    frames, h, w = size
    stamps: list[float] = []
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def mark(p, i, t, kw):
        sync()
        stamps.append(time.perf_counter())
        return kw

    def run(steps: int, output_type: str) -> float:
        stamps.clear()
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt_embeds=emb[:1].bfloat16(), negative_prompt_embeds=emb[1:].bfloat16(),
                 num_frames=frames, height=h, width=w, num_inference_steps=steps,
                 guidance_scale=5.0, output_type=output_type, generator=torch.Generator().manual_seed(0),
                 callback_on_step_end=mark)  # fmt: skip
        sync()
        return t0

    run(2, "latent")  # warm-up (and compile)
    mem = PeakMemory(args.device).start()
    t0 = run(args.sample_steps, "np")
    end = time.perf_counter()
    mem.stop()
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    decode = end - stamps[-1]
    return {
        "steps_timed": args.sample_steps,
        "step_s": per_step,
        "first_step_s": stamps[0] - t0,
        "decode_s": decode,
        "video_50_steps_s": per_step * 50 + decode,
        "peak_gib": mem.peak / GIB,
        "reserved_gib": mem.reserved / GIB,
        "attention": args.attention or "default (sdpa)",
        "compile": args.compile,
        "vae_tiling": args.vae_tiling,
    }


# ------------------------------------------------------------------------------ estimate
ESTIMATE_SIZES = ((9, 128, 128), (9, 192, 192), (9, 256, 256))
ESTIMATE_LAYERS = (2, 4)
"""Not 1: a one-block model's backward peak is not typical of a deeper one (measured)."""


def estimate(args: argparse.Namespace) -> dict:
    """CPU: the step's peak above the weights at full width for each (layers, size, ckpt),
    each in a fresh process; fitted as ``a*T*L + b*T + c*L + d`` (T tokens per pair) and
    extrapolated to 30 layers at 81x480x832."""
    import numpy as np
    from spatialalign.models.wan.memory import latent_shape, token_count

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    points = []
    for ckpt in (True, False):
        for layers in ESTIMATE_LAYERS:
            for frames, h, w in ESTIMATE_SIZES:
                cmd = [sys.executable, __file__, "--worker", "--device", "cpu", "--steps", "1",
                       "--layers", str(layers), "--frames", str(frames), "--height", str(h),
                       "--width", str(w), "--scale", "1"]  # fmt: skip
                cmd += [] if ckpt else ["--no-checkpointing"]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])[0]
                row.update(layers=layers, tokens=2 * token_count(latent_shape(frames, h, w)))
                print(json.dumps(row), file=sys.stderr, flush=True)
                points.append(row)
    full_tokens = 2 * token_count(latent_shape(81, 480, 832))
    out: dict[str, Any] = {"points": points, "full_tokens_per_pair": full_tokens}
    weights = _full_weight_bytes()
    out["weights_gib"] = weights / GIB
    for ckpt in (True, False):
        rows = [p for p in points if p["checkpointing"] is ckpt]
        a = np.array([[p["tokens"] * p["layers"], p["tokens"], p["layers"], 1.0] for p in rows])
        y = np.array([p["delta_gib"] for p in rows])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        fit = a @ coef
        full = float(np.array([full_tokens * 30, full_tokens, 30, 1.0]) @ coef)
        key = "checkpointing" if ckpt else "no_checkpointing"
        out[key] = {
            "coef_gib": coef.tolist(),
            "max_fit_error_gib": float(np.abs(fit - y).max()),
            "per_token_per_layer_kib": coef[0] * GIB / 1024,
            "activation_peak_gib": full,
            "step_peak_gib": full + out["weights_gib"],
        }
    return out


def _full_weight_bytes() -> int:
    """bf16 bytes of the 30-layer transformer (built on the meta device)."""
    import torch
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        tr = WanTransformer3DModel(**transformer_config(30))
    return sum(p.numel() for p in tr.parameters()) * 2


# ------------------------------------------------------------------------------ report
def table(result: dict) -> str:
    """The Markdown table of a GPU (or CPU smoke) run; peak memory is CUDA's allocated
    high-water mark, or the process's resident one on a CPU."""
    lines = ["| what | checkpointing | time | peak memory | CUDA reserved |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in result.get("train", []):
        t = "OOM" if r.get("oom") else f"{r['step_s']:.2f} s/step"
        lines.append(f"| {r['loss']} step, 1 pair | {'on' if r['checkpointing'] else 'off'} | {t} "
                     f"| {r['peak_gib']:.1f} GiB | {r['reserved_gib']:.1f} GiB |")  # fmt: skip
    s = result.get("sampling")
    if s:
        lines.append(f"| sampling, 50 steps + decode | - | {s['video_50_steps_s']:.1f} s/video "
                     f"| {s['peak_gib']:.1f} GiB | {s['reserved_gib']:.1f} GiB |")  # fmt: skip
    for k, v in result.get("derived", {}).items():
        lines.append(f"| {k} | | {v} | | |")
    return "\n".join(lines)


def derived(train: list[dict], device: str) -> dict[str, str]:
    """(c) the dpo+zo / sft step ratio per checkpointing mode and (d) the 24 GB verdict."""
    out = {}
    by = {(r["loss"], r["checkpointing"]): r for r in train}
    for ckpt in (True, False):
        d, s = by.get(("dpo+zo", ckpt)), by.get(("sft", ckpt))
        if d and s and "step_s" in d and "step_s" in s:
            out[f"dpo+zo / sft time, ckpt {'on' if ckpt else 'off'}"] = (
                f"{d['step_s'] / s['step_s']:.2f}x"
            )
    if not device.startswith("cuda"):
        out["dpo+zo step fits 24 GB"] = "not measured on a CPU (see --estimate)"
        return out
    fits = [r for r in train if r["loss"] == "dpo+zo" and not r.get("oom")
            and r["reserved_gib"] + CUDA_CONTEXT_GIB <= CARD_GIB]  # fmt: skip
    out["dpo+zo step fits 24 GB"] = (
        "yes (" + ", ".join(f"ckpt {'on' if r['checkpointing'] else 'off'}" for r in fits) + ")"
        if fits else "no"
    )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--scale", type=float, default=1.0, help="scale height and width")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (+1 warm-up)")
    ap.add_argument("--sample-steps", type=int, default=10,
                    help="denoising steps timed; the 50-step figure scales the per-step time")  # fmt: skip
    ap.add_argument("--no-sampling", action="store_true")
    ap.add_argument("--no-training", action="store_true")
    ap.add_argument("--no-checkpointing", action="store_true", help="only the ckpt-off variants")
    ap.add_argument("--attention", default=None, help="sampling: a --attention backend name")
    ap.add_argument("--compile", action="store_true", help="sampling: torch.compile the blocks")
    ap.add_argument("--vae-tiling", action="store_true", help="sampling: tiled VAE decode")
    ap.add_argument("--estimate", action="store_true", help="CPU: extrapolate the full peak")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from spatialalign.models.wan.memory import latent_shape

    size = video_size(args)
    latent = latent_shape(*size)
    if args.worker:  # one estimate point: dpo+zo, one checkpointing mode
        ckpt = not args.no_checkpointing
        rows = train_bench(args.layers, args.device, latent, [("dpo+zo", ckpt)], args.steps)
        print(json.dumps(rows))
        return
    if args.estimate:
        result = {"estimate": estimate(args), "device": "cpu"}
    else:
        result = _measure(args, size, latent)
        print(table(result))
    result["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    result["torch"] = torch.__version__
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.estimate:
        print(json.dumps(result["estimate"], indent=2))


def _measure(args: argparse.Namespace, size: tuple, latent: tuple) -> dict:
    import torch
    from spatialalign.models.wan.memory import token_count

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "video": list(size),
        "latent": list(latent),
        "tokens_per_sample": token_count(latent),
        "layers": args.layers,
    }
    if not args.no_sampling:
        result["sampling"] = sample_bench(build_transformer(args.layers, args.device), args, size)
    if not args.no_training:  # training: diffusers' default attention (SDPA), no compile
        variants = [("dpo+zo", True), ("sft", True), ("dpo+zo", False), ("sft", False)]
        if args.no_checkpointing:
            variants = variants[2:]
        result["train"] = train_bench(args.layers, args.device, latent, variants, args.steps)
        result["derived"] = derived(result["train"], args.device)
    return result


if __name__ == "__main__":
    main()
