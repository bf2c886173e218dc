"""The ``sample`` verb end to end: read prompts, find my rank, load the model, sample, merge."""

from __future__ import annotations

import os
from pathlib import Path

from spatialalign.distributed import dist_context
from spatialalign.errors import SpatialAlignError
from spatialalign.lora import resolve_adapter
from spatialalign.rundir import RunDir
from spatialalign.sampling.backends import BackendConfig, check_config, load_backend
from spatialalign.sampling.run_prompts import ensure_run_prompts
from spatialalign.sampling.sampler import (
    MAX_SEEDS,
    SampleRunResult,
    sample_videos,
    select_prompts,
)


def run_sample(
    run_dir: str | os.PathLike[str],
    config: BackendConfig,
    *,
    prompts_file: str | os.PathLike[str] | None = None,
    split: str = "all",
    seeds: int = 5,
    batch_size: int | None = None,
    progress: bool = True,
) -> SampleRunResult:
    """Samples ``prompts_file`` (default ``RUN_DIR/prompts.parquet``) with the configured model.

    A prompt file from elsewhere is also written to ``RUN_DIR/prompts.parquet`` when that
    is absent, so later stages find the prompts of the run; an existing one must know
    every sampled prompt id, and manifest rows of prompts it no longer has are dropped. ``batch_size`` defaults to 16 for toy and 1 for wan (81
    frames at 480x832 fill a GPU quickly).
    """
    # every user error is refused here, before the model is loaded
    if not 1 <= seeds <= MAX_SEEDS:
        raise SpatialAlignError(f"--seeds must be in 1..{MAX_SEEDS}, got {seeds}")
    check_config(config)
    run_dir = Path(run_dir)
    prompts = RunDir(run_dir).read_prompts(prompts_file)  # ids checked: safe file names
    chosen = select_prompts(prompts, split)
    adapter = str(resolve_adapter(config.adapter)) if config.adapter else ""

    ctx = dist_context()
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
            batch_size=batch_size or (16 if config.model == "toy" else 1),
            adapter=adapter,
            run_prompt_ids={p.prompt_id for p in run_prompts},
            dist=ctx,
            progress=progress,
        )
    finally:
        ctx.close()
