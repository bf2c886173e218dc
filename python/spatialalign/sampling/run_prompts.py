"""``RUN_DIR/prompts.parquet``: the prompts later stages score a run's videos against.

``sample --prompts FILE`` and ``ingest`` read prompts from anywhere; this makes sure the
run directory ends up with a prompts file that knows every prompt its videos use.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.rundir.layout import RunDir


def ensure_run_prompts(
    run_dir: str | os.PathLike[str],
    prompts: Sequence[DSRPrompt],
    used_ids: Iterable[str],
    *,
    write: bool = True,
) -> Path:
    """Writes ``RUN_DIR/prompts.parquet`` from ``prompts`` when absent (and ``write``);
    when present, checks it holds every id in ``used_ids`` (else one clear error)."""
    run = RunDir(run_dir)
    target = run.prompts_path
    if not target.exists():
        if write:
            run.write_prompts(list(prompts))
        return target
    have = {p.prompt_id for p in run.read_prompts()}
    missing = sorted(set(used_ids) - have)
    if missing:
        shown = ", ".join(missing[:10]) + (
            f", ... ({len(missing) - 10} more)" if len(missing) > 10 else ""
        )
        raise SpatialAlignError(
            f"{target} lacks {len(missing)} prompt id(s) used here: {shown}; "
            "use another run directory or remove that file"
        )
    return target
