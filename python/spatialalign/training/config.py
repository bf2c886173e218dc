"""``TrainConfig``: everything a training run can be told, documented once.

The ``spatialalign train`` options are derived from these fields
(:func:`spatialalign.options.click_options`); defaults are DESIGN.md's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from spatialalign.options import check_finite, document_fields

LossVariant = Literal["dpo+zo", "dpo", "dpo+sft", "sft", "rwr"]


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
        1, "Micro-batches per optimizer step on each process (ignored with global_batch_size)."
    )
    global_batch_size: int | None = _f(
        None,
        "Pairs per optimizer step over all processes (the paper: 48); sets the gradient "
        "accumulation to global / (train_batch_size x processes), which must divide.",
    )
    # the adapter
    lora_rank: int = _f(16, "LoRA rank on the DESIGN.md targets.")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale = alpha / rank).")
    # noise
    timestep_sampling: Literal["uniform", "shift", "logit-normal"] = _f(
        "shift",
        "How noise levels are drawn: uniform, shift (uniform then shifted like the sampling "
        "schedule) or logit-normal; one level shared by a pair's winner and loser.",
    )
    timestep_shift: float = _f(3.0, "Shift of the 'shift' timestep sampling (Wan/toy: 3).")
    logit_mean: float = _f(0.0, "Mean of the 'logit-normal' timestep sampling.")
    logit_std: float = _f(1.0, "Standard deviation of the 'logit-normal' timestep sampling.")
    shared_noise: bool = _f(False, "Winner and loser of a pair get the same noise, too.")
    # run control
    seed: int = _f(0, "Seed of the adapter's initialisation, data order, noise and levels.")
    checkpoint_every: int = _f(100, "Save a resumable checkpoint every N steps (0: only at end).")
    keep_checkpoints: int = _f(2, "Keep the latest N checkpoints.")
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
        positive = ("beta", "margin_clip", "rwr_temperature", "learning_rate", "lora_alpha",
                    "timestep_shift", "logit_std")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("lambda_zo", "lambda_sft", "lr_warmup_steps", "checkpoint_every",
                        "weight_decay", "max_grad_norm")  # fmt: skip
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
        if self.log_every < 1 or self.keep_checkpoints < 1:
            raise ValueError("log_every and keep_checkpoints must be >= 1")

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
