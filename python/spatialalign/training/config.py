"""``TrainConfig``: everything a training run can be told, documented once.

The ``spatialalign train`` options are derived from these fields
(:func:`spatialalign.core.options.click_options`); defaults are DESIGN.md's loss with the toy
model's tuned run. A **recipe** (:data:`RECIPES`) is a named set of field values:
``official`` is the official release's Wan2.1 run (DESIGN.md, "The official run"), the
default of ``train --model wan``; ``toy`` is the fields' defaults, the default of ``train
--model toy`` and of ``loop``. Options given explicitly override the recipe's values
(:func:`resolve_recipe`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from spatialalign.core.options import check_finite, document_fields
from spatialalign.models.registry import MODELS, is_toy

LossVariant = Literal["dpo+zo", "dpo", "dpo+sft", "sft", "rwr"]
TimestepSampling = Literal["uniform", "shift", "logit-normal", "official-grid"]
PairSampling = Literal["pairs", "prompt-uniform"]


def _f(default: Any, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


@document_fields
@dataclass
class TrainConfig:
    """Configuration of a LoRA training run (DPO with zeroth-order regularisation)."""

    # the objective
    loss: LossVariant = _f(
        "dpo+zo",
        "Loss variant: dpo+zo (DPO + zeroth-order regulariser), dpo, dpo+sft (DPO + flow "
        "matching on the winners), sft (flow matching on the top-k samples by DSR per "
        "prompt), rwr (reward-weighted flow matching, reward = DSR).",
    )
    beta: float = _f(1.0, "DPO temperature beta: the logit is beta * (score_w - score_l).")
    margin_clip: float = _f(5.0, "The DPO logit is clipped to [-margin_clip, margin_clip].")
    lambda_zo: float = _f(0.25, "Weight of the zeroth-order regulariser (dpo+zo).")
    lambda_sft: float = _f(1.0, "Weight of the winners' flow-matching term (dpo+sft).")
    sft_top_k: int = _f(2, "sft: the k samples with the highest DSR per prompt train.")
    rwr_temperature: float = _f(
        0.2, "rwr: samples weigh softmax(DSR / temperature) within a batch (mean 1)."
    )
    # optimisation
    learning_rate: float = _f(1e-4, "AdamW peak learning rate.")
    lr_scheduler: str = _f(
        "cosine",
        "diffusers learning-rate schedule after warm-up (cosine, linear, constant, "
        "constant_with_warmup, ...).",
    )
    lr_warmup_steps: int = _f(300, "Linear warm-up steps (from 0 to the peak rate).")
    lr_schedule_steps: int | None = _f(
        None,
        "Horizon of the schedule after warm-up (cosine: the step where it reaches 0); may lie "
        "beyond max_steps (the official run: cosine to 3000, stopped at 2400). None: max_steps.",
    )
    max_steps: int = _f(
        1000,
        "Optimizer steps of the run (toy: 1000 steps of 16 pairs at the other defaults took "
        "Correctness@0.7 from 0.487 to 0.872 at validness 0.905).",
    )
    weight_decay: float = _f(0.0, "AdamW weight decay on the LoRA weights.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    max_grad_norm: float = _f(1.0, "Gradient-norm clip (0: no clipping).")
    # batches
    train_batch_size: int = _f(
        16, "Pairs (or samples, for sft/rwr) per forward on each process (micro-batch)."
    )
    gradient_accumulation_steps: int = _f(
        1,
        "Micro-batches per optimizer step on each process (ignored with global_batch_size; "
        "given explicitly, it drops a recipe's global batch).",
    )
    global_batch_size: int | None = _f(
        None,
        "Pairs per optimizer step over all processes (the paper: 48); sets the gradient "
        "accumulation to global / (train_batch_size x processes), which must divide.",
    )
    pair_sampling: PairSampling = _f(
        "pairs",
        "Which pair each draw trains on: pairs (the listed pairs, each once per epoch in a "
        "seeded order) or prompt-uniform (a uniformly random prompt, then a uniformly random "
        "pair of it, fresh at every draw: the official run; sft/rwr: a sample of it).",
    )
    # the adapter
    lora_rank: int = _f(16, "LoRA rank on the DESIGN.md targets.")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale = alpha / rank).")
    # noise
    timestep_sampling: TimestepSampling = _f(
        "shift",
        "How noise levels are drawn: uniform, shift (uniform then shifted like the sampling "
        "schedule), logit-normal, or official-grid (an index uniform on the official "
        "trainer's 1000-point grid, shifted by timestep_shift); one level shared by a pair's "
        "winner and loser.",
    )
    timestep_shift: float = _f(
        3.0, "Shift of the 'shift' and 'official-grid' sampling (Wan's sampler: 3; official: 5)."
    )
    logit_mean: float = _f(0.0, "Mean of the 'logit-normal' timestep sampling.")
    logit_std: float = _f(1.0, "Standard deviation of the 'logit-normal' timestep sampling.")
    shared_noise: bool = _f(False, "Winner and loser of a pair get the same noise, too.")
    # run control
    seed: int = _f(0, "Seed of the adapter's initialisation, data order, noise and levels.")
    checkpoint_every: int = _f(100, "Save a resumable checkpoint every N steps (0: only at end).")
    keep_checkpoints: int = _f(
        2, "Keep the latest N checkpoints (and those keep_checkpoint_every keeps)."
    )
    keep_checkpoint_every: int = _f(
        0,
        "Also keep for good every checkpoint whose step is a multiple of K (0: none), so that "
        "`export-adapter --step` can write its LoRA later.",
    )
    save_adapter_steps: str = _f(
        "",
        "Comma-separated steps (e.g. 1200,2400) whose LoRA is also written during training, "
        "to run/adapters/step-NNNNNNN/pytorch_lora_weights.safetensors.",
    )
    log_every: int = _f(1, "Write the logged terms every N steps (JSONL, TensorBoard).")
    mixed_precision: Literal["auto", "no", "bf16"] = _f(
        "auto",
        "bf16 autocast for the forward passes; auto = bf16 on a GPU, full precision on the "
        "CPU. Trainable (LoRA) weights always stay float32.",
    )
    gradient_checkpointing: bool = _f(
        False,
        "Recompute activations in the backward pass (less memory, one more forward per "
        "block). train() does what this says; `spatialalign train`/`loop` (train_run) turn "
        "it on for --model wan also when False (off only with `train "
        "--no-gradient-checkpointing`), toy: as set.",
    )
    distributed: Literal["ddp", "fsdp"] = _f(
        "ddp",
        "How several processes (accelerate launch / torchrun) share the transformer: ddp "
        "(a whole copy each, LoRA gradients all-reduced) or fsdp (FSDP2 per transformer "
        "block: weights, gradients and optimizer state sharded; for models too large to "
        "copy). One process: ignored. Checkpoints are the same either way.",
    )
    resume: bool = _f(False, "Continue from the latest checkpoint in the run directory.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first field out of range; every float must be
        finite (a NaN or infinite rate, shift or weight trains a NaN adapter)."""
        check_finite(self)
        positive = ("max_steps", "train_batch_size", "gradient_accumulation_steps", "lora_rank")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_schedule_steps is not None and self.lr_schedule_steps < self.max_steps:
            raise ValueError(
                f"lr_schedule_steps must be >= max_steps ({self.max_steps}), got "
                f"{self.lr_schedule_steps} (a cosine past its horizon climbs again)"
            )
        positive = ("beta", "margin_clip", "rwr_temperature", "learning_rate", "lora_alpha",
                    "timestep_shift", "logit_std")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("lambda_zo", "lambda_sft", "lr_warmup_steps", "checkpoint_every",
                        "keep_checkpoint_every", "weight_decay", "max_grad_norm")  # fmt: skip
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.sft_top_k < 1:
            raise ValueError(f"sft_top_k must be >= 1, got {self.sft_top_k}")
        if self.distributed not in ("ddp", "fsdp"):
            raise ValueError(f"distributed must be ddp or fsdp, got {self.distributed!r}")
        for name, kind in (
            ("timestep_sampling", TimestepSampling),
            ("pair_sampling", PairSampling),
        ):
            if getattr(self, name) not in get_args(kind):
                choices = ", ".join(get_args(kind))
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for step in self.adapter_steps():
            if step > self.max_steps:
                raise ValueError(
                    f"save_adapter_steps: step {step} is beyond max_steps ({self.max_steps})"
                )
        if self.log_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("log_every and keep_checkpoints must be >= 1")

    def adapter_steps(self) -> tuple[int, ...]:
        """The steps of ``save_adapter_steps``, sorted; ``ValueError`` on a bad entry."""
        steps = set()
        for part in self.save_adapter_steps.split(","):
            if not part.strip():
                continue
            try:
                step = int(part)
            except ValueError:
                step = 0
            if step < 1:
                raise ValueError(
                    f"save_adapter_steps must be comma-separated steps >= 1, got "
                    f"{self.save_adapter_steps!r}"
                )
            steps.add(step)
        return tuple(sorted(steps))

    def schedule_steps(self) -> int:
        """The learning-rate schedule's horizon: ``lr_schedule_steps``, else ``max_steps``."""
        return self.max_steps if self.lr_schedule_steps is None else self.lr_schedule_steps

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """The config of recipe ``name`` (:data:`RECIPES`) with ``overrides`` on top."""
        return cls(**{**recipe_values(name), **overrides})

    def accumulation_steps(self, num_processes: int) -> int:
        """Micro-batches per optimizer step on each of ``num_processes``."""
        if self.global_batch_size is None:
            return self.gradient_accumulation_steps
        per_round = self.train_batch_size * num_processes
        if self.global_batch_size % per_round:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"train_batch_size x processes = {per_round}"
            )
        return self.global_batch_size // per_round

    def global_batch(self, num_processes: int) -> int:
        """Pairs (or samples) per optimizer step over all ``num_processes``."""
        return self.train_batch_size * num_processes * self.accumulation_steps(num_processes)


# --------------------------------------------------------------------------- recipes
RECIPES: dict[str, dict[str, Any]] = {
    "toy": {
        "learning_rate": 1e-4,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 300,
        "lr_schedule_steps": None,
        "max_steps": 1000,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "train_batch_size": 16,
        "global_batch_size": None,
        "pair_sampling": "pairs",
        "timestep_sampling": "shift",
        "timestep_shift": 3.0,
        "checkpoint_every": 100,
        "keep_checkpoint_every": 0,
    },
    "official": {
        "learning_rate": 1e-4,
        "lr_scheduler": "cosine",
        "lr_warmup_steps": 300,
        "lr_schedule_steps": 3000,
        "max_steps": 2400,
        "weight_decay": 0.01,
        "max_grad_norm": 0.0,
        "train_batch_size": 1,
        "global_batch_size": 48,
        "pair_sampling": "prompt-uniform",
        "timestep_sampling": "official-grid",
        "timestep_shift": 5.0,
        "checkpoint_every": 100,
        "keep_checkpoint_every": 100,
    },
}
"""Named sets of :class:`TrainConfig` values; every other field keeps its default.

``toy``: the fields' defaults, tuned on the shipped toy model (docs/RESULTS.md): 1000 steps of
16 listed pairs (``pairs --max-per-prompt 6``), noise levels shifted by 3 like Wan's sampler,
gradients clipped at 1. ``official``: the official release's Wan2.1 run (``train.py`` /
``run_train.sh`` at 4ad52fa; DESIGN.md, "The official run"): an index uniform on the
1000-point grid with shift 5, a random prompt then a random pair of it at every draw, 1 pair a
micro-batch and 48 a step, AdamW weight decay 0.01, no clipping, warm-up 300 then cosine to 0
at 3000 stopped at 2400 (the released LoRA), a checkpoint every 100 steps, all kept. Both use
DESIGN.md's loss (beta 1, clip 5, lambda_ZO 0.25), LoRA rank/alpha 16 and AdamW betas
0.9/0.999; precision (bf16 autocast on a GPU, fp32 LoRA) and gradient checkpointing (on for
Wan) follow the model, as in the release."""

RECIPE_FOR_MODEL: dict[str, str] = {
    m: "toy" if is_toy(m) else "official" for m in sorted(MODELS, key=is_toy)
}
"""The recipe ``train --model M`` uses unless ``--recipe`` says otherwise: ``toy`` for every
toy-family model (:func:`spatialalign.models.registry.is_toy`), ``official`` for Wan."""

ADDED_FIELDS: dict[str, Any] = {
    "pair_sampling": "pairs",
    "lr_schedule_steps": None,
    "keep_checkpoint_every": 0,
    "save_adapter_steps": "",
}
"""Fields added after runs were recorded, with the value that reproduces what such a run
did: a ``train_config.json`` without them is read with these (resume, reuse)."""


def recipe_values(name: str) -> dict[str, Any]:
    """The field values of recipe ``name``; ``ValueError`` naming the recipes otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r} (one of {', '.join(RECIPES)})")
    return dict(RECIPES[name])


def default_recipe(model: str) -> str:
    """The recipe ``train --model model`` uses by default (:data:`RECIPE_FOR_MODEL`)."""
    return RECIPE_FOR_MODEL.get(model, "toy")


def resolve_recipe(name: str, options: dict[str, Any], explicit: set[str]) -> TrainConfig:
    """The config of recipe ``name`` under parsed options: a field given explicitly
    (``explicit``: its name) keeps the option's value, every other recipe field takes the
    recipe's, the rest the option's (its default). An explicit ``gradient_accumulation_steps``
    without an explicit ``global_batch_size`` drops the recipe's global batch (else it would
    be ignored)."""
    values = recipe_values(name)
    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in options.items() if k in names}
    kw.update({k: v for k, v in values.items() if k not in explicit})
    if "gradient_accumulation_steps" in explicit and "global_batch_size" not in explicit:
        kw["global_batch_size"] = None
    return TrainConfig(**kw)


def recipe_record(name: str, cfg: TrainConfig) -> dict[str, Any]:
    """What ``train_config.json`` records of the recipe: its name, its values, and the
    values of ``cfg`` that differ from them (overridden by explicit options)."""
    values = recipe_values(name)
    got = cfg.to_dict()
    overridden = {k: got[k] for k, v in values.items() if got[k] != v}
    return {"name": name, "values": values, "overridden": overridden}


def describe_recipes() -> str:
    """One line per recipe: its name and values (``train --help``)."""
    return "; ".join(
        f"{name}: " + ", ".join(f"{k}={_show(v)}" for k, v in values.items())
        for name, values in RECIPES.items()
    )


def recipe_default_text(name: str) -> str | None:
    """How ``--help`` shows the default of a field the recipes set (None for others)."""
    if not any(name in values for values in RECIPES.values()):
        return None
    return "recipe " + ", ".join(
        f"{recipe} {_show(values.get(name, _default(name)))}" for recipe, values in RECIPES.items()
    )


def _default(name: str) -> Any:
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _show(value: Any) -> str:
    return "none" if value is None else str(value)
