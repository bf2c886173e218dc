"""An iteration's rewards table (``rl/iter-NNNNNNN.parquet``): every sampled video's verdict
(``scores.parquet``'s columns) with its reward, advantage and the top-k filter's choice.

Its provenance record says what the videos were sampled with: the iteration, the run's
settings key and a hash of the LoRA weights before the iteration's update.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.provenance import with_record
from spatialalign.core.schemas import SCORES

REWARDS = pa.schema(
    [
        pa.field("iteration", pa.int64(), nullable=False),
        *SCORES,
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("advantage", pa.float64(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
    ]
)
"""``iteration`` + ``scores.parquet``'s columns + ``reward``, ``advantage``, ``kept``."""


def sample_id(prompt_id: str, iteration: int, seed: int) -> str:
    """A sampled video's id: ``{prompt_id}_it{iteration:06d}_seed{seed}``."""
    return f"{prompt_id}_it{int(iteration):06d}_seed{int(seed)}"


def rewards_table(
    iteration: int,
    prompt_ids: list[str],
    seeds: list[int],
    verdicts: Any,
    rewards: np.ndarray,
    advantages: np.ndarray,
    kept: np.ndarray,
    record: dict[str, Any],
) -> pa.Table:
    """The table of one iteration (``verdicts``: :class:`~spatialalign.rl.reward.Verdicts`)."""
    n = len(prompt_ids)
    columns: dict[str, Any] = {
        "iteration": pa.array([int(iteration)] * n, pa.int64()),
        "sample_id": [sample_id(p, iteration, s) for p, s in zip(prompt_ids, seeds, strict=True)],
        "prompt_id": prompt_ids,
        "seed": pa.array([int(s) for s in seeds], pa.int64()),
        "valid": pa.array(np.asarray(verdicts.valid, dtype=bool)),
        "reason": verdicts.reason,
    }
    for name in ("dsr", "r_init", "r_final", "g_init", "g_final"):
        columns[name] = pa.array(np.asarray(verdicts.terms[name], dtype=np.float64))
    columns["n_kept"] = pa.array(np.asarray(verdicts.n_kept, dtype=np.int64))
    columns["reward"] = pa.array(np.asarray(rewards, dtype=np.float64))
    columns["advantage"] = pa.array(np.asarray(advantages, dtype=np.float64))
    columns["kept"] = pa.array(np.asarray(kept, dtype=bool))
    return with_record(pa.table(columns, schema=REWARDS), record)


def write_rewards(table: pa.Table, path: Path) -> Path:
    """Writes an iteration's table atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_parquet(table, path)


def read_rewards(path: Path) -> pa.Table:
    """An iteration's table (a clear error when missing or unreadable)."""
    return read_parquet(path, "rl rewards")


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """blake2b of named tensors (the LoRA a batch was sampled with), for the records."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
