"""Generate a video per prompt x seed into ``RUN_DIR/samples/`` and keep the manifest in step.

The work list is every (prompt, seed) pair, seeds ``S..S+N-1`` (``--first-seed S``,
default 0; :mod:`.seeds`), prompt-major; a sample's video is
``samples/{prompt_id}_F{frames}_seed{NN}.mp4`` with its true seed (:meth:`RunDir.video_path`).
Each video carries, in its ``comment`` tag, what it was made from: prompt text, seed,
model and adapter identity and every sampler setting (:func:`sample_record`). A rerun
skips a readable video only when that record equals the one it would write now, and
regenerates the others, counting why (``settings changed: guidance 3.0 -> 4.5``,
``prompt text changed``, ...). Video writes are atomic, so a kill never leaves a
half-written mp4 under its final name. Each worker writes a manifest part after every
batch; parts are merged into ``samples/manifest.parquet`` at the end, and finished videos
that never made it into the manifest (killed between the two writes) are added back
from the files themselves.

Sharding: with a process group (``torchrun`` / ``accelerate launch``) the workers agree
on the pending list after a barrier and rank ``r`` takes every ``world_size``-th pending
sample from ``r``; rank 0 merges after a final barrier. With only ``RANK``/``WORLD_SIZE``
set (no group), rank ``r`` takes every ``world_size``-th sample of the full work list
(stable whatever is already done) and each worker merges what exists when it finishes,
under a file lock, so the last one to finish leaves a complete manifest.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.provenance import explain_change, fingerprint
from spatialalign.core.video import write_video
from spatialalign.models.backends import Backend
from spatialalign.parallel.ranks import DistContext
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.manifest import (
    PROVENANCE,
    Row,
    existing_rows,
    merge_manifest_parts,
    read_rows,
    write_rows,
)
from spatialalign.sampling.naming import sample_id
from spatialalign.sampling.probe import VideoInfo, VideoReadError, probe_video
from spatialalign.sampling.seeds import check_seeds

SPLITS: tuple[str, ...] = ("all", "train", "test")


@dataclass(frozen=True)
class SampleSpec:
    """One video to produce: a prompt, a seed, and where the video goes."""

    prompt_id: str
    prompt: str
    seed: int
    sample_id: str
    path: Path


@dataclass
class SampleRunResult:
    """What one ``sample`` worker did (``generated`` and ``skipped`` count its own share)."""

    total: int
    """Samples in the work list (all workers)."""
    generated: int
    skipped: int
    """Samples already finished, from the same inputs and settings (all workers)."""
    rank: int
    world_size: int
    seconds: float
    manifest: Path
    manifest_rows: int
    """Rows in the manifest after the merge (-1 when another worker merges)."""
    reasons: Counter = field(default_factory=Counter)
    """Why this worker's share was generated: ``new`` or why it was redone
    (``settings changed: guidance 3.0 -> 4.5``, ``prompt text changed``, ...)."""

    def summary(self) -> str:
        """The verb's one-line summary."""
        rate = self.generated / self.seconds if self.seconds > 0 else 0.0
        who = f"rank {self.rank}/{self.world_size}: " if self.world_size > 1 else ""
        rows = f", manifest {self.manifest_rows} rows" if self.manifest_rows >= 0 else ""
        why = f" ({redo_line(self.reasons)})" if self.generated and self.reasons else ""
        return (
            f"sample: {who}generated {self.generated} video(s){why}, skipped {self.skipped} "
            f"finished, {self.total} in the work list; {self.seconds:.1f} s "
            f"({rate:.2f} videos/s){rows} -> {self.manifest}"
        )


def redo_line(reasons: Counter) -> str:
    """``3 new; 12 redone: settings changed: guidance 3.0 -> 4.5`` (largest group first)."""
    groups = sorted(reasons.items(), key=lambda kv: (kv[0] != "new", -kv[1], kv[0]))
    return "; ".join(f"{n} new" if why == "new" else f"{n} redone: {why}" for why, n in groups)


def select_prompts(prompts: Sequence[DSRPrompt], split: str = "all") -> list[DSRPrompt]:
    """The prompts of ``split`` (``all``, ``train``, ``test``); none selected is an error."""
    if split not in SPLITS:
        raise SpatialAlignError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if not prompts:
        raise SpatialAlignError("no prompts to sample")
    if split == "all":
        return list(prompts)
    chosen = [p for p in prompts if p.split == split]
    if not chosen:
        present = sorted({p.split or "(none)" for p in prompts})
        raise SpatialAlignError(
            f"no prompts in split {split!r} (splits present: {', '.join(present)}); use --split all"
        )
    return chosen


def plan_samples(
    prompts: Sequence[DSRPrompt],
    seeds: int,
    num_frames: int,
    run_dir: RunDir | str | os.PathLike[str],
    first_seed: int = 0,
) -> list[SampleSpec]:
    """Every (prompt, seed) pair for seeds ``first_seed..first_seed+seeds-1``, prompt-major,
    with its video path."""
    check_seeds(seeds, first_seed)
    run = RunDir(Path(run_dir).absolute())
    specs = []
    for p in prompts:
        if not p.prompt_id:
            raise SpatialAlignError(f"prompt without prompt_id: {p.text!r}")
        text = p.text
        if not text:
            from spatialalign.core.dsr.grammar import format_prompt

            text = format_prompt(p)
        for seed in range(first_seed, first_seed + seeds):
            sid = sample_id(p.prompt_id, num_frames, seed)
            specs.append(SampleSpec(p.prompt_id, text, seed, sid, run.video_path(sid)))
    return specs


def sample_record(
    spec: SampleSpec, backend: Backend, adapter: str, adapter_id: str, model_id: str
) -> dict[str, Any]:
    """What one video is made from; a finished video is reused only if its record is equal."""
    return {
        "prompt": spec.prompt,
        "seed": spec.seed,
        "model": backend.model,
        "model_id": model_id,
        "adapter": adapter,
        "adapter_id": adapter_id,
        "settings": backend.settings(),
    }


def redo_reason(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str | None:
    """Why a video with record ``old`` must be made again for ``new`` (None: reuse it)."""
    if old is None:
        return "no record of what the video was made from"
    if old == new:
        return None
    if old.get("prompt") != new.get("prompt"):
        return "prompt text changed"
    if old.get("model_id") != new.get("model_id"):
        return "model weights changed"
    if old.get("adapter_id") != new.get("adapter_id"):
        return "adapter changed"
    changes = explain_change(old.get("settings") or {}, new.get("settings") or {})
    if changes:
        return f"settings changed: {', '.join(changes)}"
    return f"record changed: {', '.join(explain_change(old, new))}"


def _record_in(info: VideoInfo) -> dict[str, Any] | None:
    try:
        record = json.loads(info.comment) if info.comment else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _row(run: RunDir, spec: SampleSpec, record: dict, info: dict) -> Row:
    return {
        "sample_id": spec.sample_id,
        "prompt_id": spec.prompt_id,
        "seed": spec.seed,
        "model": record["model"],
        "adapter": record["adapter"],
        "path": run.stored_video_path(spec.path),
        **info,
        PROVENANCE: {**record, "fingerprint": fingerprint(spec.path)},
    }


def _check_same_model(
    run: RunDir, specs: Sequence[SampleSpec], rows: dict[str, Row], model: str, adapter: str
) -> None:
    """Refuses to mix videos of another model/adapter into this run's samples."""
    clash = [
        rows[s.sample_id]
        for s in specs
        if s.sample_id in rows
        and s.path.is_file()
        and (rows[s.sample_id]["model"] != model or (rows[s.sample_id]["adapter"] or "") != adapter)
    ]
    if clash:
        r = clash[0]
        raise SpatialAlignError(
            f"{run.manifest_path} already records {len(clash)} of these "
            f"samples from model={r['model']!r} adapter={r['adapter']!r} (now model={model!r} "
            f"adapter={adapter!r}); sample into another run directory"
        )


def _remove_stale_tmp(out_dir: Path) -> None:
    """Deletes temporary files a killed run left behind (``.name.XXXX.tmp``)."""
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class ReusePlan:
    """Which planned videos a (re)run reuses, and why it makes the others."""

    records: dict[str, dict[str, Any]]
    """Sample id -> its :func:`sample_record` now (what its video is made from)."""
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Sample id -> the finished video's ``num_frames``, ``fps``, ``height``, ``width``."""
    why: dict[str, str] = field(default_factory=dict)
    """Sample id -> why it is generated: ``new``, ``unreadable video`` or a
    :func:`redo_reason`."""


def sample_records(
    specs: Sequence[SampleSpec], backend: Backend, adapter: str
) -> dict[str, dict[str, Any]]:
    """Each sample's :func:`sample_record` (the model and adapter fingerprinted once)."""
    model_id, adapter_id = backend.identity(), fingerprint(adapter) if adapter else ""
    return {s.sample_id: sample_record(s, backend, adapter, adapter_id, model_id) for s in specs}


def plan_reuse(specs: Sequence[SampleSpec], records: dict[str, dict[str, Any]]) -> ReusePlan:
    """Probes each planned video: reused when readable and its recorded inputs equal
    ``records``, else generated (with the reason)."""
    plan = ReusePlan(records)
    for spec in specs:
        try:
            info = probe_video(spec.path)
        except VideoReadError:
            plan.why[spec.sample_id] = "new" if not spec.path.exists() else "unreadable video"
            continue
        reason = redo_reason(_record_in(info), records[spec.sample_id])
        if reason is not None:
            plan.why[spec.sample_id] = reason
            continue
        plan.reused[spec.sample_id] = {
            "num_frames": info.num_frames,
            "fps": info.fps,
            "height": info.height,
            "width": info.width,
        }
    return plan


def recovered_rows(
    run: RunDir, specs: Sequence[SampleSpec], plan: ReusePlan, existing: Mapping[str, Row]
) -> list[Row]:
    """Manifest rows for reused videos the manifest lacks (or records elsewhere, or
    without provenance): e.g. a kill between writing a video and its row."""
    recovered = []
    for s in specs:
        row = existing.get(s.sample_id, {})
        if s.sample_id in plan.reused and (
            row.get("path") != run.stored_video_path(s.path) or PROVENANCE not in row
        ):
            recovered.append(_row(run, s, plan.records[s.sample_id], plan.reused[s.sample_id]))
    return recovered


def worker_share(
    specs: Sequence[SampleSpec], reused: Collection[str], ctx: DistContext
) -> list[SampleSpec]:
    """This rank's videos to generate: every ``world_size``-th pending one with a process
    group, else the pending ones of every ``world_size``-th sample of the work list."""
    if ctx.has_group:
        pending = [s for s in specs if s.sample_id not in reused]
        return pending[ctx.rank :: ctx.world_size]
    return [s for s in specs[ctx.rank :: ctx.world_size] if s.sample_id not in reused]


def write_batch(
    run: RunDir,
    backend: Backend,
    batch: Sequence[SampleSpec],
    videos: Any,
    records: Mapping[str, dict[str, Any]],
) -> list[Row]:
    """Writes one generated batch's videos (their record in the ``comment`` tag) and
    returns their manifest rows."""
    if videos.shape[0] != len(batch):
        raise RuntimeError(
            f"back end returned {videos.shape[0]} videos for a batch of {len(batch)}"
        )
    rows = []
    for spec, frames in zip(batch, videos, strict=True):
        record = records[spec.sample_id]
        comment = json.dumps(record, sort_keys=True)
        write_video(spec.path, frames, fps=backend.fps, lossless=backend.lossless, comment=comment)
        f, h, w = frames.shape[:3]
        info = {"num_frames": f, "fps": float(backend.fps), "height": h, "width": w}
        rows.append(_row(run, spec, record, info))
    return rows


def generate_share(
    run: RunDir,
    backend: Backend,
    mine: Sequence[SampleSpec],
    records: Mapping[str, dict[str, Any]],
    ctx: DistContext,
    *,
    batch_size: int,
    progress: bool,
) -> int:
    """Generates ``mine`` batch by batch, rewriting this rank's manifest part after each;
    returns how many videos it made."""
    my_part = run.manifest_part_path(ctx.rank)
    my_rows: list[Row] = read_rows(my_part)
    bar = tqdm(
        total=len(mine),
        unit="video",
        desc=f"sample rank {ctx.rank}" if ctx.world_size > 1 else "sample",
        disable=not progress,
        position=ctx.rank if ctx.world_size > 1 else None,
    )
    generated = 0
    with bar:
        for i in range(0, len(mine), batch_size):
            batch = mine[i : i + batch_size]
            videos = backend.generate([s.prompt for s in batch], [s.seed for s in batch])
            my_rows += write_batch(run, backend, batch, videos, records)
            write_rows(my_rows, my_part)
            generated += len(batch)
            bar.update(len(batch))
    return generated


def merge_samples(
    run: RunDir,
    ctx: DistContext,
    recovered: list[Row],
    run_prompt_ids: Collection[str] | None,
) -> int:
    """Merges the manifest parts (rank 0 between barriers with a process group, else every
    worker); the manifest's row count, -1 on a rank that does not merge."""
    if ctx.has_group:
        rows_after = -1
        ctx.barrier()
        if ctx.is_main:
            rows_after = len(
                merge_manifest_parts(run, extra_rows=recovered, prompt_ids=run_prompt_ids)
            )
        ctx.barrier()
        return rows_after
    delete = None if ctx.world_size == 1 else [run.manifest_part_path(ctx.rank)]
    return len(
        merge_manifest_parts(run, extra_rows=recovered, delete=delete, prompt_ids=run_prompt_ids)
    )


def prepare_samples_dir(
    run: RunDir, specs: Sequence[SampleSpec], model: str, adapter: str, ctx: DistContext
) -> dict[str, Row]:
    """Creates ``samples/``, refuses another model's videos, clears a killed run's
    temporary files, and returns the manifest's rows (after a barrier: with a group,
    nobody writes before everyone has seen the same finished set)."""
    run.samples_dir.mkdir(parents=True, exist_ok=True)
    existing = existing_rows(run)
    _check_same_model(run, specs, existing, model, adapter)
    if ctx.is_main and (ctx.has_group or ctx.world_size == 1):
        _remove_stale_tmp(run.samples_dir)
    ctx.barrier()
    return existing


def sample_videos(
    run_dir: str | os.PathLike[str],
    backend: Backend,
    prompts: Sequence[DSRPrompt],
    *,
    seeds: int,
    first_seed: int = 0,
    batch_size: int = 8,
    adapter: str = "",
    run_prompt_ids: Collection[str] | None = None,
    dist: DistContext | None = None,
    progress: bool = True,
) -> SampleRunResult:
    """Generates the missing or outdated videos of ``prompts`` x seeds
    ``first_seed..first_seed+seeds-1``.

    ``adapter`` is what the manifest records for the LoRA in use (``""`` for none; its
    file's fingerprint goes into each video's record). ``run_prompt_ids`` (the ids of the
    run's prompts file) drops manifest rows of prompts no longer there. Returns this worker's
    :class:`SampleRunResult`; the manifest is merged before returning (by rank 0 with a
    process group, else by every worker).
    """
    if batch_size < 1:
        raise SpatialAlignError(f"--batch-size must be at least 1, got {batch_size}")
    ctx = dist or DistContext()
    start = time.perf_counter()
    run = RunDir(Path(run_dir).absolute())
    specs = plan_samples(prompts, seeds, backend.num_frames, run, first_seed)
    existing = prepare_samples_dir(run, specs, backend.model, adapter, ctx)
    plan = plan_reuse(specs, sample_records(specs, backend, adapter))
    recovered = recovered_rows(run, specs, plan, existing)
    ctx.barrier()

    mine = worker_share(specs, plan.reused, ctx)
    try:
        generated = generate_share(
            run, backend, mine, plan.records, ctx, batch_size=batch_size, progress=progress
        )
    except BaseException:
        # interrupted (Ctrl-C) or failed: leave a consistent manifest when no peer needs us
        if not ctx.has_group:
            merge_manifest_parts(
                run,
                extra_rows=recovered,
                delete=[run.manifest_part_path(ctx.rank)],
                prompt_ids=run_prompt_ids,
            )
        raise
    rows_after = merge_samples(run, ctx, recovered, run_prompt_ids)
    return SampleRunResult(
        total=len(specs),
        generated=generated,
        skipped=len(plan.reused),
        rank=ctx.rank,
        world_size=ctx.world_size,
        seconds=time.perf_counter() - start,
        manifest=run.manifest_path,
        manifest_rows=rows_after,
        reasons=Counter(plan.why[s.sample_id] for s in mine),
    )
