"""Measuring how well a toy model follows DSR prompts, with no ground truth.

Each sample is judged the way the real pipeline judges Wan videos: the colour detector
finds the animal and the object in every frame, the toy validity rules (TOY preset) accept
or reject the video, and ``dsr_geom`` scores the valid frames (each holds exactly one
animal and one object box, so no tracking is needed). The summary is the one ``score-batch``
writes (:func:`spatialalign.scoring.summary.build_summary`: Correctness@tau, validness,
per-type figures, counts of rejection reasons); on top of it this reports which relation a
video *shows* at its start and end: of left/right/top, the one with the highest mean SSR
over the first / last three kept frames, compared with the prompt's initial / final
relation (``initial_right``, ``final_right``, ``both_right``: rates among valid clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.presets import ScoringConfig, scoring_config
from spatialalign.models.registry import default_steps, scoring_preset, world_model
from spatialalign.prompts.splits import world_split
from spatialalign.scoring.summary import build_summary

SHOWN_RELATIONS: tuple[str, ...] = ("L", "R", "T")
ENDS = 3
"""Kept frames averaged at each end to decide which relation a video shows."""


@dataclass
class ToyEvalConfig:
    """What `spatialalign toy evaluate` samples and how (the toy model's own evaluation, not
    `spatialalign eval`'s :class:`~spatialalign.evaluation.eval_run.EvalRunConfig`). ``None``
    fields take the world's value (its split's, its model's preset)."""

    n_test: int | None = None
    """TEST prompts [the world's split's: 120]."""
    n_train: int | None = None
    """TRAIN prompts drawn before them [toy 500, hard 600]."""
    prompt_seed: int | None = None
    """The split's seed [0]."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    num_inference_steps: int | None = None
    """Denoising steps [the world's model's: toy 20, toy-hard 10]."""
    guidance_scale: float = 3.0
    batch_size: int = 100
    preset: str | None = None
    """Validity preset [the world's model's: toy, toy-hard]."""
    world: str = "toy"
    """The toy world (``toy``, ``hard``): its split's TEST prompts, its model's preset, its
    renderer for ``--rendered``."""

    def __post_init__(self) -> None:
        split = world_split(self.world)
        if self.n_test is None:
            self.n_test = split.n_test
        if self.n_train is None:
            self.n_train = split.n_train
        if self.prompt_seed is None:
            self.prompt_seed = split.seed
        if self.preset is None:
            self.preset = scoring_preset(world_model(self.world))
        if self.num_inference_steps is None:
            self.num_inference_steps = default_steps(world_model(self.world))


@dataclass
class ClipJudgement:
    """The verdict on one sampled (or rendered) clip."""

    prompt_id: str
    dsr_type: str
    seed: int
    valid: bool
    reason: str
    dsr: float
    shown_initial: str
    shown_final: str
    n_kept: int

    @property
    def initial_right(self) -> bool:
        return self.valid and self.shown_initial == self.dsr_type[0]

    @property
    def final_right(self) -> bool:
        return self.valid and self.shown_final == self.dsr_type[1]


def shown_relations(animal: np.ndarray, obj: np.ndarray) -> tuple[str, str, int]:
    """(initial, final, n_kept): the relation of L/R/T with the highest mean SSR at each end."""
    import dsr_geom

    scores = np.stack([dsr_geom.ssr_scores(animal, obj, r) for r in SHOWN_RELATIONS])  # [3, N]
    kept = ~np.isnan(scores[0])
    s = scores[:, kept]
    if s.shape[1] == 0:
        return "", "", 0
    m = min(ENDS, s.shape[1])
    first = SHOWN_RELATIONS[int(np.argmax(s[:, :m].mean(axis=1)))]
    last = SHOWN_RELATIONS[int(np.argmax(s[:, -m:].mean(axis=1)))]
    return first, last, int(kept.sum())


def valid_frame_boxes(dets, frame_status: Sequence[str], names: Sequence[str]):
    """(animal, object) float64 [F, 4] boxes from the *valid* frames (exactly one of each);
    NaN rows elsewhere, which the scorer does not keep."""
    animal = np.full((len(dets), 4), np.nan)
    obj = np.full((len(dets), 4), np.nan)
    for i, (d, st) in enumerate(zip(dets, frame_status, strict=True)):
        if st != "valid":
            continue
        for box, label in zip(d.boxes, d.labels, strict=True):
            if label == names[0] and np.isnan(animal[i, 0]):
                animal[i] = box
            elif label == names[1]:
                obj[i] = box
    return animal, obj


def judge_clip(
    frames: np.ndarray,
    prompt: DSRPrompt,
    seed: int,
    detector,
    scoring: ScoringConfig,
) -> ClipJudgement:
    """Detect -> validity rules -> boxes of the valid frames -> DSR-Score, shown relations."""
    import dsr_geom

    from spatialalign.detection.validity import judge_detections

    names = [prompt.animal, prompt.object]
    dets = detector.detect(frames, names)
    verdict = judge_detections(dets, names, scoring)
    base = dict(prompt_id=prompt.prompt_id, dsr_type=prompt.dsr_type, seed=seed)
    if not verdict.valid:
        return ClipJudgement(
            **base,
            valid=False,
            reason=verdict.reason,
            dsr=float("nan"),
            shown_initial="",
            shown_final="",
            n_kept=0,
        )
    animal, obj = valid_frame_boxes(dets, verdict.frame_status, names)
    dsr = dsr_geom.dsr_score(
        animal, obj, prompt.initial, prompt.final, m=scoring.m, min_frames=scoring.min_frames
    )
    first, last, n_kept = shown_relations(animal, obj)
    if dsr is None:
        return ClipJudgement(
            **base,
            valid=False,
            reason="too_few_frames",
            dsr=float("nan"),
            shown_initial=first,
            shown_final=last,
            n_kept=n_kept,
        )
    return ClipJudgement(
        **base,
        valid=True,
        reason="",
        dsr=float(dsr),
        shown_initial=first,
        shown_final=last,
        n_kept=n_kept,
    )


def summarize(results: Sequence[ClipJudgement], scoring: ScoringConfig) -> dict[str, Any]:
    """``score-batch``'s summary of the judged clips plus the relation-right rates.

    ``initial_right`` / ``final_right`` / ``both_right`` (overall and per DSR type) are
    rates among the valid clips; everything else is :func:`build_summary`'s, so the keys
    and numbers mean what they mean in a run directory's ``summary.json``.
    """
    scores = pa.table(
        {
            "dsr": pa.array([r.dsr if r.valid else np.nan for r in results], pa.float64()),
            "valid": pa.array([r.valid for r in results], pa.bool_()),
            "reason": pa.array([r.reason for r in results], pa.string()),
        }
    )
    summary = build_summary(scores, [r.dsr_type for r in results], scoring)
    summary.update(right_rates(results))
    for dsr_type, group in summary["per_type"].items():
        group.update(right_rates([r for r in results if r.dsr_type == dsr_type]))
    return summary


def right_rates(results: Sequence[ClipJudgement]) -> dict[str, float]:
    """Among the valid clips: how often the shown initial / final / both relations are right."""
    valid = [r for r in results if r.valid]
    n = max(1, len(valid))
    return {
        "initial_right": sum(r.initial_right for r in valid) / n,
        "final_right": sum(r.final_right for r in valid) / n,
        "both_right": sum(r.initial_right and r.final_right for r in valid) / n,
    }


def summary_line(summary: dict[str, Any]) -> str:
    """The one line ``toy evaluate`` ends with."""

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    return (
        f"validness {num(summary['validness'])}, initial right {summary['initial_right']:.3f}, "
        f"final right {summary['final_right']:.3f} (of valid), "
        f"Correctness@0.7 {num(summary['correctness_at_0.7'])} "
        f"over {summary['n_videos']} samples"
    )


def eval_prompts(cfg: ToyEvalConfig) -> list[DSRPrompt]:
    """The world's generated TEST split (disjoint from pretraining's TRAIN split)."""
    split = replace(
        world_split(cfg.world), n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.prompt_seed
    )
    return split.prompts("test")


def render_world(cfg: ToyEvalConfig):
    """The renderer's config of ``cfg.world`` (``spatialalign.toy.world.WORLDS``)."""
    from spatialalign.toy.world import world_config

    return world_config(cfg.world)


def evaluate_pipeline(
    pipe, prompts: Sequence[DSRPrompt], cfg: ToyEvalConfig, progress: bool = True
) -> tuple[dict[str, Any], list[ClipJudgement]]:
    """Samples every prompt x seed with ``pipe`` and judges each clip; (summary, verdicts)."""
    from spatialalign.detection.color import ColorDetector

    detector = ColorDetector()
    scoring = scoring_config(cfg.preset)
    jobs = [(p, s) for p in prompts for s in cfg.seeds]
    results: list[ClipJudgement] = []
    bar = tqdm(total=len(jobs), desc="evaluate", disable=not progress, leave=False)
    for i in range(0, len(jobs), cfg.batch_size):
        chunk = jobs[i : i + cfg.batch_size]
        videos = pipe(
            [p.text for p, _ in chunk],
            [s for _, s in chunk],
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=cfg.guidance_scale,
        )
        for (p, s), v in zip(chunk, videos, strict=True):
            results.append(judge_clip(v, p, s, detector, scoring))
        bar.update(len(chunk))
    bar.close()
    return summarize(results, scoring), results


def evaluate_rendered(
    prompts: Sequence[DSRPrompt], cfg: ToyEvalConfig, world=None
) -> tuple[dict[str, Any], list[ClipJudgement]]:
    """The same judgement on rendered clips (the toy world itself: the ceiling); ``world``
    defaults to ``cfg.world``'s renderer."""
    from spatialalign.detection.color import ColorDetector
    from spatialalign.toy.world import render_clip

    world = world or render_world(cfg)
    detector = ColorDetector()
    scoring = scoring_config(cfg.preset)
    results = [
        judge_clip(render_clip(p, s, world).frames, p, s, detector, scoring)
        for p in prompts
        for s in cfg.seeds
    ]
    return summarize(results, scoring), results


def comparison_figure(pipe, prompts: Sequence[DSRPrompt], path, cfg: ToyEvalConfig, seed: int = 0):
    """PNG: for the first prompt of each DSR type, a generated clip (upper row of each
    pair) above the rendered clip of the same prompt and seed."""
    from spatialalign.toy.viz import save_clip_grid
    from spatialalign.toy.world import ToyWorldConfig, render_clip

    firsts: dict[str, DSRPrompt] = {}
    for p in prompts:
        firsts.setdefault(p.dsr_type, p)
    chosen = [firsts[t] for t in sorted(firsts)]
    generated = pipe(
        [p.text for p in chosen],
        [seed] * len(chosen),
        num_inference_steps=cfg.num_inference_steps,
        guidance_scale=cfg.guidance_scale,
    )
    if cfg.world == "toy":  # the pipeline's clip size (the shipped model's is the world's)
        world = ToyWorldConfig(num_frames=pipe.num_frames, height=pipe.height, width=pipe.width)
    else:
        world = render_world(cfg)
    videos = []
    for p, g in zip(chosen, generated, strict=True):
        videos += [g, render_clip(p, seed, world).frames]
    return save_clip_grid(path, videos)
