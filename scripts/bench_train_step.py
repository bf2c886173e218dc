"""One dpo+zo training step vs one plain flow-matching (sft) step on the same batch.

The sft step trains on the winners and losers of the same pairs as single samples (2B
samples), so the only difference is dpo+zo's extra no-grad reference forward and its loss.
Each variant runs in a fresh process (peak memory: CUDA max allocated, else peak RSS).

    python scripts/bench_train_step.py --model toy --pairs 16 --steps 30
    python scripts/bench_train_step.py --model tiny-wan --pairs 4 --steps 20
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
        from spatialalign.toy.pipeline import ToyPipeline

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


def worker(model: str, loss: str, pairs: int, steps: int, device: str) -> dict:
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
        loss=loss, max_steps=steps, train_batch_size=batch, lr_warmup_steps=1, checkpoint_every=0
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["toy", "tiny-wan"], default="toy")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.worker, args.pairs, args.steps, args.device)))
        return
    res = {}
    for loss in ("sft", "dpo+zo"):
        cmd = [sys.executable, __file__, "--worker", loss]
        cmd += ["--model", args.model, "--pairs", str(args.pairs), "--steps", str(args.steps)]
        cmd += ["--device", args.device]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        res[loss] = json.loads(out.strip().splitlines()[-1])
        print(
            f"{loss:7s} {res[loss]['step_s'] * 1000:8.1f} ms/step  {res[loss]['peak_mib']:8.0f} MiB"
        )
    ratio = res["dpo+zo"]["step_s"] / res["sft"]["step_s"]
    mem = res["dpo+zo"]["peak_mib"] / res["sft"]["peak_mib"]
    print(
        f"dpo+zo / sft: time {ratio:.2f}x, peak memory {mem:.2f}x "
        f"({args.model}, {args.pairs} pairs = {2 * args.pairs} samples, {args.device})"
    )


if __name__ == "__main__":
    main()
