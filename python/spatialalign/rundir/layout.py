"""The layout of a run directory (DESIGN.md, "Files between stages"), owned in one place.

Every stage gets its paths from :class:`RunDir` and reads the prompts, the manifest
and the scores through it, so a file name is defined once and a table is validated
the same way wherever it is read. Paths built from data (a video per sample id) go
through :meth:`RunDir.video_path`, which refuses ids that could leave the directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pyarrow as pa

from spatialalign.core.dsr.files import (
    official_csv_text,
    prompts_table,
    read_prompts,
    write_prompts,
)
from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, exclusive_lock, read_parquet, write_parquet
from spatialalign.core.ids import MAX_SAMPLE_ID_LENGTH, check_id, id_problem, refuse_duplicates
from spatialalign.core.provenance import record_of
from spatialalign.core.schemas import validate_table
from spatialalign.rundir.base import DirLayout
from spatialalign.rundir.train import CacheDir, TrainDir

PROMPTS_FILE = "prompts.parquet"
OFFICIAL_CSV_FILE = "prompts_official.csv"
VIDEO_SUFFIX = ".mp4"
LOCK_NAME = ".spatialalign.lock"
"""The lock file of a directory a stage holds exclusively (hidden: fingerprints skip it)."""
SAMPLE_RECORDS = "samples"
"""Key, in the manifest's provenance record, of ``{sample_id: what the sample was made from}``."""


def plot_name(sample_id: str) -> str:
    """The SSR plot file stem of a sample: the id itself when it is a safe id, else a
    cleaned id plus ``~`` and a hash of the id (``~`` is outside the safe set), so two
    ids never share a file."""
    if id_problem(sample_id, MAX_SAMPLE_ID_LENGTH) is None:
        return sample_id
    digest = hashlib.blake2b(sample_id.encode(), digest_size=8).hexdigest()
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '_', sample_id)[:100]}~{digest}"


def check_manifest(
    table: pa.Table, path: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> pa.Table:
    """Validates a manifest (or manifest part) table: schema, safe unique sample ids.

    ``columns`` limits the schema check to what the reader needs (sample_id is always
    checked); returns the table with types cast to the schema.
    """
    wanted = None if columns is None else list(dict.fromkeys(["sample_id", *columns]))
    table = validate_table(table, "manifest", path, columns=wanted)
    ids = table.column("sample_id").to_pylist()
    for i, sid in enumerate(ids):
        if id_problem(sid, MAX_SAMPLE_ID_LENGTH) is not None:
            check_id(sid, "sample_id", f"{path}: row {i}", MAX_SAMPLE_ID_LENGTH)
    refuse_duplicates(ids, str(path), "sample_id")
    return table


class RunDir(DirLayout):
    """One experiment's directory and the names of every file the stages write in it."""

    # ------------------------------------------------------------------ paths
    @property
    def prompts_path(self) -> Path:
        return self.root / PROMPTS_FILE

    @property
    def official_csv_path(self) -> Path:
        """The prompts in the official CSV format (``prompts --official-csv``)."""
        return self.root / OFFICIAL_CSV_FILE

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def manifest_path(self) -> Path:
        return self.samples_dir / "manifest.parquet"

    @property
    def manifest_parts_dir(self) -> Path:
        """Per-worker manifest parts of ``sample`` (merged into the manifest)."""
        return self.samples_dir / ".manifest-parts"

    @property
    def manifest_lock_path(self) -> Path:
        return self.samples_dir / ".manifest.lock"

    def manifest_part_path(self, rank: int) -> Path:
        """The manifest part written by worker ``rank``."""
        return self.manifest_parts_dir / f"rank{int(rank):05d}.parquet"

    @property
    def tracks_path(self) -> Path:
        return self.root / "tracks.parquet"

    @property
    def detections_path(self) -> Path:
        return self.root / "detections.parquet"

    @property
    def track_parts_dir(self) -> Path:
        """``track``'s resumable per-sample results, one sub-directory per settings key."""
        return self.root / "track_parts"

    def track_settings_path(self, settings_key: str) -> Path:
        """What a settings key stands for (JSON), beside its parts."""
        return self.track_parts_dir / check_id(settings_key, "track settings key") / "settings.json"

    def track_part_paths(self, settings_key: str, sample_id: str) -> tuple[Path, Path]:
        """(tracks part, detections part) of one sample under one settings key."""
        check_id(settings_key, "track settings key")
        sid = check_id(sample_id, "sample_id", max_length=MAX_SAMPLE_ID_LENGTH)
        parts = self.track_parts_dir / settings_key
        return parts / f"{sid}.tracks.parquet", parts / f"{sid}.det.parquet"

    @property
    def scores_path(self) -> Path:
        return self.root / "scores.parquet"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def correctness_path(self) -> Path:
        return self.root / "correctness.png"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plot_path(self, sample_id: str) -> Path:
        """``plots/{sample_id}.png``: one sample's SSR curves (``score-batch --plots``)."""
        return self.plots_dir / f"{plot_name(sample_id)}.png"

    @property
    def metrics_path(self) -> Path:
        """``eval``'s per-sample metrics table."""
        return self.root / "metrics.parquet"

    @property
    def candidates_dir(self) -> Path:
        """``eval --best-of N``'s candidate videos: a run directory of its own (``RUN/candidates/``)."""
        return self.root / "candidates"

    @property
    def selection_path(self) -> Path:
        """``eval --best-of N``: which candidate each seed slot kept, and why."""
        return self.root / "selection.parquet"

    @property
    def sampling_cost_path(self) -> Path:
        """``eval``'s record of the sampling time spent per video (JSON)."""
        return self.root / "sampling_cost.json"

    @property
    def pairs_path(self) -> Path:
        return self.root / "pairs.parquet"

    @property
    def cache_dir(self) -> Path:
        """``train``'s latents and text embeddings (safetensors)."""
        return self.root / "cache"

    @property
    def cache(self) -> CacheDir:
        """The paths inside :attr:`cache_dir`."""
        return CacheDir(self.cache_dir)

    @property
    def train_dir(self) -> Path:
        """``train``'s output: the LoRA, checkpoints, logs (``RUN/run/``)."""
        return self.root / "run"

    @property
    def train(self) -> TrainDir:
        """The paths inside :attr:`train_dir` (the adapter, checkpoints, train log...)."""
        return TrainDir(self.train_dir)

    @property
    def lock_path(self) -> Path:
        """The run's lock file: a stage that must not run twice at once holds it
        (:meth:`lock`)."""
        return self.root / LOCK_NAME

    def lock(self, stage: str) -> AbstractContextManager[None]:
        """Holds the run's exclusive lock while ``stage`` works on it; a second process
        fails at once with "another STAGE is running on RUN (pid N)"
        (:func:`spatialalign.core.fileio.exclusive_lock`)."""
        return exclusive_lock(self.lock_path, stage, self.root)

    def video_path(self, sample_id: str) -> Path:
        """``samples/{sample_id}.mp4``; refuses an id that could name a file elsewhere."""
        sid = check_id(sample_id, "sample_id", max_length=MAX_SAMPLE_ID_LENGTH)
        path = self.samples_dir / f"{sid}{VIDEO_SUFFIX}"
        # belt and braces: the checked charset already rules out separators and '..'
        if path.parent != self.samples_dir or Path(os.path.normpath(path)) != path:
            raise SpatialAlignError(f"sample_id {sample_id!r} would leave {self.samples_dir}")
        return path

    def stored_video_path(self, path: Path) -> str:
        """What the manifest records for a video: relative to the run dir when inside it
        (so the directory can move), else absolute."""
        path = Path(path)
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())

    def resolve_video(self, stored: str | None) -> Path | None:
        """The file a manifest ``path`` names now: relative paths are under the run dir; an
        absolute path that no longer exists but whose name is in ``samples/`` (a moved run
        directory) is found there. None when the manifest has no path."""
        if not stored:
            return None
        path = Path(stored)
        if not path.is_absolute():
            return (self.root / path).absolute()
        if not path.exists():
            moved = self.samples_dir / path.name
            if moved.is_file():
                return moved.absolute()
        return path

    # ------------------------------------------------------------------ tables
    def require(self) -> RunDir:
        """Raises when the run directory does not exist."""
        if not self.root.is_dir():
            raise SpatialAlignError(f"run directory not found: {self.root}")
        return self

    def read_prompts(self, path: str | os.PathLike[str] | None = None) -> list[DSRPrompt]:
        """The run's prompts (``path`` overrides ``prompts.parquet``), ids checked and unique."""
        source = Path(path) if path is not None else self.prompts_path
        if not source.is_file():
            hint = "" if path is not None else " (run `spatialalign prompts` or pass --prompts)"
            raise SpatialAlignError(f"prompts file not found: {source}{hint}")
        return read_prompts(source)

    def write_prompts(self, prompts: Sequence[DSRPrompt]) -> Path:
        """Writes the run's ``prompts.parquet`` atomically: the one writer of it (``sample``,
        ``ingest``, ``eval`` and the loop's TRAIN prompts all come through here)."""
        return write_prompts(prompts, self.prompts_path)

    def publish_prompts(
        self, prompts: Sequence[DSRPrompt], *, official_csv: bool = False, force: bool = False
    ) -> dict[Path, str]:
        """The ``prompts`` stage's write: ``prompts.parquet`` (and the official CSV) unless
        they already hold exactly these prompts.

        Returns ``{path: "written" | "unchanged"}``. A file that exists with other content
        is an error unless ``force``, since later stages key their work on it.
        """
        table = prompts_table(prompts)
        path = self.prompts_path
        status: dict[Path, str] = {}
        if _up_to_date(path, lambda: read_parquet(path).equals(table), force):
            status[path] = "unchanged"
        else:
            write_parquet(table, path)
            status[path] = "written"
        if official_csv:
            data = official_csv_text(prompts).encode("utf-8")
            csv_path = self.official_csv_path
            if _up_to_date(csv_path, lambda: csv_path.read_bytes() == data, force):
                status[csv_path] = "unchanged"
            else:
                with atomic_path(csv_path) as tmp:
                    tmp.write_bytes(data)
                status[csv_path] = "written"
        return status

    def read_manifest(
        self, columns: Sequence[str] | None = None, *, resolve_paths: bool = True
    ) -> pa.Table:
        """The validated manifest (``columns`` only, when given); ``path`` resolved with
        :meth:`resolve_video` unless ``resolve_paths`` is False."""
        path = self.manifest_path
        table = check_manifest(read_parquet(path, "manifest"), path, columns)
        if columns is not None:
            table = table.select(list(dict.fromkeys(["sample_id", *columns])))
        if resolve_paths and "path" in table.column_names:
            resolved = [self.resolve_video(p) for p in table.column("path").to_pylist()]
            index = table.column_names.index("path")
            table = table.set_column(
                index, "path", pa.array([None if p is None else str(p) for p in resolved])
            )
        return table

    def sample_records(self) -> dict[str, dict]:
        """sample_id -> what ``sample``/``ingest`` recorded it was made from (prompt text,
        seed, model, adapter, settings, the video's content ``fingerprint``); ``{}`` when
        the manifest has no record."""
        if not self.manifest_path.is_file():
            return {}
        records = (record_of(self.manifest_path) or {}).get(SAMPLE_RECORDS) or {}
        return {k: v for k, v in records.items() if isinstance(v, dict)}

    def read_scores(self) -> pa.Table:
        """``scores.parquet``, validated; sample ids unique."""
        path = self.scores_path
        table = validate_table(read_parquet(path, "scores"), "scores", path)
        refuse_duplicates(table.column("sample_id").to_pylist(), str(path), "sample_id")
        return table


def _up_to_date(path: Path, content: Callable[[], bool], force: bool) -> bool:
    """True when ``path`` already holds what we would write; refuses to clobber other content."""
    if not path.exists() or force:
        return False
    try:
        if content():
            return True
    except (SpatialAlignError, OSError, pa.ArrowException):
        pass
    raise SpatialAlignError(f"{path} exists with different content; pass --force to overwrite it")
