"""Generate a video per prompt x seed into ``RUN_DIR/samples/`` and keep the manifest in step.

The work list is every (prompt, seed) pair, seeds ``0..N-1``, prompt-major; a sample's
video is ``samples/{prompt_id}_F{frames}_seed{NN}.mp4``. Finished, readable videos are
skipped, so a killed run resumes where it stopped (video writes are atomic, so a kill
never leaves a half-written mp4 under its final name). Each worker writes a manifest part
after every batch; parts are merged into ``samples/manifest.parquet`` at the end, and
videos that finished without making it into the manifest (killed between the two
writes) are added back from the files themselves.

Sharding: with a process group (``torchrun`` / ``accelerate launch``) the workers agree
on the pending list after a barrier and rank ``r`` takes every ``world_size``-th pending
sample from ``r``; rank 0 merges after a final barrier. With only ``RANK``/``WORLD_SIZE``
set (no group), rank ``r`` takes every ``world_size``-th sample of the full work list
(stable whatever is already done) and each worker merges what exists when it finishes,
under a file lock, so the last one to finish leaves a complete manifest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from spatialalign.distributed import DistContext
from spatialalign.errors import SpatialAlignError
from spatialalign.prompts.model import DSRPrompt
from spatialalign.sampling.backends import Backend
from spatialalign.sampling.manifest import (
    Row,
    manifest_path,
    merge_parts,
    merge_rows,
    part_files,
    part_path,
    read_rows,
    samples_dir,
    write_rows,
)
from spatialalign.sampling.naming import sample_id, video_filename
from spatialalign.sampling.probe import VideoReadError, probe_video
from spatialalign.video import write_video

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
class SampleResult:
    """What one worker did (``generated`` and ``skipped`` count its own share)."""

    total: int
    """Samples in the work list (all workers)."""
    generated: int
    skipped: int
    """Samples already finished when this run started (all workers)."""
    rank: int
    world_size: int
    seconds: float
    manifest: Path
    manifest_rows: int
    """Rows in the manifest after the merge (-1 when another worker merges)."""

    def summary(self) -> str:
        """The verb's one-line summary."""
        rate = self.generated / self.seconds if self.seconds > 0 else 0.0
        who = f"rank {self.rank}/{self.world_size}: " if self.world_size > 1 else ""
        rows = f", manifest {self.manifest_rows} rows" if self.manifest_rows >= 0 else ""
        return (
            f"sample: {who}generated {self.generated} video(s), skipped {self.skipped} finished, "
            f"{self.total} in the work list; {self.seconds:.1f} s ({rate:.2f} videos/s)"
            f"{rows} -> {self.manifest}"
        )


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
    prompts: Sequence[DSRPrompt], seeds: int, num_frames: int, out_dir: str | os.PathLike[str]
) -> list[SampleSpec]:
    """Every (prompt, seed) pair for seeds ``0..seeds-1``, prompt-major."""
    if seeds < 1:
        raise SpatialAlignError(f"--seeds must be at least 1, got {seeds}")
    out_dir = Path(out_dir).resolve()
    specs = []
    for p in prompts:
        if not p.prompt_id:
            raise SpatialAlignError(f"prompt without prompt_id: {p.text!r}")
        text = p.text
        if not text:
            from spatialalign.prompts import format_prompt

            text = format_prompt(p)
        for seed in range(seeds):
            specs.append(
                SampleSpec(
                    prompt_id=p.prompt_id,
                    prompt=text,
                    seed=seed,
                    sample_id=sample_id(p.prompt_id, num_frames, seed),
                    path=out_dir / video_filename(p.prompt_id, num_frames, seed),
                )
            )
    return specs


def _row(spec: SampleSpec, backend: Backend, adapter: str, info: dict) -> Row:
    return {
        "sample_id": spec.sample_id,
        "prompt_id": spec.prompt_id,
        "seed": spec.seed,
        "model": backend.model,
        "adapter": adapter,
        "path": str(spec.path),
        **info,
    }


def _check_provenance(specs: Sequence[SampleSpec], rows: dict[str, Row], model: str, adapter: str):
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
            f"{manifest_path(specs[0].path.parent.parent)} already records {len(clash)} of these "
            f"samples from model={r['model']!r} adapter={r['adapter']!r} (now model={model!r} "
            f"adapter={adapter!r}); sample into another run directory"
        )


def _remove_stale_tmp(out_dir: Path) -> None:
    """Deletes temporary files a killed run left behind (``.name.XXXX.tmp``)."""
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def sample_videos(
    run_dir: str | os.PathLike[str],
    backend: Backend,
    prompts: Sequence[DSRPrompt],
    *,
    seeds: int,
    batch_size: int = 8,
    adapter: str = "",
    dist: DistContext | None = None,
    progress: bool = True,
) -> SampleResult:
    """Generates the missing videos of ``prompts`` x seeds ``0..seeds-1`` into ``RUN_DIR/samples``.

    ``adapter`` is what the manifest records for the LoRA in use (``""`` for none). Returns
    this worker's :class:`SampleResult`; the manifest is merged before returning (by rank
    0 with a process group, else by every worker).
    """
    if batch_size < 1:
        raise SpatialAlignError(f"--batch-size must be at least 1, got {batch_size}")
    ctx = dist or DistContext()
    start = time.perf_counter()
    out_dir = samples_dir(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_samples(prompts, seeds, backend.num_frames, out_dir)

    existing = {
        r["sample_id"]: r
        for r in merge_rows(read_rows(manifest_path(run_dir)), *map(read_rows, part_files(run_dir)))
    }
    _check_provenance(specs, existing, backend.model, adapter)
    if ctx.is_main and (ctx.has_group or ctx.world_size == 1):
        _remove_stale_tmp(out_dir)
    # with a group, nobody writes before everyone has seen the same finished set
    ctx.barrier()

    done: dict[str, dict] = {}
    for spec in specs:
        try:
            info = probe_video(spec.path)
        except VideoReadError:
            continue
        done[spec.sample_id] = {
            "num_frames": info.num_frames,
            "fps": info.fps,
            "height": info.height,
            "width": info.width,
        }
    # finished videos the manifest lacks (or records elsewhere): rebuild their rows
    recovered = [
        _row(s, backend, adapter, done[s.sample_id])
        for s in specs
        if s.sample_id in done and existing.get(s.sample_id, {}).get("path") != str(s.path)
    ]
    ctx.barrier()

    if ctx.has_group:
        pending = [s for s in specs if s.sample_id not in done]
        mine = pending[ctx.rank :: ctx.world_size]
    else:
        mine = [s for s in specs[ctx.rank :: ctx.world_size] if s.sample_id not in done]

    my_part = part_path(run_dir, ctx.rank)
    my_rows: list[Row] = read_rows(my_part)
    bar = tqdm(
        total=len(mine),
        unit="video",
        desc=f"sample rank {ctx.rank}" if ctx.world_size > 1 else "sample",
        disable=not progress,
        position=ctx.rank if ctx.world_size > 1 else None,
    )
    generated = 0
    try:
        for i in range(0, len(mine), batch_size):
            batch = mine[i : i + batch_size]
            videos = backend.generate([s.prompt for s in batch], [s.seed for s in batch])
            if videos.shape[0] != len(batch):
                raise RuntimeError(
                    f"back end returned {videos.shape[0]} videos for a batch of {len(batch)}"
                )
            for spec, frames in zip(batch, videos, strict=True):
                write_video(spec.path, frames, fps=backend.fps, lossless=backend.lossless)
                f, h, w = frames.shape[:3]
                info = {"num_frames": f, "fps": float(backend.fps), "height": h, "width": w}
                my_rows.append(_row(spec, backend, adapter, info))
            write_rows(my_rows, my_part)
            generated += len(batch)
            bar.update(len(batch))
    except BaseException:
        # interrupted (Ctrl-C) or failed: leave a consistent manifest when no peer needs us
        if not ctx.has_group:
            merge_parts(run_dir, extra_rows=recovered, delete=[my_part])
        raise
    finally:
        bar.close()

    rows_after = -1
    if ctx.has_group:
        ctx.barrier()
        if ctx.is_main:
            rows_after = len(merge_parts(run_dir, extra_rows=recovered))
        ctx.barrier()
    else:
        delete = None if ctx.world_size == 1 else [my_part]
        rows_after = len(merge_parts(run_dir, extra_rows=recovered, delete=delete))
    return SampleResult(
        total=len(specs),
        generated=generated,
        skipped=len(done),
        rank=ctx.rank,
        world_size=ctx.world_size,
        seconds=time.perf_counter() - start,
        manifest=manifest_path(run_dir),
        manifest_rows=rows_after,
    )
