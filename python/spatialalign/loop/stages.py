"""One round's stages, each the library function behind its own verb.

Resume is the stages' own: ``sample`` and ``track`` skip every item whose provenance is
unchanged, ``score-batch`` and ``pairs`` are cheap and deterministic (equal inputs write
equal files), ``train`` continues from its latest checkpoint (and refuses when its pairs or
configuration changed), the merge skips an equal merge and ``eval`` reuses its run
directory. So a killed loop rerun redoes nothing it finished and restarts in the stage it
was in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.presets import scoring_config
from spatialalign.loop.config import LoopConfig
from spatialalign.models.backends import BackendConfig
from spatialalign.models.registry import is_toy
from spatialalign.parallel.workers import Workers
from spatialalign.prompts.splits import model_split
from spatialalign.rundir.layout import RunDir
from spatialalign.training.config import TrainConfig

if TYPE_CHECKING:
    from spatialalign.detection.spec import TrackSpec

Echo = Callable[[str], None]


def backend_config(
    cfg: LoopConfig, model_dir: str | os.PathLike[str] | None, adapter: Path | None
) -> BackendConfig:
    """The sampling back end of a model (and adapter) with the loop's sampler settings."""
    return replace(
        cfg.backend,
        model_path=None if model_dir is None else str(model_dir),
        adapter=None if adapter is None else str(adapter),
    )


# ------------------------------------------------------------------ prompts
def train_prompts(cfg: LoopConfig) -> list[DSRPrompt]:
    """The first ``train_prompts`` TRAIN prompts of the model's split's draw
    (:func:`~spatialalign.prompts.splits.model_split`: the toy split, the hard split for
    ``toy-hard``; at least its TRAIN prompts drawn, beside its 120 TEST ones, so seed 0 gives
    ``toy evaluate``'s TRAIN split, disjoint from ``toy-test`` / ``toy-hard-test``)."""
    base = model_split(cfg.backend.model)
    n_train = max(cfg.train_prompts, base.n_train)
    split = replace(base, n_train=n_train, seed=cfg.prompt_seed)
    return split.prompts("train")[: cfg.train_prompts]


def ensure_prompts(holder: RunDir, prompts: list[DSRPrompt]) -> Path:
    """Writes the TRAIN prompts once (:meth:`RunDir.write_prompts` of the loop directory's
    :attr:`~spatialalign.loop.layout.LoopDir.prompts_run`); an existing file must hold
    exactly them."""
    path = holder.prompts_path
    if path.is_file():
        have = [(p.prompt_id, p.text) for p in holder.read_prompts()]
        if have != [(p.prompt_id, p.text) for p in prompts]:
            raise SpatialAlignError(f"{path} holds other prompts than this loop's settings")
        return path
    return holder.write_prompts(prompts)


# ------------------------------------------------------------------ sample, track, score
def sample(
    run: RunDir,
    backend: BackendConfig,
    prompts: Path,
    cfg: LoopConfig,
    k: int,
    workers: Workers,
    progress: bool,
):
    """``sample``: every TRAIN prompt x round ``k``'s TRAIN seeds (fresh each round:
    :meth:`LoopConfig.train_seeds`) with the model of round ``k-1``."""
    from spatialalign.sampling.run import sample_on_workers

    run.root.mkdir(parents=True, exist_ok=True)
    seeds = cfg.train_seeds(k)
    return sample_on_workers(
        run.root,
        backend,
        workers,
        prompts_file=prompts,
        split="train",
        seeds=len(seeds),
        first_seed=seeds[0],
        batch_size=cfg.batch_size,
        progress=progress,
    )


def track_spec(cfg: LoopConfig) -> TrackSpec:
    """How the loop tracks (as ``eval`` does with the same detector settings and model: the
    model's preset)."""
    from spatialalign.detection.spec import TrackSpec

    return TrackSpec(cfg.detection, device=cfg.backend.device).for_model(cfg.backend.model)


def track(run: RunDir, cfg: LoopConfig, workers: Workers, progress: bool):
    """``track``: detect, judge and track every sampled video."""
    from spatialalign.detection.sharded import track_on_workers

    summary = track_on_workers(run.root, track_spec(cfg), workers, progress=progress)
    if not summary.merged:
        raise SpatialAlignError(f"{run.root}: track did not merge its tables")
    return summary


def score(run: RunDir, cfg: LoopConfig):
    """``score-batch``: DSR-Score per video, summary.json."""
    from spatialalign.scoring.batch import score_run

    preset = track_spec(cfg).preset_name  # the preset track used, as eval chooses it
    return score_run(run.root, config=scoring_config(preset), preset=preset, progress=False)


def pairs(run: RunDir, cfg: LoopConfig):
    """``pairs``: winners (DSR >= tau) and losers per prompt, at most N per prompt."""
    from spatialalign.pairs.build import PairConfig
    from spatialalign.pairs.run import pair_run

    pair_cfg = PairConfig(
        tau=cfg.tau,
        max_per_prompt=cfg.max_pairs_per_prompt,
        seed=cfg.pair_seed,
        invalid_losers=cfg.invalid_losers,
    )
    return pair_run(run.root, pair_cfg)


# ------------------------------------------------------------------ train
def check_train_settings(cfg: LoopConfig) -> None:
    """What train would refuse only after a round of sampling, refused at the start: a
    LoRA rank above the smallest targeted layer of the toy model (a Wan model is checked by
    ``train`` itself, before it encodes anything: loading it here would cost minutes)."""
    if not is_toy(cfg.backend.model):
        return
    from spatialalign.training.run import load_model
    from spatialalign.training.trainer import check_rank

    check_rank(
        load_model(cfg.backend.model, cfg.backend.model_path, "cpu").transformer,
        cfg.train.lora_rank,
    )


def seed_adapter(
    run: RunDir, cfg: LoopConfig, train_cfg: TrainConfig, adapter: Path
) -> Path | None:
    """``--continue-adapter``: writes a step-0 checkpoint into ``RUN/run/`` holding
    ``adapter``'s LoRA weights (fresh optimizer and schedule), so ``train`` resumes from it:
    the previous round's adapter keeps training on the starting model. None (nothing
    written) when the run already has checkpoints."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from spatialalign.lora.adapter import resolve_adapter
    from spatialalign.training.run import load_model
    from spatialalign.training.trainer import make_optimizer, prepare_transformer, save_checkpoint

    out = run.train_dir
    if run.train.checkpoint_paths():
        return None
    transformer = load_model(cfg.backend.model, cfg.backend.model_path, "cpu").transformer
    with torch.random.fork_rng(devices=[]):
        params = prepare_transformer(transformer, train_cfg)
    state = load_file(str(resolve_adapter(adapter)))
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    result = set_peft_model_state_dict(transformer, state)
    if getattr(result, "unexpected_keys", None):
        raise SpatialAlignError(f"{adapter} does not fit a rank-{train_cfg.lora_rank} adapter")
    opt, sched = make_optimizer(params, train_cfg)
    return save_checkpoint(out, transformer, opt, sched, 0, train_cfg.keep_checkpoints)


def train(
    run: RunDir,
    cfg: LoopConfig,
    train_cfg: TrainConfig,
    model_dir: str | os.PathLike[str] | None,
    progress: bool,
):
    """``train``: a LoRA on the run's pairs into ``RUN/run`` (reference: the model with the
    adapter disabled); continues from the run's latest checkpoint when it has one."""
    from dataclasses import replace

    from spatialalign.training.run import train_run

    resume = bool(run.train.checkpoint_paths())
    return train_run(
        run.root,
        replace(train_cfg, resume=resume),
        model=cfg.backend.model,
        model_path=None if model_dir is None else str(model_dir),
        progress=progress,
    )


# ------------------------------------------------------------------ eval
def eval_split(cfg: LoopConfig) -> str:
    """Which prompts of ``--test-prompts`` the loop evaluates: ``toy-test`` /
    ``toy-hard-test`` is a generated TEST split; a file's ``test`` split, or the whole file when no prompt of it names a split
    (the official CSV). A file with splits but no ``test`` one is refused: evaluating its
    other prompts (the TRAIN ones, say) would measure what the loop trains on."""
    from spatialalign.core.dsr.files import read_prompts
    from spatialalign.evaluation.eval_prompts import AUTO_SPLIT, is_toy_test

    if is_toy_test(cfg.test_prompts):
        return AUTO_SPLIT
    path = Path(cfg.test_prompts)
    if not path.is_file():
        raise SpatialAlignError(f"--test-prompts: prompts file not found: {path}")
    splits = {p.split for p in read_prompts(path)}
    if "test" in splits:
        return "test"
    if splits <= {""}:
        return "all"
    raise SpatialAlignError(
        f"--test-prompts {path} has no test split (its splits: {', '.join(sorted(splits))}): "
        "mark the evaluation prompts split=test, or use toy-test[:N] / toy-hard-test[:N]"
    )


def evaluate(
    run: RunDir,
    cfg: LoopConfig,
    backend: BackendConfig,
    workers: Workers,
    echo: Echo,
    progress: bool,
):
    """``eval``: the TEST prompts x eval seeds (``first_seed..first_seed+eval_seeds-1``) with
    the round's model."""
    from spatialalign.evaluation.eval_run import EvalRunConfig, eval_run

    eval_cfg = EvalRunConfig(
        backend=backend,
        prompts=cfg.test_prompts,
        split=eval_split(cfg),
        seeds=cfg.eval_seeds,
        first_seed=cfg.first_seed,
        batch_size=cfg.batch_size,
        detection=cfg.detection,
        progress=progress,
    )
    return eval_run(run.root, eval_cfg, echo=echo, workers=workers)
