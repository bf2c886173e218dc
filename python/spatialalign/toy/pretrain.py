"""Pretraining the toy T2V model from scratch on rendered toy-world clips.

Stages (each cached in the output directory, so a killed run resumes):

1. **data** — render ``clips_per_prompt`` clips for every generated TRAIN prompt. A
   ``mismatch_frac`` of the clips (exact count, chosen by seed) show a different final
   relation than their caption says (by default the opposite side, concentrated on half of
   the (animal, final relation) combinations), the imperfect pairing of web data that
   SpatialAlign has to correct.
2. **codec** — train the per-frame autoencoder on frames of those clips (MSE + L1), then
   measure per-channel latent statistics (``latents_mean``/``latents_std``).
3. **latents** — encode every clip once (normalised latents), as Wan training caches them.
4. **transformer** — flow matching exactly as Wan: ``x_t = (1-s) x0 + s eps``, target
   ``eps - x0``, timestep ``1000 s`` with ``s`` drawn uniformly then shifted like the
   sampling schedule; the text encoder trains jointly; the caption is dropped (replaced by
   the empty caption) with probability ``caption_dropout`` so classifier-free guidance
   works. An EMA of the weights is what ships. Checkpoints every few minutes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from spatialalign.errors import SpatialAlignError
from spatialalign.io import atomic_path, write_json
from spatialalign.prompts.model import DSRPrompt
from spatialalign.toy.codec import ToyCodec, ToyCodecConfig, frames_to_tensor
from spatialalign.toy.model import ToyTransformerConfig, build_transformer
from spatialalign.toy.pipeline import ToyPipeline, ToyVideoConfig
from spatialalign.toy.text import ToyTextConfig, ToyTextEncoder, build_vocab

log = logging.getLogger("spatialalign.toy.pretrain")


@dataclass
class PretrainConfig:
    """Everything that determines a pretraining run."""

    seed: int = 0
    minutes: float = 50.0
    """Wall-clock budget for the whole run (data + codec + transformer)."""
    codec_minutes: float = 3.0
    max_steps: int | None = None
    """Transformer steps; None = as many as fit in the time budget."""
    codec_steps: int | None = None
    """Codec steps; None = as many as fit in ``codec_minutes``."""
    codec_batch: int = 64
    """Frames per codec step."""
    mismatch_frac: float = 0.39
    """Fraction of clips whose final relation contradicts their caption. 0.39, a little above
    the third first planned: a well-trained model learns the caption noise calibrated, so at
    1/3 it still reached Correctness@0.7 0.64 (docs/TOY_MODEL.md, "Choosing the noise")."""
    mismatch_kind: str = "opposite"
    """What a mismatched clip shows at the end: ``third`` (the relation neither the caption's
    initial nor final one) or ``opposite`` (the side opposite the caption's final one)."""
    mismatch_keys_frac: float = 0.5
    """Fraction of (animal, final relation) combinations whose captions are unreliable; the
    mismatched clips all come from those (at about ``mismatch_frac / mismatch_keys_frac``),
    a systematic bias like web data's, which guidance cannot average away. 1.0: uniform."""
    n_train_prompts: int = 500
    n_test_prompts: int = 120
    prompt_seed: int = 0
    """Seed of :func:`spatialalign.prompts.generate_dataset` (TRAIN split is used)."""
    clips_per_prompt: int = 24
    batch_size: int = 32
    lr: float = 8e-4
    warmup_steps: int = 300
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    ema_decay: float = 0.998
    checkpoint_minutes: float = 5.0
    threads: int = 0
    """torch threads (0: leave torch's default)."""
    video: ToyVideoConfig = field(default_factory=ToyVideoConfig)
    codec: ToyCodecConfig = field(default_factory=ToyCodecConfig)
    transformer: ToyTransformerConfig = field(
        default_factory=lambda: ToyTransformerConfig(patch_size=(1, 4, 4))
    )
    text_dim: int = 64
    relation_repeats: int = 2
    abs_pos: bool = True
    """Learned absolute (frame, row, column) position embedding in the transformer."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transformer"] = self.transformer.to_dict()
        return d


# ---------------------------------------------------------------------------------- data
OPPOSITE = {"L": "R", "R": "L", "T": "B", "B": "T"}


def mismatched(prompt: DSRPrompt, rng: random.Random, kind: str = "third") -> DSRPrompt:
    """The same prompt with a different final relation: ``third`` picks one that is neither
    the initial nor the final one, ``opposite`` the side opposite the final one."""
    if kind == "opposite":
        return DSRPrompt(**{**prompt.to_dict(), "final": OPPOSITE[prompt.final]})
    if kind != "third":
        raise SpatialAlignError(f"unknown mismatch kind {kind!r} (third or opposite)")
    pool = ["L", "R", "T"] + (["B"] if "B" in (prompt.initial, prompt.final) else [])
    choices = [r for r in pool if r not in (prompt.initial, prompt.final)]
    return DSRPrompt(**{**prompt.to_dict(), "final": rng.choice(choices)})


def train_prompts(cfg: PretrainConfig) -> list[DSRPrompt]:
    from spatialalign.prompts.generate import generate_dataset

    ps = generate_dataset(cfg.n_train_prompts, cfg.n_test_prompts, seed=cfg.prompt_seed)
    return [p for p in ps if p.split == "train"]


def render_dataset(
    cfg: PretrainConfig, prompts: list[DSRPrompt]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """uint8 clips [N, F, H, W, 3], their captions, and a bool 'mismatched' flag per clip."""
    from spatialalign.toy.world import ToyWorldConfig, render_clip

    world = ToyWorldConfig(
        num_frames=cfg.video.num_frames, height=cfg.video.height, width=cfg.video.width
    )
    n = len(prompts) * cfg.clips_per_prompt
    rng = random.Random(cfg.seed)
    flags = np.zeros(n, dtype=bool)
    n_mis = round(cfg.mismatch_frac * n)
    if cfg.mismatch_keys_frac >= 1.0:
        flags[rng.sample(range(n), n_mis)] = True
    else:
        keys = sorted({(p.animal, p.final) for p in prompts})
        biased = set(rng.sample(keys, round(cfg.mismatch_keys_frac * len(keys))))
        eligible = [
            i
            for i, p in enumerate(q for q in prompts for _ in range(cfg.clips_per_prompt))
            if (p.animal, p.final) in biased
        ]
        if n_mis > len(eligible):
            raise SpatialAlignError(
                f"mismatch fraction {cfg.mismatch_frac} exceeds the clips of the "
                f"{len(biased)} biased (animal, final) combinations"
            )
        flags[rng.sample(eligible, n_mis)] = True
    clips = np.zeros((n, cfg.video.num_frames, cfg.video.height, cfg.video.width, 3), np.uint8)
    captions: list[str] = []
    i = 0
    for p in tqdm(prompts, desc="render", leave=False, mininterval=5):
        for _ in range(cfg.clips_per_prompt):
            shown = mismatched(p, rng, cfg.mismatch_kind) if flags[i] else p
            seed = cfg.seed * 1_000_003 + i
            clips[i] = render_clip(shown, seed, world).frames
            captions.append(p.text)
            i += 1
    return clips, captions, flags


# --------------------------------------------------------------------------------- codec
def train_codec(
    cfg: PretrainConfig, clips: np.ndarray, deadline: float | None = None
) -> tuple[ToyCodec, dict]:
    """Trains the autoencoder on random frames; sets its latent statistics."""
    torch.manual_seed(cfg.seed)
    codec = ToyCodec(ToyCodecConfig(**{**asdict(cfg.codec)}))
    frames = torch.from_numpy(clips.reshape(-1, *clips.shape[2:]))  # [N*F, H, W, 3]
    opt = torch.optim.Adam(codec.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.monotonic()
    budget = cfg.codec_minutes * 60.0
    step, losses = 0, []
    bar = tqdm(desc="codec", leave=False, mininterval=5)
    while True:
        if cfg.codec_steps is not None and step >= cfg.codec_steps:
            break
        if cfg.codec_steps is None and time.monotonic() - t0 >= budget:
            break
        frac = (
            min(1.0, (time.monotonic() - t0) / budget)
            if cfg.codec_steps is None
            else (step / max(1, cfg.codec_steps))
        )
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, frames.shape[0], (cfg.codec_batch,), generator=gen)
        x = frames_to_tensor(frames[idx][:, None]).squeeze(2)  # [B, 3, H, W]
        z = codec.encoder(x)
        z = z + 0.05 * z.detach().std() * torch.randn_like(z)  # decoder robust to off-manifold z
        y = codec.decoder(z)
        loss = F.mse_loss(y, x) + 0.5 * F.l1_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % 200 == 0:
            log.info("codec step %d loss %.5f", step, float(np.mean(losses[-200:])))
    bar.close()
    codec.eval()
    with torch.no_grad():
        sub = torch.from_numpy(clips[: min(len(clips), 2000)])
        z = torch.cat(
            [codec.encode(frames_to_tensor(c)).latent_dist.mode() for c in sub.split(256)]
        )
        mean = z.mean(dim=(0, 2, 3, 4))
        std = z.std(dim=(0, 2, 3, 4))
    codec.set_latent_stats(mean, std)
    return codec, {"codec_steps": step, "codec_loss": float(np.mean(losses[-200:] or [0.0]))}


@torch.no_grad()
def encode_clips(codec: ToyCodec, clips: np.ndarray, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [codec.encode_frames(clips[i : i + batch]) for i in range(0, len(clips), batch)]
    )


# ---------------------------------------------------------------------------- transformer
def sample_sigmas(n: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise levels, shifted like the sampling schedule: s' = k s / (1 + (k-1) s)."""
    u = torch.rand(n, generator=generator)
    return shift * u / (1.0 + (shift - 1.0) * u)


def flow_matching_loss(
    transformer: torch.nn.Module,
    x0: torch.Tensor,
    context: torch.Tensor,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Wan's objective: predict ``eps - x0`` at ``x_t = (1-s) x0 + s eps`` (mean squared)."""
    s = sigmas.view(-1, 1, 1, 1, 1)
    x_t = (1.0 - s) * x0 + s * noise
    pred = transformer(
        hidden_states=x_t,
        timestep=sigmas * 1000.0,
        encoder_hidden_states=context,
        return_dict=False,
    )[0]
    return F.mse_loss(pred.float(), (noise - x0).float())


class _Ema:
    """Exponential moving average of a set of modules' parameters."""

    def __init__(self, modules: dict[str, torch.nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = {
            f"{n}.{k}": v.detach().clone()
            for n, m in modules.items()
            for k, v in m.state_dict().items()
        }
        self.modules = modules

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for n, m in self.modules.items():
            for k, v in m.state_dict().items():
                s = self.shadow[f"{n}.{k}"]
                if v.is_floating_point():
                    s.mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    s.copy_(v)

    def module_state(self, name: str) -> dict[str, torch.Tensor]:
        return _strip_prefix(self.shadow, name + ".")


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{i}.{k}"] = torch.as_tensor(v).clone()
    return out


def _load_opt_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"meta": json.dumps(meta)},
        )


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _checkpoint_meta(path: Path) -> dict:
    """The JSON metadata (step, elapsed, history) of a transformer checkpoint."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"])


def _load_codec(path: Path) -> tuple[ToyCodec, dict]:
    """The trained codec cached by stage 2, and its training info."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        md = f.metadata()
    codec = ToyCodec(ToyCodecConfig.from_dict(json.loads(md["config"])))
    codec.load_state_dict(load_file(str(path)))
    return codec, json.loads(md["info"])


def _lr_factor(step: int, frac: float, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def text_config(cfg: PretrainConfig, prompts: list[DSRPrompt]) -> ToyTextConfig:
    """The text encoder's config: slot vocabulary of the prompts and the whole toy vocabulary."""
    from spatialalign.prompts.vocab import ANIMALS, OBJECTS, SCENES, VERBS

    extra = [f"scene:{s.lower()}" for s in SCENES] + [f"animal:{a}" for a in ANIMALS]
    extra += [f"object:{o}" for o in OBJECTS] + [f"verb:{v}" for v in VERBS]
    return ToyTextConfig(
        vocab=build_vocab(prompts, cfg.relation_repeats, extra_tokens=extra),
        text_dim=cfg.text_dim,
        relation_repeats=cfg.relation_repeats,
    )


def transformer_config(cfg: PretrainConfig) -> ToyTransformerConfig:
    """The transformer config with channels, text width and position grid filled in."""
    pt, ph, pw = cfg.transformer.patch_size
    r = cfg.codec.downsample
    grid = (
        cfg.video.num_frames // pt,
        cfg.video.height // r // ph,
        cfg.video.width // r // pw,
    )
    return ToyTransformerConfig(
        **{
            **asdict(cfg.transformer),
            "text_dim": cfg.text_dim,
            "pos_grid": grid if cfg.abs_pos else None,
            "in_channels": cfg.codec.latent_channels,
            "out_channels": cfg.codec.latent_channels,
        }
    )


def config_from_dict(d: dict) -> PretrainConfig:
    """Inverse of :meth:`PretrainConfig.to_dict` (as saved in ``pretrain_config.json``)."""
    d = dict(d)
    d["video"] = ToyVideoConfig(**d["video"])
    d["codec"] = ToyCodecConfig.from_dict(d["codec"])
    d["transformer"] = ToyTransformerConfig.from_dict(d["transformer"])
    return PretrainConfig(
        **{k: v for k, v in d.items() if k in PretrainConfig.__dataclass_fields__}
    )


def pretrain(out_dir: str | Path, cfg: PretrainConfig) -> ToyPipeline:
    """Runs (or resumes) every stage and writes the model to ``out_dir/model``."""
    from safetensors.torch import load_file, save_file

    if not 0.0 <= cfg.mismatch_frac < 1.0:
        raise SpatialAlignError(f"mismatch fraction must be in [0, 1), got {cfg.mismatch_frac}")
    if not 0.0 <= cfg.caption_dropout < 1.0:
        raise SpatialAlignError(f"caption dropout must be in [0, 1), got {cfg.caption_dropout}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg_path = out / "pretrain_config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        keep = ("minutes", "max_steps", "checkpoint_minutes", "threads")
        if {k: v for k, v in old.items() if k not in keep} != {
            k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k not in keep
        }:
            raise SpatialAlignError(
                f"{out} holds a run with a different configuration; use a new directory"
            )
    write_json(cfg.to_dict(), cfg_path)
    t_start = time.monotonic()
    ckpt_path = out / "checkpoint.safetensors"
    elapsed_before = 0.0
    if ckpt_path.is_file():
        elapsed_before = float(_checkpoint_meta(ckpt_path)["elapsed"])

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - t_start

    prompts = train_prompts(cfg)
    if not prompts:
        raise SpatialAlignError("no training prompts")

    # 1-3: data, codec, latents (cached)
    lat_path = out / "latents.safetensors"
    codec_path = out / "codec.safetensors"
    if lat_path.is_file() and codec_path.is_file():
        codec, info = _load_codec(codec_path)
        lat = load_file(str(lat_path))
        latents = lat["latents"]
        captions = json.loads((out / "captions.json").read_text())
        log.info("resumed data: %d clips", len(captions))
    else:
        t0 = time.monotonic()
        clips, captions, flags = render_dataset(cfg, prompts)
        log.info(
            "rendered %d clips (%d mismatched) in %.1fs",
            len(clips),
            flags.sum(),
            time.monotonic() - t0,
        )
        codec, info = train_codec(cfg, clips)
        info["mismatched_clips"] = int(flags.sum())
        info["clips"] = len(clips)
        log.info("codec: %s", info)
        latents = encode_clips(codec, clips)
        with atomic_path(codec_path) as tmp:
            save_file(
                codec.state_dict(),
                str(tmp),
                metadata={"config": json.dumps(codec.config.to_dict()), "info": json.dumps(info)},
            )
        write_json(captions, out / "captions.json")
        with atomic_path(lat_path) as tmp:
            save_file(
                {"latents": latents.contiguous(), "mismatched": torch.from_numpy(flags)}, str(tmp)
            )
    codec.eval()

    # 4: transformer + text encoder
    torch.manual_seed(cfg.seed)
    text_cfg = text_config(cfg, prompts)
    text_encoder = ToyTextEncoder(text_cfg)
    tcfg = transformer_config(cfg)
    transformer = build_transformer(tcfg)
    modules = {"transformer": transformer, "text_encoder": text_encoder}
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    ema = _Ema(modules, cfg.ema_decay)
    tok = text_encoder.tokenizer(captions)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step = 0
    hist: list[dict] = []
    if ckpt_path.is_file():
        state = load_file(str(ckpt_path))
        meta = _checkpoint_meta(ckpt_path)
        for n, m in modules.items():
            m.load_state_dict(_strip_prefix(state, n + "."))
        ema.shadow = _strip_prefix(state, "ema.")
        _load_opt_tensors(opt, _strip_prefix(state, "opt."))
        step = int(meta["step"])
        hist = meta.get("history", [])
        gen.manual_seed(cfg.seed + 1 + step)
        log.info("resumed transformer at step %d (%.1f min elapsed)", step, elapsed() / 60)

    budget = cfg.minutes * 60.0
    t_train0 = elapsed()
    last_ckpt = time.monotonic()
    n = latents.shape[0]
    running = []
    transformer.train()
    text_encoder.train()
    bar = tqdm(desc="transformer", leave=False, mininterval=10, initial=step)

    def checkpoint() -> None:
        tensors = {f"{nm}.{k}": v for nm, m in modules.items() for k, v in m.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in ema.shadow.items()})
        tensors.update({f"opt.{k}": v for k, v in _opt_tensors(opt).items()})
        _save_checkpoint(ckpt_path, tensors, {"step": step, "elapsed": elapsed(), "history": hist})

    while True:
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        if elapsed() >= budget:
            break
        frac_time = (elapsed() - t_train0) / max(1.0, budget - t_train0)
        frac = step / cfg.max_steps if cfg.max_steps else frac_time
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, frac, cfg.warmup_steps)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        x0 = latents[idx]
        keep = (torch.rand(cfg.batch_size, generator=gen) >= cfg.caption_dropout).float()
        context = text_encoder(
            tok["input_ids"][idx], tok["role_ids"][idx], tok["attention_mask"][idx]
        ) * keep.view(-1, 1, 1)
        sig = sample_sigmas(cfg.batch_size, cfg.video.flow_shift, gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = flow_matching_loss(transformer, x0, context, sig, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        step += 1
        running.append(loss.item())
        bar.update(1)
        if step % 250 == 0:
            rec = {
                "step": step,
                "loss": float(np.mean(running)),
                "minutes": elapsed() / 60,
                "lr": opt.param_groups[0]["lr"],
            }
            hist.append(rec)
            running = []
            log.info(
                "step %d loss %.4f lr %.2e %.1f min", step, rec["loss"], rec["lr"], rec["minutes"]
            )
        if time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60.0:
            checkpoint()
            last_ckpt = time.monotonic()
    bar.close()
    checkpoint()

    # ship the EMA weights
    transformer.load_state_dict(ema.module_state("transformer"))
    text_encoder.load_state_dict(ema.module_state("text_encoder"))
    meta = {
        "pretrain": cfg.to_dict(),
        "steps": step,
        "train_minutes": round(elapsed() / 60, 2),
        "final_loss": hist[-1]["loss"] if hist else None,
        **info,
    }
    pipe = ToyPipeline(codec, text_encoder, transformer, cfg.video, tcfg, metadata=meta)
    pipe.save_pretrained(out / "model")
    write_json(
        {"history": hist, **{k: v for k, v in meta.items() if k != "pretrain"}},
        out / "pretrain_log.json",
    )
    log.info("done: %d steps in %.1f min", step, elapsed() / 60)
    return pipe
