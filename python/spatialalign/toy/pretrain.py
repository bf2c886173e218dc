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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, write_json
from spatialalign.models.toy.codec import ToyCodec, ToyCodecConfig, frames_to_tensor
from spatialalign.models.toy.model import ToyTransformerConfig, build_transformer
from spatialalign.models.toy.pipeline import ToyPipeline, ToyVideoConfig
from spatialalign.models.toy.text import ToyTextConfig, ToyTextEncoder, build_vocab
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT, world_split
from spatialalign.trainlib.checkpoint import (
    OPT_PREFIX,
    checkpoint_meta,
    load_checkpoint,
    load_optimizer_state,
    save_training_state,
    strip_prefix,
)
from spatialalign.trainlib.flow import flow_matching_loss, sample_sigmas

log = logging.getLogger("spatialalign.toy.pretrain")


@dataclass
class PretrainConfig:
    """Everything that determines a pretraining run (the ``toy`` world's defaults; the hard
    world's are :func:`pretrain_config`'s)."""

    world: str = "toy"
    """The rendered world (``toy`` or ``hard``, :data:`spatialalign.toy.world.WORLDS`) and
    its prompt split (:data:`TOY_SPLIT` or :data:`HARD_SPLIT`)."""
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
    n_train_prompts: int = TOY_SPLIT.n_train
    n_test_prompts: int = TOY_SPLIT.n_test
    prompt_seed: int = TOY_SPLIT.seed
    """Seed of :func:`spatialalign.prompts.generate_dataset` (TRAIN split is used)."""
    clips_per_prompt: int = 24
    batch_size: int = 32
    lr: float = 8e-4
    warmup_steps: int = 300
    weight_decay: float = 0.01
    caption_dropout: float = 0.1
    ema_decay: float = 0.998
    """Decay of the shipped EMA weights (diffusers' ``EMAModel``, decay warmed up as
    ``min(ema_decay, k / (9 + k))`` at update ``k``)."""
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


def pretrain_config(
    world: str = "toy",
    patch_size: tuple[int, int, int] | None = None,
    num_layers: int | None = None,
    **overrides,
) -> PretrainConfig:
    """A world's default pretraining run, with ``overrides`` of its fields and the
    transformer's ``patch_size`` / ``num_layers`` (None values ignored).

    ``hard``: 12 frames of 16x16 (:class:`~spatialalign.toy.world.HardWorldConfig`), the
    toy model's transformer with a 2x2x2 patch (4x4 tokens per pair of frames, 96 per clip:
    the toy's 2x2 tokens per frame drew a moving animal in pieces where it crossed a token
    boundary), the 600 TRAIN prompts of :data:`HARD_SPLIT`, and a stronger caption bias:
    70 % of the (animal, final relation) combinations unreliable, 60 % of all clips
    mismatched (86 % within those combinations), so the base model follows the final
    relation of most combinations rarely (docs/TOY_MODEL.md, "The hard world"); 58 minutes
    in all (the shipped ``toy-hard`` model's run, on both cores: ``--threads 2``).
    """
    world_split(world)  # one clear error for an unknown world
    base = PretrainConfig()
    if world == "hard":
        base = PretrainConfig(
            world="hard",
            n_train_prompts=HARD_SPLIT.n_train,
            n_test_prompts=HARD_SPLIT.n_test,
            prompt_seed=HARD_SPLIT.seed,
            mismatch_frac=0.6,
            mismatch_keys_frac=0.7,
            video=ToyVideoConfig(num_frames=12, height=16, width=16),
            transformer=ToyTransformerConfig(patch_size=(2, 2, 2)),
            minutes=58.0,
        )
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    arch = {"patch_size": tuple(patch_size) if patch_size else None, "num_layers": num_layers}
    arch = {k: v for k, v in arch.items() if v is not None}
    return replace(cfg, transformer=replace(cfg.transformer, **arch)) if arch else cfg


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
    split = replace(
        world_split(cfg.world),
        n_train=cfg.n_train_prompts,
        n_test=cfg.n_test_prompts,
        seed=cfg.prompt_seed,
    )
    return split.prompts("train")


def render_dataset(
    cfg: PretrainConfig, prompts: list[DSRPrompt]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """uint8 clips [N, F, H, W, 3], their captions, and a bool 'mismatched' flag per clip."""
    from spatialalign.toy.world import WORLDS, render_clip

    world = replace(
        WORLDS[cfg.world],
        num_frames=cfg.video.num_frames,
        height=cfg.video.height,
        width=cfg.video.width,
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
    """Linear warm-up from ``1/warmup``, then cosine to a 5 % floor over ``frac`` of the run.

    Not diffusers' ``get_cosine_schedule_with_warmup`` (which the DPO trainer uses): the
    pretraining run is budgeted in wall-clock minutes, so its progress ``frac`` is time, not
    a step count known in advance, and the shipped weights were trained with this floor.
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def text_config(cfg: PretrainConfig, prompts: list[DSRPrompt]) -> ToyTextConfig:
    """The text encoder's config: slot vocabulary of the prompts and the whole toy vocabulary."""
    from spatialalign.core.dsr.vocab import ANIMALS, OBJECTS, SCENES, VERBS

    extra = [f"scene:{s.lower()}" for s in SCENES] + [f"animal:{a}" for a in ANIMALS]
    extra += [f"object:{o}" for o in OBJECTS] + [f"verb:{v}" for v in VERBS]
    return ToyTextConfig(
        vocab=build_vocab(prompts, cfg.relation_repeats, extra_tokens=extra),
        text_dim=cfg.text_dim,
        relation_repeats=cfg.relation_repeats,
    )


def latent_shape(cfg: PretrainConfig) -> tuple[int, int, int]:
    """(frames, rows, columns) of the codec's latent for the run's video size."""
    r = cfg.codec.downsample
    return cfg.video.num_frames, cfg.video.height // r, cfg.video.width // r


def transformer_config(cfg: PretrainConfig) -> ToyTransformerConfig:
    """The transformer config with channels, text width and position grid filled in."""
    patch = cfg.transformer.patch_size
    grid = tuple(n // k for n, k in zip(latent_shape(cfg), patch, strict=True))
    return ToyTransformerConfig(
        **{
            **asdict(cfg.transformer),
            "text_dim": cfg.text_dim,
            "pos_grid": grid if cfg.abs_pos else None,
            "in_channels": cfg.codec.latent_channels,
            "out_channels": cfg.codec.latent_channels,
        }
    )


def _param_names(modules: dict[str, torch.nn.Module]) -> list[str]:
    """``"{module}.{parameter}"`` for every trained parameter, in optimizer order."""
    return [f"{n}.{k}" for n, m in modules.items() for k, _ in m.named_parameters()]


def _make_ema(cfg: PretrainConfig, modules: dict[str, torch.nn.Module]) -> EMAModel:
    """diffusers' EMA of every trained parameter.

    Its decay at update ``k`` (1-based) is ``min(ema_decay, k / (9 + k))``, what pretraining
    used before it moved to ``EMAModel``, except the very first update (``EMAModel``: copy
    the weights, decay 0; before: decay 0.1), forgotten within a few hundred steps.
    """
    params = [p for m in modules.values() for p in m.parameters()]
    return EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=False, update_after_step=0)


@dataclass
class _TransformerTraining:
    """Stage 4's state: the trained modules, their optimizer and EMA, the batch generator,
    the step and the loss history (what a checkpoint saves and a resume restores)."""

    modules: dict[str, torch.nn.Module]
    opt: torch.optim.Optimizer
    ema: EMAModel
    gen: torch.Generator
    step: int = 0
    hist: list[dict] = field(default_factory=list)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for m in self.modules.values() for p in m.parameters()]


def _start_training(
    cfg: PretrainConfig, modules: dict[str, torch.nn.Module]
) -> _TransformerTraining:
    """A fresh optimizer, EMA and batch generator for ``modules``."""
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    ema = _make_ema(cfg, modules)
    return _TransformerTraining(modules, opt, ema, torch.Generator().manual_seed(cfg.seed + 1))


def _resume_training(cfg: PretrainConfig, state: _TransformerTraining, ckpt_path: Path) -> None:
    """Restores weights, EMA, optimizer, step and history from ``ckpt_path``, and reseeds
    the batch generator from the step."""
    weights, meta = load_checkpoint(ckpt_path)
    for n, m in state.modules.items():
        m.load_state_dict(strip_prefix(weights, n + "."))
    state.ema.shadow_params = [weights[f"ema.{k}"].clone() for k in _param_names(state.modules)]
    load_optimizer_state(state.opt, strip_prefix(weights, OPT_PREFIX))
    state.step = int(meta["step"])
    state.ema.optimization_step = state.step
    state.hist = meta.get("history", [])
    state.gen.manual_seed(cfg.seed + 1 + state.step)


def _save_training(state: _TransformerTraining, ckpt_path: Path, elapsed_s: float) -> None:
    """Checkpoints weights, EMA and optimizer with the step, elapsed time and history."""
    modules, names = state.modules, _param_names(state.modules)
    weights = {f"{n}.{k}": v for n, m in modules.items() for k, v in m.state_dict().items()}
    weights.update({f"ema.{k}": v for k, v in zip(names, state.ema.shadow_params, strict=True)})
    save_training_state(
        ckpt_path,
        weights,
        state.opt,
        {"step": state.step, "elapsed": elapsed_s, "history": state.hist},
        save_rng=False,  # resuming reseeds the batch generator from the step
    )


def _train_step(
    cfg: PretrainConfig,
    state: _TransformerTraining,
    latents: torch.Tensor,
    tok: dict[str, torch.Tensor],
    lr: float,
) -> float:
    """One flow-matching step on a random batch (captions dropped at ``caption_dropout``);
    returns its loss."""
    transformer, text_encoder = state.modules["transformer"], state.modules["text_encoder"]
    gen, params = state.gen, state.params
    for g in state.opt.param_groups:
        g["lr"] = lr
    idx = torch.randint(0, latents.shape[0], (cfg.batch_size,), generator=gen)
    x0 = latents[idx]
    keep = (torch.rand(cfg.batch_size, generator=gen) >= cfg.caption_dropout).float()
    context = text_encoder(
        tok["input_ids"][idx], tok["role_ids"][idx], tok["attention_mask"][idx]
    ) * keep.view(-1, 1, 1)
    sig = sample_sigmas(cfg.batch_size, gen, mode="shift", shift=cfg.video.flow_shift)
    noise = torch.randn(x0.shape, generator=gen)
    loss = flow_matching_loss(transformer, x0, context, sig, noise)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    state.opt.step()
    state.ema.step(params)
    state.step += 1
    return loss.item()


def _log_losses(state: _TransformerTraining, running: list[float], minutes: float) -> None:
    """Appends the mean loss since the last record to the history, and logs it."""
    rec = {
        "step": state.step,
        "loss": float(np.mean(running)),
        "minutes": minutes,
        "lr": state.opt.param_groups[0]["lr"],
    }
    state.hist.append(rec)
    log.info(
        "step %d loss %.4f lr %.2e %.1f min", state.step, rec["loss"], rec["lr"], rec["minutes"]
    )


def _train_transformer(
    cfg: PretrainConfig,
    modules: dict[str, torch.nn.Module],
    latents: torch.Tensor,
    captions: list[str],
    ckpt_path: Path,
    elapsed: Callable[[], float],
) -> tuple[int, list[dict], EMAModel]:
    """Stage 4: flow matching of transformer + text encoder until the step or time budget;
    checkpoints (weights, EMA, optimizer) every ``checkpoint_minutes`` and at the end.
    Returns the step count, the loss history and the EMA."""
    state = _start_training(cfg, modules)
    tok = modules["text_encoder"].tokenizer(captions)
    if ckpt_path.is_file():
        _resume_training(cfg, state, ckpt_path)
        log.info("resumed transformer at step %d (%.1f min elapsed)", state.step, elapsed() / 60)
    budget = cfg.minutes * 60.0
    t_train0 = elapsed()
    last_ckpt = time.monotonic()
    running: list[float] = []
    for m in modules.values():  # transformer, then text encoder
        m.train()
    bar = tqdm(desc="transformer", leave=False, mininterval=10, initial=state.step)
    while not (cfg.max_steps is not None and state.step >= cfg.max_steps) and elapsed() < budget:
        frac_time = (elapsed() - t_train0) / max(1.0, budget - t_train0)
        frac = state.step / cfg.max_steps if cfg.max_steps else frac_time
        lr = cfg.lr * _lr_factor(state.step, frac, cfg.warmup_steps)
        running.append(_train_step(cfg, state, latents, tok, lr))
        bar.update(1)
        if state.step % 250 == 0:
            _log_losses(state, running, elapsed() / 60)
            running = []
        if time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60.0:
            _save_training(state, ckpt_path, elapsed())
            last_ckpt = time.monotonic()
    bar.close()
    _save_training(state, ckpt_path, elapsed())
    return state.step, state.hist, state.ema


def _check_config(cfg: PretrainConfig) -> None:
    """Refuses fractions outside ``[0, 1)`` and a patch that does not tile the latent."""
    patch, latent = tuple(cfg.transformer.patch_size), latent_shape(cfg)
    if min(patch) < 1 or any(n % k for n, k in zip(latent, patch, strict=True)):
        raise SpatialAlignError(
            f"patch size {patch} does not tile the latent (frames, rows, columns) {latent}"
        )
    if cfg.transformer.num_layers < 1:
        raise SpatialAlignError(f"num_layers must be >= 1, got {cfg.transformer.num_layers}")
    if not 0.0 <= cfg.mismatch_frac < 1.0:
        raise SpatialAlignError(f"mismatch fraction must be in [0, 1), got {cfg.mismatch_frac}")
    if not 0.0 <= cfg.caption_dropout < 1.0:
        raise SpatialAlignError(f"caption dropout must be in [0, 1), got {cfg.caption_dropout}")


def _claim_out_dir(out: Path, cfg: PretrainConfig) -> None:
    """Writes ``pretrain_config.json``, refusing a directory that holds a run with another
    configuration (the time and step budgets and threads may change on resume)."""
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


def _clock(ckpt_path: Path) -> Callable[[], float]:
    """Seconds of training so far: the checkpoint's elapsed time plus this process's."""
    t_start = time.monotonic()
    before = float(checkpoint_meta(ckpt_path)["elapsed"]) if ckpt_path.is_file() else 0.0
    return lambda: before + time.monotonic() - t_start


def _load_latents(out: Path) -> tuple[ToyCodec, dict, torch.Tensor, list[str]]:
    """Stages 1-3 from the cache: codec, its info, latents and captions."""
    from safetensors.torch import load_file

    codec, info = _load_codec(out / "codec.safetensors")
    latents = load_file(str(out / "latents.safetensors"))["latents"]
    captions = json.loads((out / "captions.json").read_text())
    log.info("resumed data: %d clips", len(captions))
    return codec, info, latents, captions


def _make_latents(
    out: Path, cfg: PretrainConfig, prompts: list[DSRPrompt]
) -> tuple[ToyCodec, dict, torch.Tensor, list[str]]:
    """Stages 1-3: renders the clips, trains the codec, encodes the latents, caches all."""
    from safetensors.torch import save_file

    t0 = time.monotonic()
    clips, captions, flags = render_dataset(cfg, prompts)
    log.info(
        "rendered %d clips (%d mismatched) in %.1fs", len(clips), flags.sum(), time.monotonic() - t0
    )
    codec, info = train_codec(cfg, clips)
    info["mismatched_clips"] = int(flags.sum())
    info["clips"] = len(clips)
    log.info("codec: %s", info)
    latents = encode_clips(codec, clips)
    with atomic_path(out / "codec.safetensors") as tmp:
        save_file(
            codec.state_dict(),
            str(tmp),
            metadata={"config": json.dumps(codec.config.to_dict()), "info": json.dumps(info)},
        )
    write_json(captions, out / "captions.json")
    with atomic_path(out / "latents.safetensors") as tmp:
        save_file(
            {"latents": latents.contiguous(), "mismatched": torch.from_numpy(flags)}, str(tmp)
        )
    return codec, info, latents, captions


def prepare_latents(
    out: Path, cfg: PretrainConfig, prompts: list[DSRPrompt]
) -> tuple[ToyCodec, dict, torch.Tensor, list[str]]:
    """Stages 1-3 (data, codec, latents): reused when both cached files exist, else made."""
    cached = (out / "latents.safetensors").is_file() and (out / "codec.safetensors").is_file()
    return _load_latents(out) if cached else _make_latents(out, cfg, prompts)


def pretrain(out_dir: str | Path, cfg: PretrainConfig) -> ToyPipeline:
    """Runs (or resumes) every stage and writes the model to ``out_dir/model``."""
    _check_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _claim_out_dir(out, cfg)
    ckpt_path = out / "checkpoint.safetensors"
    elapsed = _clock(ckpt_path)
    prompts = train_prompts(cfg)
    if not prompts:
        raise SpatialAlignError("no training prompts")
    codec, info, latents, captions = prepare_latents(out, cfg, prompts)
    codec.eval()

    # 4: transformer + text encoder
    torch.manual_seed(cfg.seed)
    text_encoder = ToyTextEncoder(text_config(cfg, prompts))
    tcfg = transformer_config(cfg)
    transformer = build_transformer(tcfg)
    modules = {"transformer": transformer, "text_encoder": text_encoder}
    step, hist, ema = _train_transformer(cfg, modules, latents, captions, ckpt_path, elapsed)
    ema.copy_to(p for m in modules.values() for p in m.parameters())  # ship the EMA weights
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
