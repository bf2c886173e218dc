"""The ``eval`` verb end to end: prompts -> sample -> track -> score-batch -> metrics.

Each stage is the library function behind its own verb (:func:`run_sample`,
:func:`track_run`, :func:`score_run`), so ``eval`` resumes and redoes exactly what those
stages would: a rerun with the same inputs samples and tracks nothing, rescoring is a
second, and ``metrics.parquet`` recomputes only rows whose video or tracks changed
(:mod:`.metrics_file`). Seeds are slots ``F..F+S-1`` (``--first-seed F``, ``--seeds S``;
by default the paper's 0-4).

``--best-of N`` (:mod:`.bestofn`) samples ``N`` candidates per slot into
``RUN/candidates/``, tracks and scores them there, keeps per slot the one with the
highest DSR-Score and then tracks and scores the kept videos in ``RUN`` like any run.

``summary.json`` is score-batch's plus ``metrics`` (the mean of every metrics column),
``sampling`` (videos sampled, wall seconds, the factor over one video per slot) and
``eval`` (what was evaluated); rerunning ``score-batch`` alone drops those keys.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import write_json, write_parquet
from spatialalign.core.presets import scoring_config
from spatialalign.core.provenance import fingerprint
from spatialalign.detection.spec import DetectorSpec, preset_for_model
from spatialalign.evaluation.bestofn import (
    check_best_of,
    select_best,
    selected_rows,
    write_selected_manifest,
)
from spatialalign.evaluation.cost import update_cost
from spatialalign.evaluation.eval_prompts import (
    AUTO_SPLIT,
    is_toy_test,
    prepare_prompts,
    toy_test_count,
)
from spatialalign.evaluation.metrics_file import MetricsResult, metric_means, write_metrics
from spatialalign.models.backends import BackendConfig, check_config
from spatialalign.models.registry import check_model, is_toy
from spatialalign.parallel.workers import Workers, preload_for, resolve_workers
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.sampler import SPLITS
from spatialalign.sampling.seeds import MAX_SEEDS, check_seeds

Echo = Callable[[str], None]


@dataclass
class EvalRunConfig:
    """Everything ``spatialalign eval`` can be told."""

    backend: BackendConfig = field(default_factory=BackendConfig)
    """The T2V model, adapter and sampler settings (as ``sample``'s options)."""
    prompts: str | None = None
    """A prompt file, ``toy-test[:N]`` / ``toy-hard-test[:N]``, or None for
    ``RUN/prompts.parquet``."""
    split: str = AUTO_SPLIT
    """Prompts of the file to evaluate: ``auto`` is ``test`` when the file has a test split,
    else all."""
    seeds: int = 5
    """Seed slots per prompt: seeds ``first_seed..first_seed+seeds-1``."""
    first_seed: int = 0
    """The first slot's seed (0: the paper's seeds 0-4)."""
    best_of: int = 1
    """Candidates per slot; 1 is a plain evaluation."""
    batch_size: int | None = None
    """Videos generated together (``sample``'s default when None)."""
    detection: DetectorSpec = field(default_factory=DetectorSpec)
    """The detector and its local weights (as ``track``'s)."""
    dinov2: str | None = None
    """Local DINOv2 directory: adds ID consistency."""
    clip: str | None = None
    """Local CLIP directory: adds CLIP-IQA "natural"."""
    musiq: str | None = None
    """Local MUSIQ SPAQ checkpoint (``.safetensors``, or ``.pth`` read with weights_only):
    adds VBench's imaging quality (needs the ``iqa`` extra)."""
    dino_image_size: int = 518
    """DINOv2 input side for the animal crops (the official 518)."""
    workers: int | None = None
    """Processes that share sampling and tracking (:mod:`spatialalign.parallel.workers`); None: one
    per core for the toy model on the CPU, else 1. The results do not depend on it."""
    progress: bool = True


@dataclass
class EvalResult:
    """What :func:`eval_run` wrote."""

    run: RunDir
    summary: dict[str, Any]
    metrics: MetricsResult

    def line(self) -> str:
        """The verb's one-line summary."""
        s, samp = self.summary, self.summary["sampling"]

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        best = (
            f"best of {samp['best_of']}: {samp['videos_sampled']} sampled, "
            if samp["best_of"] > 1
            else ""
        )
        return (
            f"eval: {s['n_videos']} videos ({best}{samp['wall_seconds']:.1f} s sampling), "
            f"validness {num(s['validness'])}, Correctness@0.7 {num(s['correctness_at_0.7'])}, "
            f"mean DSR {num(s['mean_dsr'])} -> {self.run.summary_path}, {self.run.metrics_path}"
        )


# ---------------------------------------------------------------------- checks


def check_inputs(cfg: EvalRunConfig) -> None:
    """Every user error that needs no model, refused before anything runs (one line each)."""
    from spatialalign.parallel.ranks import env_rank_world

    if env_rank_world()[1] > 1:
        raise SpatialAlignError(
            "eval runs in one process; under torchrun run `sample` and `track` (they shard), "
            "then `eval` reuses their work"
        )
    check_model(cfg.backend.model)
    check_config(cfg.backend)
    cfg.detection.validate()
    check_seeds(cfg.seeds, cfg.first_seed)
    check_best_of(cfg.best_of, cfg.seeds, MAX_SEEDS)
    check_seeds(cfg.seeds, cfg.first_seed, per_slot=cfg.best_of)
    if cfg.split not in (AUTO_SPLIT, *SPLITS):
        raise SpatialAlignError(f"unknown split {cfg.split!r}")
    for flag, path in (("--dinov2", cfg.dinov2), ("--clip", cfg.clip)):
        if path is not None and not Path(path).is_dir():
            raise SpatialAlignError(f"{flag}: model directory not found: {path}")
    if cfg.musiq is not None:
        if not Path(cfg.musiq).is_file():
            raise SpatialAlignError(f"--musiq: weights file not found: {cfg.musiq}")
        if importlib.util.find_spec("pyiqa") is None:
            from spatialalign.evaluation.musiq import INSTALL_HINT

            raise SpatialAlignError(f"--musiq needs pyiqa, which is not installed: {INSTALL_HINT}")
    if is_toy_test(cfg.prompts):
        toy_test_count(cfg.prompts)
    elif cfg.prompts is not None and not Path(cfg.prompts).is_file():
        raise SpatialAlignError(f"prompts file not found: {cfg.prompts}")


# ---------------------------------------------------------------------- stages


@dataclass
class _Stages:
    """The stage settings shared by the plain and the best-of-N paths."""

    cfg: EvalRunConfig
    prompts_file: Path
    split: str
    preset: str
    echo: Echo
    workers: Workers

    def sample(self, run: RunDir, seeds: int):
        """Samples seeds ``first_seed..first_seed+seeds-1`` of the prompts into ``run``."""
        from spatialalign.sampling.run import sample_on_workers

        result = sample_on_workers(
            run.root,
            self.cfg.backend,
            self.workers,
            prompts_file=self.prompts_file,
            split=self.split,
            seeds=seeds,
            first_seed=self.cfg.first_seed,
            batch_size=self.cfg.batch_size,
            progress=self.cfg.progress,
        )
        self.echo(result.summary())
        return result

    def track(self, run: RunDir) -> None:
        from spatialalign.detection.sharded import track_on_workers
        from spatialalign.detection.spec import TrackSpec

        cfg = self.cfg
        spec = TrackSpec(cfg.detection, device=cfg.backend.device, preset=self.preset)
        summary = track_on_workers(run.root, spec, self.workers, progress=cfg.progress)
        if not summary.merged:
            raise SpatialAlignError(f"{run.root}: track did not merge its tables")
        self.echo(summary.line())

    def score(self, run: RunDir) -> dict[str, Any]:
        from spatialalign.scoring.batch import recorded_preset, score_run
        from spatialalign.scoring.summary import one_line

        preset = recorded_preset(run.root) or self.preset
        result = score_run(run.root, config=scoring_config(preset), preset=preset, progress=False)
        for warning in result.warnings:
            self.echo(f"warning: {warning}")
        self.echo(f"{run.root}: {one_line(result.summary)}")
        return result.summary


def _sample_ids(run: RunDir, prompt_ids: list[str], seeds: int, first_seed: int) -> list[str]:
    """The manifest's samples of ``prompt_ids`` with seeds ``first_seed..first_seed+seeds-1``."""
    table = run.read_manifest(["prompt_id", "seed"]).to_pydict()
    wanted = set(prompt_ids)
    return [
        sid
        for sid, pid, seed in zip(
            table["sample_id"], table["prompt_id"], table["seed"], strict=True
        )
        if pid in wanted and first_seed <= seed < first_seed + seeds
    ]


def _sample_and_track(
    run: RunDir, target: RunDir, stages: _Stages, prompt_ids: list[str], seeds: int
) -> dict[str, Any]:
    """Samples seeds F..F+seeds-1 (F: ``--first-seed``) into ``target`` (the run, or its
    candidates), books the sampling compute in ``run``, tracks ``target``; returns the
    compute figures."""
    result = stages.sample(target, seeds)
    cost = update_cost(
        run,
        target,
        _sample_ids(target, prompt_ids, seeds, stages.cfg.first_seed),
        generated=result.generated,
        seconds=result.seconds,
    )
    stages.track(target)
    return cost


def _plain(run: RunDir, stages: _Stages, prompt_ids: list[str]) -> dict[str, Any]:
    return _sample_and_track(run, run, stages, prompt_ids, stages.cfg.seeds)


def _best_of(run: RunDir, stages: _Stages, prompt_ids: list[str]) -> dict[str, Any]:
    cfg = stages.cfg
    candidates = RunDir(run.candidates_dir)
    candidates.root.mkdir(parents=True, exist_ok=True)
    cost = _sample_and_track(run, candidates, stages, prompt_ids, cfg.seeds * cfg.best_of)
    stages.score(candidates)
    scores = candidates.read_scores()
    keep = pc.is_in(scores.column("prompt_id"), value_set=pa.array(prompt_ids, pa.string()))
    scores = scores.filter(keep)
    selection = select_best(scores, cfg.best_of, cfg.seeds, cfg.first_seed)
    rows, selection = selected_rows(run, candidates, selection, cfg.best_of, cfg.first_seed)
    write_parquet(selection, run.selection_path)
    write_selected_manifest(run, rows)
    kept = sum(s["k"] != 0 for s in selection.to_pylist())
    stages.echo(
        f"best-of-{cfg.best_of}: kept {selection.num_rows} video(s), "
        f"{kept} other than candidate 0 -> {run.selection_path}"
    )
    stages.track(run)
    return cost


@dataclass
class _NeuralModels:
    """DINOv2, CLIP and MUSIQ, loaded on the CPU before sampling (a bad directory or
    checkpoint fails early) and moved to the device only for the metrics (they do not hold
    GPU memory while sampling)."""

    dino: Any = None
    clip: tuple[Any, Any] | None = None
    musiq: Any = None
    ids: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def load(cls, cfg: EvalRunConfig) -> _NeuralModels:
        out = cls(ids={"dinov2": None, "clip": None, "musiq": None})
        if cfg.dinov2:
            from spatialalign.evaluation.neural import load_dinov2

            out.dino, out.ids["dinov2"] = load_dinov2(cfg.dinov2), fingerprint(cfg.dinov2)
        if cfg.clip:
            from spatialalign.evaluation.neural import load_clip

            out.clip, out.ids["clip"] = load_clip(cfg.clip), fingerprint(cfg.clip)
        if cfg.musiq:
            from spatialalign.evaluation.musiq import load_musiq

            out.musiq, out.ids["musiq"] = load_musiq(cfg.musiq), fingerprint(cfg.musiq)
        return out

    def on_device(self, device: str | None) -> tuple[Any, Any, Any]:
        """(DINOv2 model, ClipIqa, MUSIQ model) on ``device`` (default: cuda when available)."""
        if self.dino is None and self.clip is None and self.musiq is None:
            return None, None, None
        from spatialalign.models.backends import default_device

        device = device or default_device()
        dino = None if self.dino is None else self.dino.to(device)
        iqa = None
        if self.clip is not None:
            from spatialalign.evaluation.neural import ClipIqa

            iqa = ClipIqa(self.clip[0].to(device), self.clip[1])
        musiq = None if self.musiq is None else self.musiq.to(device)
        return dino, iqa, musiq


def _abs(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def eval_run(
    run_dir: str | os.PathLike[str],
    cfg: EvalRunConfig,
    *,
    echo: Echo | None = None,
    workers: Workers | None = None,
) -> EvalResult:
    """Evaluates ``cfg.backend`` on the prompts into ``run_dir`` (see the module docstring);
    ``echo`` receives each stage's one-line summary. ``workers``: processes already started
    by the caller (the loop's), else ``cfg.workers`` are started for this call."""
    echo = echo or (lambda _line: None)
    check_inputs(cfg)
    run = RunDir(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    prompts_file, split, prompt_ids = prepare_prompts(run, cfg.prompts, cfg.split)
    if workers is not None:
        return _evaluate(run, cfg, prompts_file, split, prompt_ids, echo, workers)
    videos = len(prompt_ids) * cfg.seeds * cfg.best_of
    toy = is_toy(cfg.backend.model)
    n = resolve_workers(cfg.workers, toy, cfg.backend.device, videos)
    with Workers(n, preload_for(toy)) as own:
        return _evaluate(run, cfg, prompts_file, split, prompt_ids, echo, own)


def _evaluate(
    run: RunDir,
    cfg: EvalRunConfig,
    prompts_file: Path,
    split: str,
    prompt_ids: list[str],
    echo: Echo,
    workers: Workers,
) -> EvalResult:
    preset = preset_for_model(cfg.backend.model, cfg.detection.detector)
    stages = _Stages(cfg, prompts_file, split, preset, echo, workers)
    models = _NeuralModels.load(cfg)  # a bad model directory fails before sampling

    cost = (_best_of if cfg.best_of > 1 else _plain)(run, stages, prompt_ids)
    summary = stages.score(run)
    dino, clip_iqa, musiq = models.on_device(cfg.backend.device)
    metrics = write_metrics(
        run,
        dino=dino,
        clip_iqa=clip_iqa,
        musiq=musiq,
        model_ids=models.ids,
        dino_image_size=cfg.dino_image_size,
        progress=cfg.progress,
    )
    echo(metrics.line())

    slots = len(prompt_ids) * cfg.seeds
    summary["metrics"] = metric_means(metrics.table)
    summary["sampling"] = {
        "best_of": cfg.best_of,
        "slots": slots,
        **cost,
        "factor": cost["videos_sampled"] / slots if slots else None,
    }
    summary["eval"] = {
        "model": cfg.backend.model,
        "model_dir": _abs(cfg.backend.model_path),
        "adapter": _abs(cfg.backend.adapter),
        "prompts": cfg.prompts if is_toy_test(cfg.prompts) else None,
        "prompts_file": str(Path(prompts_file).resolve()),
        "split": split,
        "n_prompts": len(prompt_ids),
        "seeds": cfg.seeds,
        "first_seed": cfg.first_seed,
        "detector": cfg.detection.detector,
        "preset": preset,
        "dinov2": _abs(cfg.dinov2),
        "clip": _abs(cfg.clip),
        "musiq": _abs(cfg.musiq),
    }
    write_json(summary, run.summary_path)
    return EvalResult(run, summary, metrics)
