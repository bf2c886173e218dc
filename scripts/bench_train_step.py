"""One dpo+zo training step vs one plain flow-matching (sft) step on the same batch.

The sft step trains on the winners and losers of the same pairs as single samples (2B
samples), so the only difference is dpo+zo's extra no-grad reference forward and its loss.
Each variant runs in a fresh process (peak memory: CUDA max allocated, else peak RSS); the
two processes of a comparison run side by side (one torch thread each), so both see the
same machine load, and each comparison is repeated (medians of step times, then ratios).

    python scripts/bench_train_step.py                       # toy and tiny-wan, GC off/on
    python scripts/bench_train_step.py --model toy --pairs 16 --steps 30 --repeats 3
    python scripts/bench_train_step.py --model tiny-wan --gradient-checkpointing on
    python scripts/bench_train_step.py --split        # where a step's time goes (one process)

``--split`` times, alternating in one process, the three passes the two steps are made of
on the same 2B samples: the reference forward (adapter disabled, ``no_grad``), the policy
forward and its backward. ``sft`` = forward + backward, ``dpo+zo`` adds the reference, so
``1 + ref / (forward + backward)`` is the ratio with no overhead at all.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile


def _transformer(model: str):
    import torch

    if model == "toy":
        from spatialalign.models.toy.pipeline import ToyPipeline

        pipe = ToyPipeline.from_pretrained()
        return pipe.transformer, pipe.latent_shape, (16, pipe.transformer.config.text_dim)
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    tr = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=16,
        out_channels=16,
        text_dim=256,
        freq_dim=64,
        ffn_dim=512,
        num_layers=4,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64,
    )
    return tr, (16, 5, 8, 8), (64, 256)


def worker(model: str, loss: str, pairs: int, steps: int, device: str, gc: bool) -> dict:
    """Trains ``steps`` steps of ``loss`` in this process; median step time, peak memory."""
    import torch

    torch.set_num_threads(1)
    from spatialalign.training.config import TrainConfig
    from spatialalign.training.data import Pair, Sample, TrainData
    from spatialalign.training.trainer import train

    tr, lat_shape, txt_shape = _transformer(model)
    tr.to(device)
    g = torch.Generator().manual_seed(0)
    lat = {f"s{i}": torch.randn(*lat_shape, generator=g) for i in range(2 * pairs)}
    text = {"p": torch.randn(*txt_shape, generator=g)}
    data = TrainData(
        lat,
        text,
        [Pair("p", f"s{2 * i}", f"s{2 * i + 1}") for i in range(pairs)],
        [Sample("p", f"s{i}", 0.5) for i in range(2 * pairs)],
    )
    batch = pairs if loss.startswith("dpo") else 2 * pairs
    cfg = TrainConfig(
        loss=loss,
        max_steps=steps,
        train_batch_size=batch,
        lr_warmup_steps=1,
        checkpoint_every=0,
        gradient_checkpointing=gc,
    )
    times: list[float] = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        train(tr, data, cfg, out, progress=False, on_step=lambda s, r: times.append(r["step_time"]))
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"loss": loss, "step_s": statistics.median(times[3:]), "peak_mib": peak}


def split(model: str, pairs: int, steps: int, device: str, gc: bool) -> dict:
    """Median ms of the reference forward, the policy forward and its backward (2·pairs
    samples, the trainer's LoRA and precision), interleaved so they share the load."""
    import time

    import torch

    torch.set_num_threads(1)
    from spatialalign.lora.adapter import adapter_disabled
    from spatialalign.training.config import TrainConfig
    from spatialalign.training.trainer import prepare_transformer
    from spatialalign.trainlib.flow import predict_velocity

    tr, lat_shape, txt_shape = _transformer(model)
    tr.to(device)
    prepare_transformer(tr, TrainConfig(gradient_checkpointing=gc))
    g = torch.Generator().manual_seed(0)
    n = 2 * pairs
    x = torch.randn(n, *lat_shape, generator=g).to(device)
    text = torch.randn(n, *txt_shape, generator=g).to(device)
    sig = torch.rand(n, generator=g).to(device)

    def clock() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter()

    times: dict[str, list[float]] = {"ref": [], "forward": [], "backward": []}
    for i in range(steps + 3):
        t0 = clock()
        with torch.no_grad(), adapter_disabled(tr):
            predict_velocity(tr, x, sig, text)
        t1 = clock()
        pred = predict_velocity(tr, x, sig, text)
        t2 = clock()
        pred.float().pow(2).mean().backward()
        t3 = clock()
        if i >= 3:
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[k].append(dt)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def _side_by_side(model: str, pairs: int, steps: int, device: str, gc: bool) -> dict:
    """One sft and one dpo+zo worker started together; their results by loss."""
    procs = {}
    for loss in ("sft", "dpo+zo"):
        cmd = [sys.executable, __file__, "--worker", loss, "--model", model]
        cmd += ["--pairs", str(pairs), "--steps", str(steps), "--device", device]
        cmd += ["--gradient-checkpointing", "on" if gc else "off"]
        procs[loss] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = {}
    for loss, p in procs.items():
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"{loss} worker failed ({p.returncode})")
        out[loss] = json.loads(stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["toy", "tiny-wan", "both"], default="both")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gradient-checkpointing", choices=["off", "on", "both"], default="both")
    ap.add_argument("--split", action="store_true", help="where a step's time goes")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        gc = args.gradient_checkpointing == "on"
        res = worker(args.model, args.worker, args.pairs, args.steps, args.device, gc)
        print(json.dumps(res))
        return
    models = ["toy", "tiny-wan"] if args.model == "both" else [args.model]
    gcs = {"off": [False], "on": [True], "both": [False, True]}[args.gradient_checkpointing]
    if args.split:
        print(
            "| model | grad. checkpointing | reference forward (no grad) | policy forward | "
            "backward | 1 + ref / (forward + backward) |"
        )
        print("|---|---|---:|---:|---:|---:|")
        for model in models:
            for gc in gcs:
                m = split(model, args.pairs, args.steps, args.device, gc)
                floor = 1 + m["ref"] / (m["forward"] + m["backward"])
                print(
                    f"| {model} | {'on' if gc else 'off'} | {m['ref']:.0f} ms | "
                    f"{m['forward']:.0f} ms | {m['backward']:.0f} ms | **{floor:.2f}x** |",
                    flush=True,
                )
        print(f"\n{2 * args.pairs} samples, median of {args.steps} after 3 warm-up, {args.device}")
        return
    print("| model | grad. checkpointing | sft step | dpo+zo step | time ratio | memory ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for model in models:
        for gc in gcs:
            runs = [
                _side_by_side(model, args.pairs, args.steps, args.device, gc)
                for _ in range(args.repeats)
            ]
            med = {k: statistics.median(r[k]["step_s"] for r in runs) for k in ("sft", "dpo+zo")}
            mem = {k: max(r[k]["peak_mib"] for r in runs) for k in ("sft", "dpo+zo")}
            ratios = sorted(r["dpo+zo"]["step_s"] / r["sft"]["step_s"] for r in runs)
            print(
                f"| {model} | {'on' if gc else 'off'} | {med['sft'] * 1000:.0f} ms | "
                f"{med['dpo+zo'] * 1000:.0f} ms | **{med['dpo+zo'] / med['sft']:.2f}x** "
                f"(runs {', '.join(f'{x:.2f}' for x in ratios)}) | "
                f"{mem['dpo+zo'] / mem['sft']:.2f}x ({mem['sft']:.0f} / {mem['dpo+zo']:.0f} MiB) |",
                flush=True,
            )
    print(
        f"\n{args.pairs} pairs = {2 * args.pairs} samples a step, {args.steps} steps per run "
        f"(median after 3 warm-up steps), {args.repeats} side-by-side runs, {args.device}"
    )


if __name__ == "__main__":
    main()
