"""``RLConfig``: everything an online GRPO run can be told, documented once.

The ``spatialalign rl`` options are derived from these fields
(:func:`spatialalign.core.options.click_options`). The defaults are for the shipped toy model
(20 Euler steps, guidance 3) on 2 CPU cores: 32 prompts x 4 videos an iteration (every
video of a group trains: the top-k filter's 2 + 2 of 4 keeps all; groups whose rewards
spread by less than 0.05 dropped), the first 7 of the 20 denoising steps of each kept
trajectory trained, four AdamW steps an iteration at 3e-3 decaying to 0 (cosine) over 93
iterations (11,904 videos, within the loop's 12,000): the run of docs/RESULTS.md's headline
row (16 prompts x 8 videos reached 0.817 where 32 x 4 reach 0.962; the constant rate
collapsed). ``--model wan`` takes the same fields (its sampler steps and guidance come from
``--steps``/``--guidance``, Wan's defaults otherwise); they were not tuned there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from spatialalign.core.options import check_finite, document_fields

RESUME_FREE: tuple[str, ...] = (
    "iterations",
    "keep_checkpoints",
    "log_every",
    "keep_videos",
)
"""Fields a rerun may change and still continue the run (everything else must match: the
same iterations would otherwise mean other samples or another update)."""


def _f(default: Any, help_: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help_, **meta})


@document_fields
@dataclass
class RLConfig:
    """Configuration of an online GRPO run (SDE sampling, DSR-Score reward, clipped policy
    ratio with a KL term to the adapter-free model)."""

    # the schedule of iterations
    iterations: int = _f(
        93,
        "Iterations (sample -> score -> update). With the defaults an iteration samples "
        "prompts_per_iteration x group_size = 128 videos (11,904 in all).",
    )
    prompts_per_iteration: int = _f(
        32,
        "TRAIN prompts sampled each iteration (an epoch-wise seeded permutation of the "
        "prompts: every prompt once before any twice).",
    )
    group_size: int = _f(
        4,
        "Videos per prompt and iteration (the group of GRPO). For the same videos an "
        "iteration, smaller groups over more prompts learned faster on the toy (4 x 32: "
        "Correctness@0.7 0.928 at 7,680 videos, 8 x 16: 0.817).",
    )
    first_seed: int = _f(
        100_000,
        "Seed of the first sampled video; video n of the run (counted over iterations) has "
        "seed first_seed + n, so no seed repeats (and none of eval's 0-4 by default).",
    )
    # the SDE sampler
    noise_level: float = _f(
        0.7,
        "Noise of the SDE sampler (Flow-GRPO's eta): each Euler step of the flow ODE becomes a "
        "Gaussian with std eta*sqrt(s/(1-s))*sqrt(-ds); 0 is the ODE itself (training needs "
        "> 0: the log-probability of a deterministic step is undefined).",
    )
    sample_batch_size: int = _f(64, "Videos per batch of the sampler.")
    # the reward
    invalid_reward: float = _f(
        0.0,
        "Reward of a video the detector rejects (invalid: no DSR-Score); valid videos get "
        "their DSR-Score in [0, 1], so the default rewards validness too.",
    )
    normalize_per_prompt: bool = _f(
        True,
        "Divide each group's advantages (reward - group mean) by the group's reward std; "
        "off: group mean subtracted only (Dr. GRPO).",
    )
    top_k: int = _f(
        2,
        "Top-k filter: of each group keep the k highest- and the k lowest-reward videos "
        "(ties: the lower index first), 0 (or 2k >= group_size): keep all; groups whose "
        "rewards are all equal (std <= min_group_std) are dropped whole.",
    )
    min_group_std: float = _f(
        0.05,
        "A group whose reward std is at most this carries no ranking (all invalid, all "
        "scored alike): dropped, not trained. Per-prompt normalisation would blow a "
        "saturated group's DSR differences of 0.01 up to advantages of +-1 (noise trained "
        "as signal: on the toy, 12 of 16 groups at the peak before the constant-rate run "
        "collapsed); 1e-6 drops only exactly equal groups.",
    )
    advantage_clip: float = _f(5.0, "Advantages are clipped to [-advantage_clip, advantage_clip].")
    # the update
    train_steps: int = _f(
        0,
        "Denoising steps trained per kept trajectory, drawn at random (seeded) each iteration "
        "from the first train_step_fraction of the sampler's steps (0: all of those).",
    )
    train_step_fraction: float = _f(
        0.35,
        "Only the first fraction of the denoising steps trains (Flow-GRPO's timestep_fraction): "
        "the layout, hence the DSR, is decided early, and the late, low-noise steps' "
        "log-probability gradients (scaled by 1/std) are large and carry little of the reward "
        "(measured on the toy: docs/DESIGN_NOTES.md).",
    )
    updates_per_iteration: int = _f(
        4,
        "AdamW steps per iteration: the kept (trajectory, step) items, shuffled, split into "
        "this many mini-batches (the policy ratio departs from 1 from the second on).",
    )
    train_batch_size: int = _f(32, "(trajectory, step) items per forward (micro-batch).")
    clip_range: float = _f(
        1e-3,
        "PPO clip: the ratio of the new to the sampling policy's per-element mean "
        "log-probability is clipped to [1 - clip_range, 1 + clip_range].",
    )
    kl_coef: float = _f(
        0.01,
        "Weight of the KL term to the reference (the same transformer with the adapter "
        "disabled): mean squared difference of the step means over 2 std^2.",
    )
    learning_rate: float = _f(
        3e-3,
        "AdamW peak learning rate (after warm-up; see lr_schedule). High for a LoRA, as few AdamW steps "
        "see the iterations' noisy policy gradients (toy: 1e-4 and 1e-3 moved nothing in 15 "
        "iterations, 3e-3 did; the KL to the reference stayed ~0.003).",
    )
    lr_schedule: Literal["constant", "cosine"] = _f(
        "cosine",
        "Learning rate after warm-up: constant, or cosine decay to 0 at the last iteration "
        "(diffusers' schedules; cosine makes ``iterations`` part of the run's settings).",
    )
    lr_warmup_steps: int = _f(0, "Linear warm-up, in AdamW steps.")
    weight_decay: float = _f(0.0, "AdamW weight decay on the LoRA weights.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    max_grad_norm: float = _f(1.0, "Gradient-norm clip (0: no clipping).")
    # the adapter (train's targets and format)
    lora_rank: int = _f(16, "LoRA rank on the DESIGN.md targets (as train).")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale = alpha / rank).")
    # run control
    seed: int = _f(0, "Seed of the adapter's initialisation, prompt order and step subsets.")
    keep_checkpoints: int = _f(2, "Keep the latest N checkpoints (one per iteration).")
    keep_videos: bool = _f(
        False,
        "Also write each iteration's videos to rl/iter-NNNNNNN/ (lossless mp4, named by "
        "sample id) for inspection.",
    )
    log_every: int = _f(1, "Write the logged terms every N iterations (JSONL, TensorBoard).")
    mixed_precision: Literal["auto", "no", "bf16"] = _f(
        "auto",
        "bf16 autocast for the forward passes; auto = bf16 on a GPU, full precision on the "
        "CPU. The LoRA weights stay float32.",
    )
    gradient_checkpointing: bool | None = _f(
        None,
        "Recompute activations in the backward pass [None: on for wan, off for toy].",
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def videos_per_iteration(self) -> int:
        return self.prompts_per_iteration * self.group_size

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first field out of range (every float finite)."""
        check_finite(self)
        at_least_one = ("iterations", "prompts_per_iteration", "sample_batch_size",
                        "updates_per_iteration", "train_batch_size", "lora_rank",
                        "keep_checkpoints", "log_every")  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (a group ranks videos), got {self.group_size}"
            )
        for name in ("noise_level", "clip_range", "learning_rate", "lora_alpha", "advantage_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("top_k", "train_steps", "min_group_std", "kl_coef", "lr_warmup_steps",
                        "weight_decay", "max_grad_norm", "first_seed")  # fmt: skip
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.train_step_fraction <= 1:
            raise ValueError(
                f"train_step_fraction must be in (0, 1], got {self.train_step_fraction}"
            )
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError(
                f"mixed_precision must be auto, no or bf16, got {self.mixed_precision!r}"
            )

    def total_updates(self) -> int:
        """AdamW steps of the whole run (the cosine schedule's length)."""
        return self.iterations * self.updates_per_iteration

    def resume_free(self) -> tuple[str, ...]:
        """The fields a rerun may change (:data:`RESUME_FREE`, less ``iterations`` under a
        decaying schedule: more iterations would mean another learning rate at each)."""
        if self.lr_schedule == "constant":
            return RESUME_FREE
        return tuple(f for f in RESUME_FREE if f != "iterations")

    def kept_per_group(self) -> int:
        """Videos of a group the top-k filter keeps (all when ``top_k`` is 0 or too large)."""
        if self.top_k == 0 or 2 * self.top_k >= self.group_size:
            return self.group_size
        return 2 * self.top_k
