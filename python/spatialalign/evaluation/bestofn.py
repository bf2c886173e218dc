"""Best-of-N, the inference-time baseline: the DSR-Score as verifier over N candidates.

**Seeds.** A run of ``S`` seed slots from first seed ``F`` (``--seeds S --first-seed F``)
samples, per prompt, the candidate seeds ``F .. F+S*N-1`` into ``RUN/candidates/`` (a run
directory of its own); candidate ``k`` of slot ``s`` (``s`` in ``0..S-1``) has seed
``F + s + k*S`` (:func:`candidate_seed`). So candidate 0 of every slot is the base run's
video of that slot (same prompt, seed ``F+s`` and model), and the candidates of
best-of-N are a subset of those of best-of-M for M > N: rerunning a run directory with a
larger ``--best-of`` samples only the new seeds.

**Selection.** Per (prompt, slot) the valid candidate with the highest DSR-Score wins; an
invalid candidate loses to any valid one; ties go to the lowest ``k`` (so with no valid
candidate, candidate 0 is kept, invalid). :func:`select_best` is a pure function of the
candidates' ``scores.parquet``.

**The selected run.** ``RUN/samples/manifest.parquet`` lists the kept videos under the
*slot's* sample id and seed (``{prompt_id}_F{frames}_seed{F+s}``, seed ``F+s``: the base
run's name for that slot), its ``path`` pointing at the candidate's video in
``candidates/samples/``, and its provenance record the candidate's (whose ``seed`` is the
real one) plus a ``best_of`` entry. ``selection.parquet`` says which candidate each slot
(``slot`` = ``s``) kept. ``track`` and ``score-batch`` then treat the directory like any run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from spatialalign.core.errors import SpatialAlignError
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.manifest import PROVENANCE, Row, read_rows, write_rows
from spatialalign.sampling.naming import sample_id

MAX_BEST_OF = 100

SELECTION = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("slot", pa.int64()),
        ("sample_id", pa.string()),
        ("candidate", pa.string()),
        ("candidate_seed", pa.int64()),
        ("k", pa.int64()),
        ("valid", pa.bool_()),
        ("dsr", pa.float64()),
        ("n_candidates", pa.int64()),
        ("n_valid_candidates", pa.int64()),
    ]
)
"""``selection.parquet``: per (prompt, slot) the kept candidate (its sample id, seed and
index ``k``), its validity and DSR, and how many candidates (valid ones) it beat."""


def candidate_seed(slot: int, k: int, seeds: int, first_seed: int = 0) -> int:
    """The seed of candidate ``k`` of seed slot ``slot`` (``0..seeds-1``) when a run has
    ``seeds`` slots from ``first_seed``: ``first_seed + slot + k*seeds``."""
    if not (0 <= slot < seeds and k >= 0):
        raise ValueError(f"bad slot/candidate {slot}/{k} for {seeds} slot(s)")
    return first_seed + slot + k * seeds


def check_best_of(best_of: int, seeds: int, max_seeds: int) -> None:
    """Refuses a ``--best-of`` that is not 1..MAX_BEST_OF or needs too many seeds (the
    seed range itself is :func:`spatialalign.sampling.seeds.check_seeds`'s)."""
    if not 1 <= best_of <= MAX_BEST_OF:
        raise SpatialAlignError(f"--best-of must be in 1..{MAX_BEST_OF}, got {best_of}")
    if best_of * seeds > max_seeds:
        raise SpatialAlignError(
            f"--best-of {best_of} x --seeds {seeds} needs {best_of * seeds} seeds per prompt "
            f"(at most {max_seeds})"
        )


def select_best(candidates: pa.Table, best_of: int, seeds: int, first_seed: int = 0) -> pa.Table:
    """The :data:`SELECTION` table of a candidates scores table (sample_id, prompt_id, seed,
    valid, dsr), one row per (prompt, slot), sorted by prompt and slot.

    Every slot must have all ``best_of`` candidates (seeds ``first_seed ..
    first_seed+seeds*best_of-1``); ``sample_id`` is left empty (the caller knows the frame
    count that names it).
    """
    cols = candidates.select(["sample_id", "prompt_id", "seed", "valid", "dsr"]).to_pydict()
    groups: dict[tuple[str, int], dict[int, tuple[str, bool, float]]] = {}
    for sid, pid, seed, valid, dsr in zip(*cols.values(), strict=True):
        if seed is None or not first_seed <= seed < first_seed + seeds * best_of:
            continue  # a seed of another --best-of/--seeds/--first-seed: not a candidate here
        k, slot = divmod(seed - first_seed, seeds)
        dsr = float("nan") if dsr is None else float(dsr)
        groups.setdefault((pid, slot), {})[k] = (sid, bool(valid) and np.isfinite(dsr), dsr)
    rows = []
    for (pid, slot), by_k in sorted(groups.items()):
        missing = sorted(set(range(best_of)) - set(by_k))
        if missing:
            raise SpatialAlignError(
                f"prompt {pid!r} slot {slot}: no scores for candidate(s) {missing} "
                "(the candidates were not all sampled, tracked and scored)"
            )
        # highest (valid, dsr), then lowest k
        k = min(by_k, key=lambda j: (not by_k[j][1], -by_k[j][2] if by_k[j][1] else 0.0, j))
        sid, valid, dsr = by_k[k]
        rows.append(
            {
                "prompt_id": pid,
                "slot": slot,
                "sample_id": "",
                "candidate": sid,
                "candidate_seed": candidate_seed(slot, k, seeds, first_seed),
                "k": k,
                "valid": valid,
                "dsr": dsr if valid else float("nan"),
                "n_candidates": len(by_k),
                "n_valid_candidates": sum(v for _, v, _ in by_k.values()),
            }
        )
    return pa.Table.from_pylist(rows, SELECTION)


def selected_rows(
    run: RunDir, candidates: RunDir, selection: pa.Table, best_of: int, first_seed: int = 0
) -> tuple[list[Row], pa.Table]:
    """The run's manifest rows for the kept candidates (the slots' sample ids and seeds,
    ``first_seed + slot``; paths into ``candidates/samples/``) and ``selection`` with its
    ``sample_id`` filled in."""
    by_id: Mapping[str, Row] = {r["sample_id"]: r for r in read_rows(candidates.manifest_path)}
    rows, ids = [], []
    for sel in selection.to_pylist():
        cand = by_id.get(sel["candidate"])
        if cand is None:
            raise SpatialAlignError(
                f"{candidates.manifest_path} lacks the selected candidate {sel['candidate']!r}"
            )
        seed = first_seed + int(sel["slot"])
        sid = sample_id(sel["prompt_id"], int(cand["num_frames"]), seed)
        video = candidates.resolve_video(cand["path"])
        record: dict[str, Any] = dict(cand.get(PROVENANCE) or {})
        record["best_of"] = {
            "n": best_of,
            "k": sel["k"],
            "candidate": sel["candidate"],
            "candidate_seed": sel["candidate_seed"],
        }
        rows.append(
            {
                **{k: v for k, v in cand.items() if k != PROVENANCE},
                "sample_id": sid,
                "seed": seed,
                "path": run.stored_video_path(video) if video is not None else None,
                PROVENANCE: record,
            }
        )
        ids.append(sid)
    index = selection.schema.get_field_index("sample_id")
    return rows, selection.set_column(index, "sample_id", pa.array(ids, pa.string()))


def write_selected_manifest(run: RunDir, rows: list[Row]) -> None:
    """Writes the run's manifest of kept videos (atomically, replacing an earlier one)."""
    run.samples_dir.mkdir(parents=True, exist_ok=True)
    write_rows(rows, run.manifest_path)
