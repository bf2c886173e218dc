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

``--compare`` (issue 21) times the trainer's whole optimizer step (``_optimizer_step``: data,
noise, the two forwards, loss, backward, clip, AdamW) at the toy recipe's settings, the
previous two forwards (diffusers' ``disable_adapters``, two independent forwards) against
the current ``reference_and_policy`` (the shared beginning, the LoRA layers switched
directly), alternating step by step in one process on two copies of the model, and checks
that the two adapters stay bit-identical:

    python scripts/bench_train_step.py --compare --model toy --pairs 16 --steps 40
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


def old_reference_and_policy(ctx, x_t, sigmas, context):
    """The step's two forwards before issue 21: diffusers' ``disable_adapters`` /
    ``enable_adapters`` and two independent forwards."""
    import torch
    from spatialalign.lora.adapter import adapter_disabled
    from spatialalign.trainlib.flow import predict_velocity

    with torch.no_grad(), adapter_disabled(ctx.base), ctx.autocast():
        ref = predict_velocity(ctx.base, x_t, sigmas, context)
    with ctx.autocast():
        pred = predict_velocity(ctx.model, x_t, sigmas, context)
    return ref, pred


def compare(model: str, pairs: int, steps: int, device: str) -> dict:
    """Median wall and CPU ms of the whole optimizer step, old forwards vs new, alternating
    (which goes first flips every step) on two copies of the model with the same LoRA
    initialisation, data and noise; whether the adapters are bit-identical at the end."""
    import copy
    import time

    import torch

    torch.set_num_threads(1)
    from spatialalign.training import trainer
    from spatialalign.training.config import TrainConfig
    from spatialalign.training.data import ItemSampler, Pair, TrainData

    tr, lat_shape, txt_shape = _transformer(model)
    g = torch.Generator().manual_seed(0)
    n_pairs, n_prompts = 4 * pairs, 8
    lat = {f"s{i}": torch.randn(*lat_shape, generator=g) for i in range(2 * n_pairs)}
    text = {f"p{j}": torch.randn(*txt_shape, generator=g) for j in range(n_prompts)}
    items = [Pair(f"p{i % n_prompts}", f"s{2 * i}", f"s{2 * i + 1}") for i in range(n_pairs)]
    data = TrainData(lat, text, items, [])
    cfg = TrainConfig.from_recipe(
        "toy", train_batch_size=pairs, max_steps=steps + 3, checkpoint_every=0
    )
    acc = trainer.make_accelerator(cfg)
    paths = {"old": old_reference_and_policy, "new": trainer.reference_and_policy}
    states = {}
    for name, t in (("old", copy.deepcopy(tr)), ("new", tr)):
        t.to(device)
        params = trainer.prepare_transformer(t, cfg)
        opt, sched = trainer.make_optimizer(params, cfg)
        states[name] = trainer.TrainState(t, t, cfg, acc, params, opt, sched)
    sampler = ItemSampler.of(data.items(True), cfg.pair_sampling, cfg.seed)
    wall: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    logs: dict[str, list[dict]] = {"old": [], "new": []}
    real = trainer.reference_and_policy
    try:
        for step in range(steps + 3):
            for name in ("old", "new") if step % 2 else ("new", "old"):
                trainer.reference_and_policy = paths[name]
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                logs[name].append(trainer._optimizer_step(states[name], data, sampler, step, 1))
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if step >= 3:
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
    finally:
        trainer.reference_and_policy = real
    lora = {k: trainer._lora_state(s.base) for k, s in states.items()}
    same = sorted(lora["old"]) == sorted(lora["new"]) and all(
        torch.equal(lora["old"][k], lora["new"][k]) for k in lora["old"]
    )
    return {
        "wall_ms": {k: statistics.median(v) * 1000 for k, v in wall.items()},
        "cpu_ms": {k: statistics.median(v) * 1000 for k, v in cpu.items()},
        "bit_identical": same and logs["old"] == logs["new"],
    }


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
    ap.add_argument(
        "--compare", action="store_true", help="the step's old vs new forwards (one process)"
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        gc = args.gradient_checkpointing == "on"
        res = worker(args.model, args.worker, args.pairs, args.steps, args.device, gc)
        print(json.dumps(res))
        return
    models = ["toy", "tiny-wan"] if args.model == "both" else [args.model]
    if args.compare:
        print("| model | old step (wall / CPU) | new step (wall / CPU) | old / new (wall / CPU) |"
              " adapter |")  # fmt: skip
        print("|---|---:|---:|---:|---|")
        for model in models:
            m = compare(model, args.pairs, args.steps, args.device)
            w, c = m["wall_ms"], m["cpu_ms"]
            same = "bit-identical" if m["bit_identical"] else "**differs**"
            print(
                f"| {model} | {w['old']:.1f} / {c['old']:.1f} ms | {w['new']:.1f} / "
                f"{c['new']:.1f} ms | **{w['old'] / w['new']:.3f}x** / "
                f"{c['old'] / c['new']:.3f}x | {same} |",
                flush=True,
            )
        print(
            f"\n{args.pairs} pairs a step (toy recipe otherwise), median of {args.steps} "
            f"alternating steps after 3 warm-up, one thread, {args.device}"
        )
        return
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
