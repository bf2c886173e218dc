"""What a report reads from one run directory: its comparison table, summary and train log."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json
from spatialalign.evaluation.run_tables import read_run_table
from spatialalign.rundir.layout import RunDir
from spatialalign.rundir.train import TrainDir


@dataclass
class ReportRun:
    """One run of the report: its name, directory and what was read from it."""

    name: str
    run: RunDir
    table: pa.Table  # scores (+ metrics)
    summary: dict[str, Any] | None
    train_log: list[dict[str, Any]]
    train_log_path: Path | None


def read_train_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL train log; a bad line raises naming its number.

    ``train``'s per-step log (:attr:`TrainDir.log_path`, in ``RUN/run/``) holds one JSON
    object a line with ``step`` and the logged terms — ``loss``, ``loss_dpo``, ``loss_zo``
    (or ``loss_sft`` / ``loss_rwr``), ``score_w``, ``score_l``, ``margin``, ``accuracy``
    (implicit accuracy), ``lr``. Any subset is drawn; other keys are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise SpatialAlignError(f"train log not found: {path}")
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise SpatialAlignError(f"{path}: line {i} is not JSON: {e}") from e
        if not isinstance(record, dict):
            raise SpatialAlignError(f"{path}: line {i} is not a JSON object")
        records.append(record)
    return records


def adapter_train_log(run: RunDir) -> Path | None:
    """The train log beside the one LoRA adapter the run's videos were sampled with
    (``train`` writes both into ``RUN/run/``); None when there is none or several."""
    try:
        adapters = set(run.read_manifest(["adapter"]).column("adapter").to_pylist())
    except (SpatialAlignError, KeyError, ValueError):
        return None
    adapters.discard(None)
    adapters.discard("")
    if len(adapters) != 1:
        return None
    path = TrainDir(Path(adapters.pop()).parent).log_path
    return path if path.is_file() else None


def find_train_log(run: RunDir) -> Path | None:
    """``RUN/run/train_log.jsonl`` (the run trained), else the log beside its adapter."""
    own = run.train.log_path
    return own if own.is_file() else adapter_train_log(run)


def load_report_run(
    run_dir: str | os.PathLike[str], name: str, train_log: str | os.PathLike[str] | None = None
) -> ReportRun:
    """Reads a scored run; its train log is ``train_log`` or :func:`find_train_log`'s
    (none when neither exists); a missing summary.json is allowed (no type bars)."""
    run = RunDir(run_dir).require()
    table = read_run_table(run.root)
    summary = read_json(run.summary_path) if run.summary_path.is_file() else None
    log_path = Path(train_log) if train_log is not None else find_train_log(run)
    records = read_train_log(log_path) if log_path is not None else []
    return ReportRun(name, run, table, summary, records, log_path)
