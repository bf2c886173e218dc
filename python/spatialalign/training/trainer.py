"""The training loop: LoRA on a diffusers transformer with the losses of ``losses.py``.

Per optimizer step and micro-batch: winner and loser latents get one shared noise level per
pair (optionally the same noise), go through the transformer in **one batched forward**,
and the reference prediction comes from the same transformer with the adapter disabled
under ``no_grad`` (no second copy). ``accelerate`` runs it on one or several processes,
DDP or FSDP2 (``distributed.py``). Checkpoints (LoRA, optimizer, scheduler, RNG, step) are safetensors + JSON, written
atomically; a resumed run continues bit for bit; SIGINT/SIGTERM save before stopping. The
adapter is saved in diffusers' LoRA format, loadable by ``WanPipeline.load_lora_weights``,
``ToyPipeline.load_lora_weights`` and ``sample --adapter``; ``save_adapter_steps`` also
writes it at chosen steps (``adapters/step-NNNNNNN/``), and ``export-adapter`` writes it
from any kept checkpoint (``export.py``), through the same writer (:func:`write_adapter`).

A step whose loss or gradients are not finite, or after which a LoRA weight is not, stops
the run with :class:`SpatialAlignError` before anything of it is saved (no NaN adapter; the
last checkpoint stays the last good one); so does a checkpoint that cannot be written (a
full disk), and the previous checkpoint stays intact for ``--resume``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, write_json
from spatialalign.lora.adapter import LORA_WEIGHT_NAME, adapter_disabled, lora_config
from spatialalign.parallel.sharding import full_state, gradient_sync, like, wrap_model
from spatialalign.rundir.train import TrainDir
from spatialalign.training.config import ADDED_FIELDS, TrainConfig, recipe_record
from spatialalign.training.data import (
    ItemSampler,
    Pair,
    TrainData,
    collate_pairs,
    collate_samples,
    item_generator,
)
from spatialalign.training.losses import is_pair_variant, pair_loss, sample_loss
from spatialalign.trainlib.checkpoint import (
    add_prefix,
    load_training_state,
    optimizer_state,
    save_training_state,
    strip_prefix,
)
from spatialalign.trainlib.flow import (
    noisy_latents,
    predict_velocity,
    sample_sigmas,
    velocity_target,
)

log = logging.getLogger("spatialalign.training")

LORA_PREFIX = "lora."
LORA_CONFIG_KEY = "lora_config"
"""A checkpoint's metadata entry holding the adapter's peft config (``export-adapter``)."""
GLOBAL_BATCH = "global_batch"
RESUME_FREE = (
    "max_steps",
    "resume",
    "checkpoint_every",
    "keep_checkpoints",
    "keep_checkpoint_every",
    "save_adapter_steps",
    "log_every",
    "distributed",
    "train_batch_size",
    "gradient_accumulation_steps",
    "global_batch_size",
)
"""Fields a resumed run may change (the batch split only with the same ``global_batch``);
any other difference from the saved config refuses. (``max_steps`` moves the schedule's
horizon unless ``lr_schedule_steps`` fixes it.)"""
RECIPE_KEY = "recipe"
"""``train_config.json``'s record of the recipe the run was resolved from (a label: the
fields decide what a resume must match)."""


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    out_dir: Path
    steps: int
    """The global step reached."""
    adapter: Path | None
    """The diffusers LoRA file (None when the run was interrupted before the end)."""
    interrupted: bool = False
    last_log: dict[str, float] = field(default_factory=dict)
    signal: int | None = None
    """The signal that interrupted the run (SIGINT, SIGTERM), if one did."""


class NonFiniteStep(SpatialAlignError):
    """An optimizer step met a NaN or infinite loss, gradient or weight."""


class WriteFailed(SpatialAlignError):
    """A checkpoint or the adapter could not be written (e.g. the disk is full)."""


class Interrupted(SpatialAlignError):
    """A run stopped by a signal after saving: the CLI exits with 128 + the signal's number
    (130 SIGINT, 143 SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


# -------------------------------------------------------------------------- set-up
def check_rank(transformer: torch.nn.Module, rank: int) -> None:
    """A LoRA of rank r adds r x (in + out) weights per layer: beyond min(in, out) of a
    layer it only costs memory (``--lora-rank 100000`` made a 1 GB toy adapter), so the rank
    may be at most that of the smallest layer the adapter targets."""
    from spatialalign.lora.adapter import lora_target_names

    modules = dict(transformer.named_modules())
    sizes = {
        name: (m.in_features, m.out_features)
        for name in lora_target_names(transformer)
        if hasattr(m := modules[name], "in_features") and hasattr(m, "out_features")
    }
    if not sizes:
        return
    name, (n_in, n_out) = min(sizes.items(), key=lambda kv: min(kv[1]))
    if rank > min(n_in, n_out):
        raise SpatialAlignError(
            f"lora_rank {rank} is larger than the smallest layer the LoRA targets ({name}: "
            f"{n_in} -> {n_out}); use a rank of at most {min(n_in, n_out)}"
        )


def prepare_transformer(transformer: torch.nn.Module, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Freezes the transformer, adds the SpatialAlign LoRA (seeded; its rank checked by
    :func:`check_rank`), makes the LoRA weights float32 and trainable; returns them."""
    from diffusers.training_utils import cast_training_params

    check_rank(transformer, cfg.lora_rank)
    transformer.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        transformer.add_adapter(lora_config(cfg.lora_rank, cfg.lora_alpha))
    cast_training_params(transformer, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    params = [p for p in transformer.parameters() if p.requires_grad]
    if not params:
        raise SpatialAlignError("the LoRA adapter matched no layer of the transformer")
    return params


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> tuple[Any, Any]:
    """AdamW and diffusers' learning-rate schedule (warm-up, then ``cfg.lr_scheduler`` to
    the horizon :meth:`TrainConfig.schedule_steps`)."""
    from diffusers.optimization import get_scheduler

    opt = torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
    )
    sched = get_scheduler(
        cfg.lr_scheduler,
        optimizer=opt,
        num_warmup_steps=cfg.lr_warmup_steps,
        num_training_steps=cfg.schedule_steps(),
    )
    return opt, sched


def make_accelerator(cfg: TrainConfig) -> Any:
    """An ``accelerate.Accelerator``: bf16 autocast only on a GPU (``auto``). Without a GPU
    it is told ``cpu=True``, so ``torchrun``/``accelerate launch`` processes on a CPU-only
    machine form a gloo group (accelerate assumes one process otherwise)."""
    from accelerate import Accelerator

    gpu = torch.cuda.is_available()
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if gpu else "no"
    return Accelerator(mixed_precision=mp, cpu=not gpu)


# ---------------------------------------------------------------------- one step
@dataclass
class TrainState:
    """The models, optimizer and process group of a running training loop."""

    model: torch.nn.Module
    """The (possibly DDP-wrapped) transformer the policy forward goes through."""
    base: torch.nn.Module
    """The unwrapped transformer (reference forward with the adapter disabled); under FSDP
    the sharded transformer itself (``fully_shard`` wraps in place)."""
    cfg: TrainConfig
    acc: Any
    """The ``accelerate.Accelerator``."""
    params: list[torch.nn.Parameter]
    opt: Any
    sched: Any

    @property
    def device(self) -> torch.device:
        return self.acc.device

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the accelerator was set up for it, else a no-op."""
        return self.acc.autocast()


def draw_noise(
    cfg: TrainConfig, positions: list[int], shape: tuple[int, ...], pairs: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per item (stream position): its noise level, noise, and for pairs the loser's noise
    (the winner's with ``shared_noise``), each from the position's own generator."""
    sig, n1, n2 = [], [], []
    for pos in positions:
        g = item_generator(cfg.seed, pos)
        sig.append(
            sample_sigmas(
                1,
                g,
                mode=cfg.timestep_sampling,
                shift=cfg.timestep_shift,
                logit_mean=cfg.logit_mean,
                logit_std=cfg.logit_std,
            )
        )
        n1.append(torch.randn(shape, generator=g))
        if pairs:
            n2.append(n1[-1] if cfg.shared_noise else torch.randn(shape, generator=g))
    noise_l = torch.stack(n2) if pairs else torch.empty(0)
    return torch.cat(sig), torch.stack(n1), noise_l


def pair_step(
    ctx: TrainState, x_w: torch.Tensor, x_l: torch.Tensor, text: torch.Tensor, positions: list[int]
) -> dict[str, torch.Tensor]:
    """The loss of a micro-batch of pairs: one shared level per pair, winner and loser in
    one forward, the reference with the adapter disabled under ``no_grad``."""
    cfg = ctx.cfg
    sig, noise_w, noise_l = draw_noise(cfg, positions, tuple(x_w.shape[1:]), pairs=True)
    x0 = torch.cat([x_w, x_l]).to(ctx.device)
    noise = torch.cat([noise_w, noise_l]).to(ctx.device)
    sig2 = torch.cat([sig, sig]).to(ctx.device)
    text2 = torch.cat([text, text]).to(ctx.device)
    x_t = noisy_latents(x0, noise, sig2)
    with torch.no_grad(), adapter_disabled(ctx.base), ctx.autocast():
        ref = predict_velocity(ctx.base, x_t, sig2, text2)
    with ctx.autocast():
        pred = predict_velocity(ctx.model, x_t, sig2, text2)
    target = velocity_target(x0, noise)
    (pw, pl), (rw, rl), (tw, tl) = pred.chunk(2), ref.chunk(2), target.chunk(2)
    return pair_loss(
        cfg.loss,
        pw,
        pl,
        rw,
        rl,
        tw,
        tl,
        beta=cfg.beta,
        lambda_zo=cfg.lambda_zo,
        lambda_sft=cfg.lambda_sft,
        clip=cfg.margin_clip,
    )


def sample_step(
    ctx: TrainState,
    x0: torch.Tensor,
    text: torch.Tensor,
    rewards: torch.Tensor,
    positions: list[int],
) -> dict[str, torch.Tensor]:
    """The loss of a micro-batch of single samples (``sft``, ``rwr``): no reference."""
    sig, noise, _ = draw_noise(ctx.cfg, positions, tuple(x0.shape[1:]), pairs=False)
    sig, noise, x0 = sig.to(ctx.device), noise.to(ctx.device), x0.to(ctx.device)
    with ctx.autocast():
        pred = predict_velocity(ctx.model, noisy_latents(x0, noise, sig), sig, text.to(ctx.device))
    return sample_loss(
        ctx.cfg.loss,
        pred,
        velocity_target(x0, noise),
        rewards.to(ctx.device),
        rwr_temperature=ctx.cfg.rwr_temperature,
    )


# -------------------------------------------------------------------- checkpoints
def prune_checkpoints(out_dir: Path, keep: int, keep_every: int = 0) -> None:
    """Deletes all checkpoints but the latest ``keep`` and those whose step is a multiple of
    ``keep_every`` (when > 0)."""
    for old in TrainDir(out_dir).checkpoint_paths()[:-keep]:
        if keep_every and TrainDir.checkpoint_step(old) % keep_every == 0:
            continue
        old.unlink(missing_ok=True)


def _lora_state(base: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(base)


def save_checkpoint(
    out_dir: Path,
    base: torch.nn.Module,
    opt: Any,
    sched: Any,
    step: int,
    keep: int,
    *,
    keep_every: int = 0,
    write: bool = True,
) -> Path | None:
    """``checkpoints/checkpoint-{step}.safetensors`` (with the adapter's peft config, for
    ``export-adapter``); prunes as :func:`prune_checkpoints` (``keep``, ``keep_every``).

    Whole tensors are gathered from the shards under FSDP, so every process calls this and
    only the one with ``write`` writes (the file is the same for any strategy)."""
    path = TrainDir(out_dir).checkpoint_path(step)
    weights = add_prefix(full_state(_lora_state(base)), LORA_PREFIX)
    if not write:
        optimizer_state(opt)  # the gather of the optimizer state is a collective too
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"step": step, LORA_CONFIG_KEY: adapter_config(base)}
    with _write_errors(f"checkpoint {path}"):
        save_training_state(path, weights, opt, meta, scheduler=sched)
    prune_checkpoints(out_dir, keep, keep_every)
    return path


def load_latest_checkpoint(out_dir: Path, base: torch.nn.Module, opt: Any, sched: Any) -> int:
    """Restores LoRA weights, optimizer, scheduler and RNG from the latest checkpoint;
    returns its step (0 when there is none)."""
    from peft.utils import set_peft_model_state_dict

    paths = TrainDir(out_dir).checkpoint_paths()
    if not paths:
        return 0
    weights, meta = load_training_state(paths[-1], opt, scheduler=sched)
    lora = strip_prefix(weights, LORA_PREFIX)
    current = _lora_state(base)
    device = next(p.device for p in base.parameters() if p.requires_grad)
    lora = {k: like(v, current[k]) if k in current else v.to(device) for k, v in lora.items()}
    try:
        result = set_peft_model_state_dict(base, lora)
    except RuntimeError as e:  # shape mismatch
        msg = str(e).splitlines()[0]
        raise SpatialAlignError(f"checkpoint {paths[-1]} does not fit the model: {msg}") from e
    if getattr(result, "unexpected_keys", None):
        raise SpatialAlignError(f"checkpoint {paths[-1]} does not fit this model's adapter")
    return int(meta["step"])


def adapter_config(base: torch.nn.Module) -> dict[str, Any]:
    """The peft config of ``base``'s adapter as JSON data (sets as sorted lists)."""
    config = base.peft_config["default"].to_dict()
    return json.loads(
        json.dumps(config, default=lambda x: sorted(x) if isinstance(x, set) else str(x))
    )


def save_adapter(out_dir: Path, base: torch.nn.Module, *, write: bool = True) -> Path:
    """The adapter in diffusers' LoRA format (with the adapter's ``lora_alpha`` in its
    metadata) at :attr:`TrainDir.adapter_path` of ``out_dir`` (the run's ``run/`` or one of
    its ``adapters/step-N/``), written atomically (:func:`write_adapter`).
    Under FSDP every process calls it (the weights are gathered) and the one with ``write``
    writes."""
    config = adapter_config(base)
    state = full_state(_lora_state(base))
    path = TrainDir(out_dir).adapter_path
    if not write:
        return path
    return write_adapter(path, state, config)


def write_adapter(path: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Writes the LoRA ``state`` (peft names) with its peft ``config`` as diffusers'
    ``WanPipeline.save_lora_weights`` does, atomically to ``path`` (any ``.safetensors``
    name). The one writer of the trainer's adapters and of ``export-adapter``."""
    from diffusers import WanPipeline

    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        _write_errors(f"adapter {path}"),
        tempfile.TemporaryDirectory(dir=path.parent, prefix=".adapter.") as tmp,
    ):
        WanPipeline.save_lora_weights(
            tmp,
            transformer_lora_layers=state,
            transformer_lora_adapter_metadata=dict(config),
            safe_serialization=True,
        )
        os.replace(Path(tmp) / LORA_WEIGHT_NAME, path)
    return path


@contextlib.contextmanager
def _write_errors(what: str) -> Iterator[None]:
    """A failed write (a full disk: ``OSError``, or safetensors' own error wrapping it)
    becomes one :class:`SpatialAlignError` line; the file it replaces is untouched (every
    write goes to a temporary name first)."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WriteFailed(f"cannot write {what}: {reason}") from e


# ------------------------------------------------------------------------ logging
class StepLogger:
    """Per-step records to ``train_log.jsonl`` and, when installed, TensorBoard (rank 0)."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int) -> None:
        self.path = TrainDir(out_dir).log_path
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        _truncate_log(self.path, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: logging to %s only", self.path)
        else:
            self.tb = SummaryWriter(str(TrainDir(out_dir).tensorboard_dir))

    def write(self, step: int, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json_line({"step": step, **record}) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def json_line(record: dict[str, Any]) -> str:
    """``record`` as strict JSON: a NaN or infinite value is written as ``null`` (JSON has
    no NaN; Python's ``json`` would write a bare ``NaN`` other readers refuse)."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v
             for k, v in record.items()}  # fmt: skip
    return json.dumps(clean, allow_nan=False)


def _truncate_log(path: Path, step: int) -> None:
    """Drops records after ``step`` (written after the checkpoint a resumed run restarts
    from), so the log reads as one uninterrupted run."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in keep))


# ---------------------------------------------------------------------- signals
class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("signal %d: saving a checkpoint after this step", signum)
        self.requested = True
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


# --------------------------------------------------------------------------- run
def read_config(path: Path) -> dict[str, Any]:
    """A ``train_config.json``, with the fields added since it was written at the values
    that reproduce what its run did (:data:`ADDED_FIELDS`)."""
    return {**ADDED_FIELDS, **json.loads(path.read_text())}


def _check_config(
    out_dir: Path, cfg: TrainConfig, resume: bool, processes: int, recipe: str | None = None
) -> None:
    """Refuses to resume, or to train into a directory holding checkpoints, with another
    configuration; writes ``train_config.json`` (with the pairs per optimizer step over
    all processes, ``global_batch``, and the ``recipe`` it was resolved from when given).
    A resumed run may split the same global batch over another number of processes or
    micro-batches: every step sees the same items."""
    path = TrainDir(out_dir).config_path
    new = {**cfg.to_dict(), GLOBAL_BATCH: cfg.global_batch(processes)}
    if path.is_file() and TrainDir(out_dir).checkpoint_paths():
        old = read_config(path)
        old.setdefault(GLOBAL_BATCH, new[GLOBAL_BATCH])  # written before it was recorded
        diff = sorted(k for k in new if k not in RESUME_FREE and old.get(k) != new[k])
        if not resume:
            raise SpatialAlignError(
                f"{out_dir} already holds a training run: resume it (--resume) or use a new "
                "directory"
            )
        if diff:
            was = ", ".join(f"{k} {old.get(k)!r} -> {new[k]!r}" for k in diff[:4])
            raise SpatialAlignError(
                f"cannot resume {out_dir}: configuration differs in {', '.join(diff)} ({was})"
                f"{_recipe_hint(old, diff, recipe)}"
            )
    if recipe is not None:
        new[RECIPE_KEY] = recipe_record(recipe, cfg)
    write_json(new, path)


def _recipe_hint(old: dict[str, Any], diff: list[str], recipe: str | None) -> str:
    """When the run was made with another recipe than this call resolves (recorded, or for a
    run recorded before recipes, one whose values it has in every differing recipe field):
    which ``--recipe`` resumes it."""
    from spatialalign.training.config import RECIPES

    recorded = (old.get(RECIPE_KEY) or {}).get("name")
    if recorded is None:
        fields = [k for k in diff if any(k in values for values in RECIPES.values())]
        match = [r for r, values in RECIPES.items()
                 if fields and all(k in values and values[k] == old.get(k) for k in fields)]  # fmt: skip
        recorded = match[0] if match else None
    if recorded is None or recorded == recipe:
        return ""
    return f"; the run was trained with --recipe {recorded}: pass it to resume"


def check_fit(transformer: torch.nn.Module, data: TrainData) -> None:
    """The cached latents and text embeddings must fit the transformer's input widths."""
    cfg = transformer.config
    lat = next(iter(data.latents.values()))
    txt = next(iter(data.text.values()))
    if lat.dim() != 4 or lat.shape[0] != cfg.in_channels:
        raise SpatialAlignError(
            f"cached latents of shape {tuple(lat.shape)} do not fit a transformer with "
            f"{cfg.in_channels} input channels (a cache from another model?)"
        )
    if txt.dim() != 2 or txt.shape[-1] != cfg.text_dim:
        raise SpatialAlignError(
            f"cached text embeddings of width {txt.shape[-1]} do not fit the transformer's "
            f"text_dim {cfg.text_dim}"
        )


def train(
    transformer: torch.nn.Module,
    data: TrainData,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    accelerator: Any = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    recipe: str | None = None,
) -> TrainResult:
    """Trains a SpatialAlign LoRA on ``transformer`` (a diffusers Wan transformer, toy or
    real) into ``out_dir``; returns where it stopped and the adapter file.

    ``on_step(step, record)`` is called after every optimizer step (tests, callbacks).
    ``recipe`` names the recipe ``cfg`` was resolved from, recorded in ``train_config.json``.
    """
    cfg.validate()
    out = Path(out_dir)
    acc = accelerator if accelerator is not None else make_accelerator(cfg)
    pairs = is_pair_variant(cfg.loss)
    items = data.items(pairs)
    check_fit(transformer, data)
    accum = cfg.accumulation_steps(acc.num_processes)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _check_config(out, cfg, cfg.resume, acc.num_processes, recipe)
    acc.wait_for_everyone()

    prepare_transformer(transformer, cfg)
    model = wrap_model(transformer, acc, cfg.distributed)
    base = acc.unwrap_model(model)
    params = [p for p in base.parameters() if p.requires_grad]  # FSDP: the sharded ones
    opt, sched = make_optimizer(params, cfg)
    step = start = load_latest_checkpoint(out, base, opt, sched) if cfg.resume else 0
    if step:
        log.info("resumed %s at step %d", out, step)
    ctx = TrainState(model, base, cfg, acc, params, opt, sched)
    sampler = ItemSampler.of(items, cfg.pair_sampling, cfg.seed)
    adapter_steps = set(cfg.adapter_steps())
    logger = StepLogger(out, acc.is_main_process, step)
    bar = _progress(cfg.max_steps, step, progress and acc.is_main_process)
    record: dict[str, float] = {}
    stop = StopRequest()
    try:
        with stop.installed():
            while step < cfg.max_steps:
                t0 = time.perf_counter()
                terms = _optimizer_step(ctx, data, sampler, step, accum)
                step += 1
                record = {**terms, "step_time": time.perf_counter() - t0}
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    logger.write(step, record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                if on_step is not None:
                    on_step(step, record)
                stopping = _any_process(acc, stop.requested)
                due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
                if due or stopping or step == cfg.max_steps:
                    save_checkpoint(
                        out, base, opt, sched, step, cfg.keep_checkpoints,
                        keep_every=cfg.keep_checkpoint_every, write=acc.is_main_process,
                    )  # fmt: skip
                    acc.wait_for_everyone()
                if step in adapter_steps:
                    save_adapter(TrainDir(out).adapter_dir(step), base, write=acc.is_main_process)
                    acc.wait_for_everyone()
                if stopping:
                    break
    except NonFiniteStep as e:
        raise NonFiniteStep(f"training stopped at step {step + 1}: {e}; {_last_good(out)}") from e
    except WriteFailed as e:
        raise WriteFailed(
            f"training stopped at step {step}: {e}; {_last_good(out)}, free some space and "
            "continue with --resume"
        ) from e
    finally:
        bar.close()
        logger.close()
    done = step >= cfg.max_steps
    # a finished run resumed again keeps its file: equal weights would still give other
    # bytes (safetensors writes its metadata keys in hash-map order), i.e. a new fingerprint
    rewrite = step > start or not TrainDir(out).adapter_path.is_file()
    if done and rewrite:
        save_adapter(out, base, write=acc.is_main_process)
    acc.wait_for_everyone()
    adapter = TrainDir(out).adapter_path if done else None
    signum = None if done else stop.signum
    return TrainResult(out, step, adapter, interrupted=not done, last_log=record, signal=signum)


def _last_good(out: Path) -> str:
    """Where a stopped run can continue from: its latest checkpoint (intact)."""
    paths = TrainDir(out).checkpoint_paths()
    if not paths:
        return "no checkpoint was saved before it"
    return f"the last checkpoint {paths[-1]} is intact"


def _optimizer_step(
    ctx: TrainState, data: TrainData, sampler: ItemSampler, step: int, accum: int
) -> dict[str, float]:
    """``accum`` micro-batches (gradients synchronised on the last), clip, AdamW, schedule;
    returns the logged terms averaged over micro-batches and processes, and the step's lr."""
    acc, opt = ctx.acc, ctx.opt
    cfg = ctx.cfg
    sums: dict[str, torch.Tensor] = {}
    for m in range(accum):
        k = step * accum + m
        pos_idx = sampler.positions(cfg.train_batch_size, k, acc.process_index, acc.num_processes)
        positions = [p for p, _ in pos_idx]
        batch = [sampler.items[i] for _, i in pos_idx]
        with gradient_sync(ctx.model, acc, enabled=m == accum - 1):
            if isinstance(batch[0], Pair):
                out = pair_step(ctx, *collate_pairs(data, batch), positions)
            else:
                out = sample_step(ctx, *collate_samples(data, batch), positions)
            acc.backward(out["loss"] / accum)
        for key, v in out.items():
            sums[key] = sums.get(key, 0.0) + v.detach().float() / accum
    norm = None
    if cfg.max_grad_norm > 0:
        norm = acc.clip_grad_norm_(ctx.params, cfg.max_grad_norm)
    keys = sorted(sums)
    values = acc.reduce(torch.stack([sums[key] for key in keys]), reduction="mean")
    terms = {key: float(v) for key, v in zip(keys, values.tolist(), strict=True)}
    bad = [k for k in keys if not math.isfinite(terms[k])]
    if bad:  # the reduced terms: the same on every process
        raise NonFiniteStep(f"the loss is not finite ({', '.join(f'{k} {terms[k]}' for k in bad)})")
    grads = [p.grad for p in ctx.params if p.grad is not None]
    finite = _all_finite(grads) and (norm is None or bool(torch.isfinite(_local(norm)).all()))
    if _any_process(acc, not finite):
        raise NonFiniteStep("a gradient is not finite")
    lr = opt.param_groups[0]["lr"]
    try:
        opt.step()
    except RuntimeError as e:  # torch's AdamW: lr / bias correction beyond float32
        if "overflow" not in str(e):
            raise
        raise NonFiniteStep(f"the update is not finite in float32 (learning rate {lr})") from e
    ctx.sched.step()
    opt.zero_grad(set_to_none=True)
    if _any_process(acc, not _all_finite(ctx.params)):
        raise NonFiniteStep(f"a LoRA weight is not finite after the update (learning rate {lr})")
    return {**terms, "lr": lr}


def _local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of a (possibly FSDP-sharded) tensor."""
    return t.to_local() if hasattr(t, "to_local") else t


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` (this process's shards) is finite (one sync)."""
    if not tensors:
        return True
    with torch.no_grad():
        return bool(torch.stack([torch.isfinite(_local(t)).all() for t in tensors]).all())


def _any_process(acc: Any, flag: bool) -> bool:
    """True when ``flag`` is set on any process (all stop together)."""
    if acc.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=acc.device)
    return bool(acc.reduce(t, reduction="sum").item() > 0)


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", disable=not enabled, mininterval=1)
