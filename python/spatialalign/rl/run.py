"""``rl`` on a run directory: online GRPO, iteration after iteration, resumable at each.

An iteration: the next ``prompts_per_iteration`` TRAIN prompts (an epoch-wise seeded
permutation), ``group_size`` videos each from fresh seeds, sampled with the SDE sampler
(:mod:`.rollout`), decoded, tracked and scored in process (:mod:`.reward`), turned into
rewards, group-relative advantages and the top-k filter's choice (:mod:`.advantages`),
written to ``rl/iter-NNNNNNN.parquet``, then the LoRA's update (:mod:`.update`), the log
record (``run/train_log.jsonl``, TensorBoard) and a checkpoint (step = iteration).

Every draw is a function of (seed, iteration) and the weights: prompts, video seeds, SDE
noise (one generator per video seed), step subsets and item order. A checkpoint holds the
LoRA, AdamW and its schedule, so a run killed at any point continues from its last
finished iteration on a plain rerun and ends with the same adapter, bit for bit, as an
uninterrupted run (same machine and thread count). The LoRA, checkpoints and adapter are
``train``'s (targets, format, writer): ``sample --adapter``, ``eval``, ``export-adapter``,
``convert-lora`` and ``report`` read them as they read a ``train`` run's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_json, write_json
from spatialalign.detection.spec import TrackSpec
from spatialalign.models.backends import BackendConfig, load_backend
from spatialalign.rl.advantages import group_advantages, rewards_of, top_k_mask
from spatialalign.rl.config import RLConfig
from spatialalign.rl.policy import Policy
from spatialalign.rl.records import rewards_table, sample_id, weights_hash, write_rewards
from spatialalign.rl.reward import Scorer, Verdicts
from spatialalign.rl.rollout import Trajectories, decode, rollout
from spatialalign.rl.update import Batch, iteration_rng, update
from spatialalign.rl.watch import top_sheet_png
from spatialalign.rundir.rl import RLDir

FORMAT = "spatialalign-rl/1"
PROMPT_STREAM = 0
"""Generator stream of the prompt order (:func:`spatialalign.rl.update.iteration_rng`;
the epoch takes the iteration's place)."""
BACKEND_FREE = ("device", "attention", "compile", "offload", "vae_slicing")
"""Back-end settings that do not change a video's content: not part of the settings key
(nor is the detector's device)."""


@dataclass
class RLResult:
    """What a call to :func:`rl_run` did."""

    out_dir: Path
    iterations: int
    """The last finished iteration."""
    adapter: Path | None
    """The LoRA (None when the run was interrupted before its last iteration)."""
    start: int = 0
    """The iteration the call resumed after (0: a fresh run)."""
    interrupted: bool = False
    signal: int | None = None
    last_log: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------ prompts
def train_prompts(run: RLDir, model: str) -> list[DSRPrompt]:
    """The run's TRAIN prompts: ``prompts.parquet``'s ``train`` split (all its prompts when
    none names a split); without the file, a toy-family model writes its toy world's TRAIN
    split there (``toy``: the toy split, ``toy-hard``: the hard one, as the loop does), Wan
    refuses."""
    from spatialalign.models.registry import is_toy

    rd = run.run
    if not rd.prompts_path.is_file():
        if not is_toy(model):
            raise SpatialAlignError(
                f"no prompts in {run.root}: run `spatialalign prompts {run.root}` first"
            )
        from spatialalign.prompts.splits import model_split

        rd.root.mkdir(parents=True, exist_ok=True)
        rd.write_prompts(model_split(model).prompts("train"))
    prompts = rd.read_prompts()
    splits = {p.split for p in prompts}
    if "train" in splits:
        return [p for p in prompts if p.split == "train"]
    if splits <= {""}:
        return prompts
    raise SpatialAlignError(
        f"{rd.prompts_path} has no train split (its splits: {', '.join(sorted(splits))})"
    )


def iteration_prompts(n_prompts: int, per_iteration: int, seed: int, iteration: int) -> list[int]:
    """Indices of iteration ``iteration``'s prompts (1-based iterations): positions
    ``(iteration-1)*B ..`` of a stream of epochs, each a permutation seeded by (seed, epoch)."""
    out = []
    for q in range((iteration - 1) * per_iteration, iteration * per_iteration):
        epoch, pos = divmod(q, n_prompts)
        out.append(int(iteration_rng(seed, epoch, PROMPT_STREAM).permutation(n_prompts)[pos]))
    return out


def iteration_seeds(cfg: RLConfig, iteration: int) -> list[int]:
    """The video seeds of an iteration: ``first_seed + n`` for the run's videos n of it."""
    n = cfg.videos_per_iteration()
    first = cfg.first_seed + (iteration - 1) * n
    return list(range(first, first + n))


# ------------------------------------------------------------------ settings
def settings_of(
    cfg: RLConfig, backend: BackendConfig, track: TrackSpec, prompts: list[DSRPrompt], identity: str
) -> dict[str, Any]:
    """What the run's iterations depend on (``rl_config.json``; a rerun must match it)."""
    h = hashlib.blake2b(digest_size=16)
    for p in prompts:
        h.update(f"{p.prompt_id}\t{p.text}\n".encode())
    return {
        "config": {k: v for k, v in cfg.to_dict().items() if k not in cfg.resume_free()},
        "backend": {k: v for k, v in asdict(backend).items() if k not in BACKEND_FREE},
        "model_identity": identity,
        "detection": {k: v for k, v in asdict(track).items() if k != "device"},
        "prompts": h.hexdigest(),
    }


def check_settings(run: RLDir, settings: dict[str, Any]) -> None:
    """Refuses to continue a run made with other settings (or a ``train`` run's output)."""
    if not run.train.checkpoint_paths():
        return
    if not run.config_path.is_file():
        raise SpatialAlignError(
            f"{run.train.root} holds a `train` run, not an rl run: use another directory"
        )
    old = read_json(run.config_path).get("settings", {})
    diff = _diff(old, settings)
    if diff:
        raise SpatialAlignError(
            f"{run.root} holds an rl run with other settings ({', '.join(diff[:4])}): "
            "continue it with its settings, or use a new directory"
        )


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}")
    return out


# ------------------------------------------------------------------ the model
def lora_train_config(cfg: RLConfig, gradient_checkpointing: bool) -> Any:
    """The :class:`~spatialalign.training.config.TrainConfig` that ``train``'s LoRA set-up
    reads (rank, alpha, seed, checkpointing): the same targets and initialisation."""
    from spatialalign.training.config import TrainConfig

    return TrainConfig(
        lora_rank=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        seed=cfg.seed,
        gradient_checkpointing=gradient_checkpointing,
    )


def make_optimizer(params: list[torch.nn.Parameter], cfg: RLConfig) -> tuple[Any, Any]:
    """AdamW and the learning rate schedule (diffusers'): ``lr_warmup_steps`` of linear
    warm-up, then constant or cosine decay to 0 over the run's AdamW steps."""
    from diffusers.optimization import get_scheduler

    opt = torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )
    name = "constant_with_warmup" if cfg.lr_schedule == "constant" else "cosine"
    return opt, get_scheduler(
        name,
        optimizer=opt,
        num_warmup_steps=cfg.lr_warmup_steps,
        num_training_steps=cfg.total_updates(),
    )


def autocast_for(device: torch.device, mixed_precision: str) -> Callable[[], Any]:
    """A factory of the forward passes' autocast (bf16 on CUDA under ``auto``/``bf16``)."""
    if device.type == "cuda" and mixed_precision in ("auto", "bf16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def lora_state(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer)


# ------------------------------------------------------------------ one iteration
@dataclass
class Context:
    """What every iteration uses."""

    run: RLDir
    cfg: RLConfig
    policy: Policy
    scorer: Scorer
    prompts: list[DSRPrompt]
    params: list[torch.nn.Parameter]
    opt: Any
    sched: Any
    autocast: Callable[[], Any]
    settings_key: str


@dataclass
class Sampled:
    """An iteration's videos: their prompts, seeds, text embeddings, paths and frames."""

    prompts: list[DSRPrompt]
    """Per video (a group's videos share it)."""
    seeds: list[int]
    cond: torch.Tensor
    uncond: torch.Tensor | None
    traj: Trajectories
    frames: np.ndarray
    lora_hash: str
    """The LoRA the videos were sampled with (recorded in the rewards table)."""


@dataclass
class Judged:
    """An iteration's verdicts, rewards, advantages and the top-k filter's choice (flat)."""

    verdicts: Verdicts
    rewards: np.ndarray
    advantages: np.ndarray
    kept: np.ndarray
    groups: int


def sample_iteration(ctx: Context, iteration: int) -> Sampled:
    """The iteration's prompts x ``group_size`` seeds through the SDE sampler, decoded."""
    cfg, policy = ctx.cfg, ctx.policy
    order = iteration_prompts(len(ctx.prompts), cfg.prompts_per_iteration, cfg.seed, iteration)
    chosen = [ctx.prompts[i] for i in order]
    of_video = np.repeat(np.arange(len(chosen)), cfg.group_size)
    seeds = iteration_seeds(cfg, iteration)
    cond, uncond = policy.encode([p.text for p in chosen])
    index = torch.as_tensor(of_video, device=cond.device)
    cond_v, uncond_v = cond[index], None if uncond is None else uncond[index]
    lora_hash = weights_hash(lora_state(policy.transformer))
    with ctx.autocast():
        traj = rollout(policy, cond_v, uncond_v, seeds, noise_level=cfg.noise_level,
                       batch_size=cfg.sample_batch_size)  # fmt: skip
        frames = decode(policy, traj.final, cfg.sample_batch_size)
    return Sampled([chosen[b] for b in of_video], seeds, cond_v, uncond_v, traj, frames, lora_hash)


def judge(ctx: Context, sampled: Sampled) -> Judged:
    """Verdicts (detector, tracker, DSR-Score) -> rewards -> advantages and the top-k filter."""
    cfg = ctx.cfg
    verdicts = ctx.scorer.score(sampled.frames, sampled.prompts)
    rewards = rewards_of(verdicts.valid, verdicts.dsr, cfg.invalid_reward)
    grouped = rewards.reshape(-1, cfg.group_size)
    adv = group_advantages(grouped, normalize_per_prompt=cfg.normalize_per_prompt)
    kept = top_k_mask(grouped, cfg.top_k, min_std=cfg.min_group_std)
    return Judged(verdicts, rewards, adv.ravel(), kept.ravel(), len(grouped))


def write_iteration(ctx: Context, iteration: int, sampled: Sampled, judged: Judged) -> None:
    """The rewards table, the sheet of the highest-reward videos (and all videos with
    ``keep_videos``), atomically."""
    prompt_ids = [p.prompt_id for p in sampled.prompts]
    record = {"iteration": iteration, "settings": ctx.settings_key,
              "lora_before": sampled.lora_hash}  # fmt: skip
    table = rewards_table(iteration, prompt_ids, sampled.seeds, judged.verdicts, judged.rewards,
                          judged.advantages, judged.kept, record)  # fmt: skip
    write_rewards(table, ctx.run.rewards_path(iteration))
    titles = [f"{p.text} [{'valid' if ok else why}]" for p, ok, why in
              zip(sampled.prompts, judged.verdicts.valid, judged.verdicts.reason, strict=True)]  # fmt: skip
    png = top_sheet_png(sampled.frames, judged.rewards, titles, iteration)
    with atomic_path(ctx.run.top_sheet_path(iteration)) as tmp:
        tmp.write_bytes(png)
    if ctx.cfg.keep_videos:
        _write_videos(ctx, iteration, prompt_ids, sampled.seeds, sampled.frames)


def log_record(judged: Judged, cfg: RLConfig, iteration: int) -> dict[str, float]:
    """What the log says of the iteration's videos: reward, validness, Correct@0.7 of the
    samples (SDE: not the ODE sampler's evaluation), DSR of the valid ones, kept fractions."""
    import dsr_geom

    v = judged.verdicts
    dsr = np.where(v.valid, v.dsr, np.nan)
    correct = dsr_geom.correctness_curve(dsr, [dsr_geom.OFFICIAL_THRESHOLDS[7]])[0]
    valid_dsr = v.dsr[v.valid]
    return {
        "reward_mean": float(judged.rewards.mean()),
        "reward_std": float(judged.rewards.std()),
        "validness": float(v.valid.mean()),
        "correct_0.7": float(correct),
        "dsr_mean_valid": float(valid_dsr.mean()) if len(valid_dsr) else float("nan"),
        "kept_fraction": float(judged.kept.mean()),
        "groups_kept": float(judged.kept.reshape(judged.groups, -1).any(axis=1).mean()),
        "videos": float(iteration * cfg.videos_per_iteration()),
    }


def run_iteration(ctx: Context, iteration: int) -> dict[str, float]:
    """Samples, scores, records and updates once; returns the iteration's log record."""
    t0 = time.perf_counter()
    sampled = sample_iteration(ctx, iteration)
    t1 = time.perf_counter()
    judged = judge(ctx, sampled)
    write_iteration(ctx, iteration, sampled, judged)
    t2 = time.perf_counter()
    batch = Batch(sampled.traj, sampled.cond, sampled.uncond,
                  torch.as_tensor(judged.advantages, dtype=torch.float32), judged.kept)  # fmt: skip
    terms = update(ctx.policy.transformer, ctx.params, ctx.opt, ctx.sched, batch, ctx.cfg,
                   iteration, ctx.policy.guidance, ctx.autocast())  # fmt: skip
    t3 = time.perf_counter()
    return {
        **log_record(judged, ctx.cfg, iteration),
        **terms,
        "lr": float(ctx.opt.param_groups[0]["lr"]),
        "sample_s": t1 - t0,
        "score_s": t2 - t1,
        "update_s": t3 - t2,
    }


def _write_videos(
    ctx: Context, iteration: int, prompt_ids: list[str], seeds: list[int], frames: np.ndarray
) -> None:
    from spatialalign.core.video import write_video

    ctx.run.videos_dir(iteration).mkdir(parents=True, exist_ok=True)
    for pid, seed, video in zip(prompt_ids, seeds, frames, strict=True):
        path = ctx.run.video_path(iteration, sample_id(pid, iteration, seed))
        write_video(path, video, fps=int(round(ctx.policy.fps)), lossless=ctx.policy.lossless)


# ------------------------------------------------------------------ the run
def rl_run(
    run_dir: str | os.PathLike[str],
    cfg: RLConfig,
    backend: BackendConfig,
    track: TrackSpec | None = None,
    *,
    progress: bool = True,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> RLResult:
    """Runs (or continues) online GRPO in ``run_dir`` up to ``cfg.iterations``; see the
    module doc. ``on_iteration(iteration, record)`` is called after each one (tests)."""
    cfg.validate()
    if backend.adapter:
        raise SpatialAlignError("rl trains its own LoRA from the model: --adapter is not taken")
    # the validity preset of the model's videos unless --preset says otherwise (as eval, loop)
    track = (track or TrackSpec()).for_model(backend.model)
    run = RLDir(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    with run.run.lock("rl"):
        return _run_locked(run, cfg, backend, track, progress, on_iteration)


def _run_locked(
    run: RLDir,
    cfg: RLConfig,
    backend_cfg: BackendConfig,
    track: TrackSpec,
    progress: bool,
    on_iteration: Callable[[int, dict[str, float]], None] | None,
) -> RLResult:
    from spatialalign.training.trainer import (
        StepLogger,
        StopRequest,
        load_latest_checkpoint,
        prepare_transformer,
        save_adapter,
        save_checkpoint,
    )

    prompts = train_prompts(run, backend_cfg.model)
    scorer = Scorer(track)  # a missing detector fails before the model loads
    backend = load_backend(backend_cfg)
    settings = settings_of(cfg, backend_cfg, track, prompts, backend.identity())
    check_settings(run, settings)
    key = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=8).hexdigest()
    write_json({"format": FORMAT, "settings": settings, "config": cfg.to_dict()}, run.config_path)
    policy = Policy(backend)
    ckpt = cfg.gradient_checkpointing
    ckpt = (backend_cfg.model == "wan") if ckpt is None else bool(ckpt)
    params = prepare_transformer(policy.transformer, lora_train_config(cfg, ckpt))
    opt, sched = make_optimizer(params, cfg)
    out = run.train.root
    start = load_latest_checkpoint(out, policy.transformer, opt, sched)
    autocast = autocast_for(policy.device, cfg.mixed_precision)
    ctx = Context(run, cfg, policy, scorer, prompts, params, opt, sched, autocast, key)
    logger = StepLogger(out, True, start)
    bar = _progress(cfg.iterations, start, progress)
    it, record, stop = start, {}, StopRequest()
    try:
        with stop.installed():
            while it < cfg.iterations:
                record = run_iteration(ctx, it + 1)
                it += 1
                if it % cfg.log_every == 0 or it == cfg.iterations:
                    logger.write(it, record)
                save_checkpoint(out, policy.transformer, opt, sched, it, cfg.keep_checkpoints)
                bar.update(1)
                bar.set_postfix(reward=f"{record['reward_mean']:.3f}",
                                valid=f"{record['validness']:.2f}", refresh=False)  # fmt: skip
                if on_iteration is not None:
                    on_iteration(it, record)
                if stop.requested:
                    break
    finally:
        bar.close()
        logger.close()
    done = it >= cfg.iterations
    if done and (it > start or not run.train.adapter_path.is_file()):
        save_adapter(out, policy.transformer)
    adapter = run.train.adapter_path if done else None
    return RLResult(out, it, adapter, start=start, interrupted=not done,
                    signal=None if done else stop.signum, last_log=record)  # fmt: skip


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="rl", unit="it", disable=not enabled)
