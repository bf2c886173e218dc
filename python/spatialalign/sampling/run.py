"""The ``sample`` verb end to end: read prompts, find my rank, load the model, sample, merge.

One process per rank under ``torchrun``, or :func:`sample_on_workers` for several ranks
started from one process (:class:`~spatialalign.parallel.workers.Workers`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from spatialalign.core.errors import SpatialAlignError
from spatialalign.lora.adapter import resolve_adapter
from spatialalign.models.backends import BackendConfig, check_config, load_backend
from spatialalign.parallel.ranks import DistContext, dist_context
from spatialalign.parallel.workers import Workers
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.batching import resolve_batch_size
from spatialalign.sampling.run_prompts import ensure_run_prompts
from spatialalign.sampling.sampler import SampleRunResult, sample_videos, select_prompts
from spatialalign.sampling.seeds import check_seeds


def run_sample(
    run_dir: str | os.PathLike[str],
    config: BackendConfig,
    *,
    prompts_file: str | os.PathLike[str] | None = None,
    split: str = "all",
    seeds: int = 5,
    first_seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> SampleRunResult:
    """Samples ``prompts_file`` (default ``RUN_DIR/prompts.parquet``) with the configured model,
    seeds ``first_seed..first_seed+seeds-1`` per prompt.

    A prompt file from elsewhere is also written to ``RUN_DIR/prompts.parquet`` when that
    is absent, so later stages find the prompts of the run; an existing one must know
    every sampled prompt id, and manifest rows of prompts it no longer has are dropped.
    ``batch_size`` defaults to the model's (:func:`~spatialalign.sampling.batching.resolve_batch_size`). ``rank``/``world_size`` (both or neither) make this one of several workers
    that coordinate through files; by default they come from ``torchrun``'s environment.
    """
    # every user error is refused here, before the model is loaded
    check_seeds(seeds, first_seed)
    check_config(config)
    run_dir = Path(run_dir)
    prompts = RunDir(run_dir).read_prompts(prompts_file)  # ids checked: safe file names
    chosen = select_prompts(prompts, split)
    adapter = str(resolve_adapter(config.adapter)) if config.adapter else ""

    if (rank is None) != (world_size is None):
        raise ValueError("give both rank and world_size, or neither")
    if rank is None:
        ctx = dist_context()
    else:
        if world_size < 1 or not 0 <= rank < world_size:
            raise SpatialAlignError(f"invalid rank {rank} / world size {world_size}")
        ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank)
    try:
        # every rank checks an existing file; only rank 0 writes a missing one
        target = ensure_run_prompts(
            run_dir, prompts, (p.prompt_id for p in chosen), write=ctx.is_main
        )
        # the manifest keeps only samples of the run's prompts (a replaced prompts file
        # drops the samples of prompts it no longer has)
        run_prompts = RunDir(run_dir).read_prompts() if target.is_file() else prompts
        backend = load_backend(config, local_rank=ctx.local_rank)
        return sample_videos(
            run_dir,
            backend,
            chosen,
            seeds=seeds,
            first_seed=first_seed,
            batch_size=resolve_batch_size(batch_size, config.model),
            adapter=adapter,
            run_prompt_ids={p.prompt_id for p in run_prompts},
            dist=ctx,
            progress=progress,
        )
    finally:
        ctx.close()


def planned_videos(
    run_dir: str | os.PathLike[str],
    prompts_file: str | os.PathLike[str] | None,
    split: str,
    seeds: int,
) -> int:
    """Videos in the work list of a ``sample`` call (finished ones included)."""
    prompts = RunDir(run_dir).read_prompts(prompts_file)
    return len(select_prompts(prompts, split)) * seeds


def _sample_rank(
    rank: int,
    world_size: int,
    run_dir: str,
    config: BackendConfig,
    options: dict[str, Any],
) -> SampleRunResult:
    return run_sample(run_dir, config, rank=rank, world_size=world_size, **options)


def sample_on_workers(
    run_dir: str | os.PathLike[str],
    config: BackendConfig,
    workers: Workers,
    *,
    prompts_file: str | os.PathLike[str] | None = None,
    split: str = "all",
    seeds: int = 5,
    first_seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
) -> SampleRunResult:
    """:func:`run_sample` split over ``workers``' processes; one result for the whole run.

    The run's prompts file is written here first, so no worker races to create it.
    """
    options: dict[str, Any] = {
        "prompts_file": prompts_file,
        "split": split,
        "seeds": seeds,
        "first_seed": first_seed,
        "batch_size": batch_size,
        "progress": progress,
    }
    if workers.n == 1:  # this process (or one of a launcher's ranks)
        return run_sample(run_dir, config, **options)
    start = time.perf_counter()
    run_dir = Path(run_dir)
    check_seeds(seeds, first_seed)
    check_config(config)
    prompts = RunDir(run_dir).read_prompts(prompts_file)
    chosen = select_prompts(prompts, split)
    run_dir.mkdir(parents=True, exist_ok=True)
    ensure_run_prompts(run_dir, prompts, (p.prompt_id for p in chosen), write=True)
    # paths absolute: the workers may not share our working directory's meaning of "."
    if prompts_file is not None:
        options["prompts_file"] = str(Path(prompts_file).absolute())
    parts = workers.run(_sample_rank, str(run_dir.absolute()), config, options)
    reasons: Counter = Counter()
    for part in parts:
        reasons.update(part.reasons)
    rows = RunDir(run_dir).read_manifest(["seed"], resolve_paths=False).num_rows
    return replace(
        parts[0],
        generated=sum(p.generated for p in parts),
        world_size=1,
        seconds=time.perf_counter() - start,
        manifest_rows=rows,
        reasons=reasons,
    )
