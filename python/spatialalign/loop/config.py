"""``LoopConfig``: everything ``spatialalign loop`` can be told, documented once.

The loop's own settings live here; each round's training settings are a
:class:`~spatialalign.training.config.TrainConfig` whose loop defaults
(:func:`loop_train_config`) are those of the issue's toy probe: 300 steps at a constant
1e-4, no warm-up.
The CLI options are derived from both dataclasses
(:func:`spatialalign.core.options.click_options`).

**Seeds.** The evaluation samples the TEST prompts with seeds ``S..S+E-1`` (``--first-seed
S``, ``--eval-seeds E``; by default the paper's 0-4) every round. Round ``k``'s TRAIN videos
come from fresh seeds: ``B + 1000*(k-1) .. B + 1000*(k-1) + N-1`` (``--seeds N`` <= 1000),
where ``B`` is the first multiple of 1000 above the last evaluation seed (1000 by default,
so round k samples ``1000*k ..``). No round reuses an earlier round's noises (reused ones
keep redrawing the same losers) and none uses an evaluation noise
(:meth:`LoopConfig.train_seeds`; ``loop.json`` lists them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import check_finite, document_fields
from spatialalign.detection.spec import DetectorSpec
from spatialalign.evaluation.eval_prompts import default_test_set
from spatialalign.models.backends import BackendConfig, check_config
from spatialalign.models.registry import check_model, is_toy
from spatialalign.parallel.workers import workers_field
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT, model_split
from spatialalign.sampling.batching import batch_size_field
from spatialalign.sampling.model_options import CLI_EXCLUDED
from spatialalign.sampling.seeds import MAX_SEEDS, SEED_LIMIT, check_seeds
from spatialalign.training.config import TrainConfig

MODES: tuple[str, ...] = ("merge", "continue")
LOOP_MAX_STEPS = 300
"""Optimizer steps per round (the issue's probe: 300 steps of a fresh LoRA per round)."""
LOOP_WARMUP_STEPS = 0
"""Warm-up per round: none (300 warm-up steps in a 300-step round never reach the peak)."""
LOOP_LR_SCHEDULER = "constant"
"""Learning rate per round: constant at the peak. Measured on the toy's round-1 pairs (686 pairs
of 117 TRAIN prompts, 300 steps at 1e-4): cosine from the peak gave Correctness@0.7 0.578,
constant 0.733 (validness 0.912 / 0.905)."""
TRAIN_SEED_BLOCK = 1000
"""Round k's TRAIN seeds fill the (k-1)-th block of this many seeds above the evaluation's."""
TRAIN_SEED_RULE = (
    "round k samples TRAIN seeds B+1000*(k-1) .. B+1000*(k-1)+seeds-1, B = the first "
    "multiple of 1000 above the last eval seed"
)
"""The rule, recorded in the settings: a loop directory made under another rule (before
fresh seeds, every round sampled seeds 0..seeds-1) is refused, not continued."""


def _f(default: Any, help_: str) -> Any:
    return field(default=default, metadata={"help": help_})


@document_fields
@dataclass
class LoopTrainDefaults(TrainConfig):
    """TrainConfig with the loop's per-round defaults (only for deriving CLI options)."""

    lr_scheduler: str = _f(LOOP_LR_SCHEDULER, "Learning-rate schedule of each round (diffusers).")
    lr_warmup_steps: int = _f(LOOP_WARMUP_STEPS, "Linear warm-up steps of each round.")
    max_steps: int = _f(LOOP_MAX_STEPS, "Optimizer steps of each round's training.")


def loop_train_config(**overrides: Any) -> TrainConfig:
    """A plain TrainConfig with the loop's defaults (and ``overrides``)."""
    names = {f.name for f in fields(TrainConfig)}
    base = {k: v for k, v in asdict(LoopTrainDefaults()).items() if k in names}
    return TrainConfig(**{**base, **overrides})


@document_fields
@dataclass
class LoopConfig:
    """Settings of a self-improvement loop (every round uses the same ones)."""

    rounds: int = _f(3, "Rounds of sample -> track -> score -> pairs -> train -> eval.")
    backend: BackendConfig = field(
        default_factory=BackendConfig,
        metadata={
            "help": "The starting model and the sampler settings of all sampling (as sample's).",
            "exclude": ("adapter", *CLI_EXCLUDED),
            "flags": {"model_path": ("--model-dir", "--model-path"), "steps": ("--sample-steps",)},
        },
    )
    mode: Literal["merge", "continue"] = _f(
        "merge",
        "merge: each round trains a fresh LoRA on the previous round's merged model (the "
        "reference) and fuses it into round_k/model; continue: one adapter on the starting "
        "model trained on across rounds (reference: the starting model).",
    )
    train_prompts: int | None = _f(
        None,
        "Generated TRAIN prompts, sampled every round [the model's split's: toy and wan "
        f"{TOY_SPLIT.n_train}, toy-hard {HARD_SPLIT.n_train}].",
    )
    prompt_seed: int = _f(
        TOY_SPLIT.seed, "Seed of the TRAIN prompt generator (0: toy evaluate's split)."
    )
    seeds: int = _f(
        8,
        "Samples per TRAIN prompt per round (at most 1000), from fresh seeds each round: round "
        "k samples 1000*k .. 1000*k+N-1 (with eval seeds below 1000; loop.json lists them).",
    )
    test_prompts: str | None = _f(
        None,
        "Evaluation prompts: toy-test[:N], toy-hard-test[:N] or a prompt file: its test split "
        "(a file whose prompts name no split, like the official CSV: all of them; a file with "
        "other splits only is refused) [toy-hard-test for toy-hard, else toy-test].",
    )
    eval_seeds: int = _f(
        5, "Evaluation seeds per TEST prompt: S..S+N-1 from --first-seed S (the paper's 0-4)."
    )
    first_seed: int = _f(
        0,
        "The evaluation's first seed (as eval --first-seed). TRAIN seeds start at the first "
        "multiple of 1000 above the last evaluation seed.",
    )
    batch_size: int | None = batch_size_field()
    tau: float = _f(0.7, "Pairs: valid samples with DSR >= tau win, the other valid ones lose.")
    max_pairs_per_prompt: int = _f(6, "Pairs: most pairs kept per prompt (seeded subset).")
    pair_seed: int = _f(0, "Pairs: seeds the kept subset.")
    invalid_losers: bool = _f(
        False,
        "Pairs (not the paper's): invalid samples also lose to the prompt's winners "
        "(`pairs --invalid-losers`).",
    )
    detection: DetectorSpec = field(
        default_factory=DetectorSpec, metadata={"help": "The detector (as track's and eval's)."}
    )
    workers: int | None = workers_field()
    train: TrainConfig = field(default_factory=loop_train_config, metadata={"help": "-"})

    def __post_init__(self) -> None:
        # the model's prompts where not told (recorded resolved, so loop.json of a toy loop
        # holds the 500 / toy-test it held before these followed the model)
        if self.train_prompts is None:
            self.train_prompts = model_split(self.backend.model).n_train
        if self.test_prompts is None:
            self.test_prompts = default_test_set(self.backend.model)

    def validate(self) -> None:
        """Raises :class:`SpatialAlignError` naming the first bad setting (one line)."""
        try:
            check_finite(self)
        except ValueError as e:
            raise SpatialAlignError(f"--{str(e).replace('_', '-')}") from e
        if self.rounds < 1:
            raise SpatialAlignError(f"--rounds must be >= 1, got {self.rounds}")
        check_model(self.backend.model)
        check_config(self.backend)
        if self.backend.adapter is not None:
            raise SpatialAlignError("the loop trains its own adapters: do not set one")
        if self.mode not in MODES:
            raise SpatialAlignError(f"unknown mode {self.mode!r} (merge or continue)")
        if not is_toy(self.backend.model) and self.mode == "merge":
            raise SpatialAlignError(
                "--merge is implemented for the toy model only (toy, toy-hard); use --continue-adapter"
            )
        for name in ("train_prompts", "seeds", "eval_seeds", "max_pairs_per_prompt"):
            if getattr(self, name) < 1:
                raise SpatialAlignError(f"--{name.replace('_', '-')} must be >= 1")
        if self.workers is not None and self.workers < 1:
            raise SpatialAlignError(f"--workers must be >= 1, got {self.workers}")
        if self.seeds < 2:
            raise SpatialAlignError("--seeds must be >= 2 (a pair needs two samples of a prompt)")
        if self.seeds > MAX_SEEDS:
            raise SpatialAlignError(f"--seeds must be at most {MAX_SEEDS}, got {self.seeds}")
        check_seeds(self.eval_seeds, self.first_seed, seeds_flag="--eval-seeds")
        last = self.train_seeds(self.rounds)[-1]
        if last >= SEED_LIMIT:
            raise SpatialAlignError(
                f"--rounds {self.rounds}: round {self.rounds}'s TRAIN seeds reach {last}; "
                f"seeds must stay below 2**31 = {SEED_LIMIT} (a lower --first-seed or fewer rounds)"
            )
        if not 0.0 <= self.tau <= 1.0:
            raise SpatialAlignError(f"--tau must be in [0, 1], got {self.tau}")
        self.detection.validate()
        if self.train.resume:
            raise SpatialAlignError("the loop resumes by itself: do not set resume")
        try:
            self.train.validate()
        except ValueError as e:
            raise SpatialAlignError(str(e)) from e

    def eval_seeds_range(self) -> range:
        """The evaluation's seeds (every round, TEST prompts)."""
        return range(self.first_seed, self.first_seed + self.eval_seeds)

    def train_seeds(self, k: int) -> range:
        """Round ``k``'s TRAIN seeds (``k >= 1``): block ``k-1`` of :data:`TRAIN_SEED_BLOCK`
        seeds above the evaluation's last seed, so disjoint from the evaluation's and from
        every other round's (``seeds`` <= the block)."""
        if k < 1:
            raise ValueError(f"round {k} samples no TRAIN videos")
        last_eval = self.first_seed + self.eval_seeds - 1
        base = TRAIN_SEED_BLOCK * (last_eval // TRAIN_SEED_BLOCK + 1)
        first = base + TRAIN_SEED_BLOCK * (k - 1)
        return range(first, first + self.seeds)

    def seeds_record(self) -> dict[str, Any]:
        """Which seeds the loop samples, for ``loop.json``: the evaluation's and each
        round's TRAIN seeds, as ``[first, last]``."""
        ev = self.eval_seeds_range()
        train = {str(k): self.train_seeds(k) for k in range(1, self.rounds + 1)}
        return {
            "eval": [ev[0], ev[-1]],
            "train": {k: [r[0], r[-1]] for k, r in train.items()},
            "rule": TRAIN_SEED_RULE,
        }

    def settings(self) -> dict[str, Any]:
        """Everything but ``rounds`` and ``workers``, as JSON (a rerun must match it; rounds
        may grow, and the worker count does not change results), and the TRAIN seed rule."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if name == "detection":  # flat, as before the spec: old loop.json files match
                out.update(value)
            elif name == "backend":
                out.update(backend_settings(self.backend))
            elif name not in ("rounds", "workers"):
                out[name] = value
        out["train_seed_rule"] = TRAIN_SEED_RULE
        return out


LOOP_BACKEND_NAMES = {"model_path": "model_dir", "steps": "sample_steps"}
"""The loop's names in ``loop.json`` for two back-end settings (its flags' names)."""
ALWAYS_RECORDED = ("model", "model_path", "steps", "guidance", "device")
"""Back-end settings ``loop.json`` always records (the loop's before it embedded the spec)."""


def backend_settings(backend: BackendConfig) -> dict[str, Any]:
    """The back end's settings for ``loop.json``: those the loop always recorded, under its
    names, and any other one only when set (so loop directories of the toy model made
    before the loop took every back-end option still match)."""
    defaults = BackendConfig()
    out: dict[str, Any] = {}
    for f in fields(BackendConfig):
        value = getattr(backend, f.name)
        if f.name in ALWAYS_RECORDED or value != getattr(defaults, f.name):
            out[LOOP_BACKEND_NAMES.get(f.name, f.name)] = value
    return out
