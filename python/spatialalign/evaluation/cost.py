"""The sampling compute an evaluation spent: wall seconds per video, kept across reruns.

``sample`` reports the seconds of one call; a rerun that reuses every video spends none,
yet the run's videos still cost what they cost. ``RUN/sampling_cost.json`` keeps, per
sampled video, its content fingerprint and its share of the call that made it (the
call's seconds over the videos it generated, model loading excluded). A video whose
fingerprint is unchanged keeps its seconds; a video made by some other call (``sample``
before ``eval``) counts with unknown seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from spatialalign.core.fileio import read_json, write_json
from spatialalign.rundir.layout import RunDir


def update_cost(
    ledger_run: RunDir,
    sampled: RunDir,
    sample_ids: Collection[str],
    *,
    generated: int,
    seconds: float,
) -> dict[str, Any]:
    """Updates ``ledger_run``'s ledger for the ``sample_ids`` of ``sampled`` after a ``sample``
    call that generated ``generated`` videos in ``seconds``; returns :func:`cost_summary`.

    A video is attributed to this call when the ledger lacks it or records another
    fingerprint; when the call generated nothing such videos have unknown seconds.
    """
    path = ledger_run.sampling_cost_path
    old: Mapping[str, Any] = {}
    if path.is_file():
        loaded = read_json(path)
        old = loaded.get("videos", {}) if isinstance(loaded, dict) else {}
    records = sampled.sample_records()
    per_video = seconds / generated if generated else None
    videos: dict[str, dict[str, Any]] = {}
    for sid in sorted(sample_ids):
        fp = (records.get(sid) or {}).get("fingerprint")
        known = old.get(sid)
        if isinstance(known, dict) and fp is not None and known.get("fingerprint") == fp:
            videos[sid] = known
        else:
            videos[sid] = {"fingerprint": fp, "seconds": per_video}
    write_json({"videos": videos}, path)
    return cost_summary(videos)


def cost_summary(videos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``videos_sampled``, ``wall_seconds`` (sum of the known ones) and ``unknown_seconds``
    (videos made by another call)."""
    known = [v["seconds"] for v in videos.values() if isinstance(v.get("seconds"), int | float)]
    return {
        "videos_sampled": len(videos),
        "wall_seconds": float(sum(known)),
        "unknown_seconds": len(videos) - len(known),
    }
