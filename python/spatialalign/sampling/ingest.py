"""``spatialalign ingest``: bring videos from any other model into a run directory.

Videos named the official way, ``{prompt_id}_F81_seed{NN}.mp4``, give their prompt and
seed directly; any other ``{prompt_id}*.mp4`` is matched to the longest prompt id its
name starts with (followed by a non-alphanumeric character or nothing) and numbered
after that prompt's official seeds, in name order. The manifest references the files
where they are (``--copy`` copies them into ``RUN_DIR/samples/`` instead), with
``model="external"`` and sizes probed by PyAV.

Decisions, so scores stay honest:

* a video whose name matches no prompt id is an error listing the names (they cannot be
  scored); ``--ignore-unknown`` leaves them out instead and reports how many;
* an unreadable video is *kept* in the manifest with null frame count/fps/size and
  reported: ``track`` then rejects it as ``unreadable_video`` and it counts as an invalid
  video in Correctness, as a broken generation should;
* a file name whose sample id is not a safe id (:mod:`spatialalign.core.ids`) is refused,
  naming the file: sample ids become file names in later stages.

Each manifest row records the video's content fingerprint
(:func:`spatialalign.core.provenance.fingerprint`); ``--copy`` recopies a file whose
fingerprint differs from the copy's (not just its size), and ``track`` redoes videos
whose content changed since it last saw them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from spatialalign.core.dsr.model import DSRPrompt
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.core.ids import MAX_SAMPLE_ID_LENGTH, check_id
from spatialalign.core.provenance import fingerprint
from spatialalign.rundir.layout import VIDEO_SUFFIX, RunDir
from spatialalign.sampling.manifest import (
    PROVENANCE,
    Row,
    manifest_lock,
    merge_rows,
    read_rows,
    write_rows,
)
from spatialalign.sampling.naming import parse_video_name
from spatialalign.sampling.probe import VideoReadError, probe_video
from spatialalign.sampling.run_prompts import ensure_run_prompts

EXTERNAL_MODEL = "external"


@dataclass(frozen=True)
class MatchedVideo:
    """A video file and the prompt and seed it belongs to."""

    path: Path
    prompt_id: str
    seed: int
    sample_id: str


@dataclass
class IngestResult:
    """What ``ingest`` recorded."""

    videos: int
    prompts: int
    unreadable: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    manifest: Path = Path()
    seconds: float = 0.0
    copied: int = 0
    """Files copied (``--copy``) because the run dir had no identical copy."""
    changed: int = 0
    """Samples already in the manifest whose video content is now different."""

    def summary(self) -> str:
        """The verb's one-line summary."""
        extra = ""
        if self.unreadable:
            extra += f", {len(self.unreadable)} unreadable (kept; track rejects them)"
        if self.unknown:
            extra += f", {len(self.unknown)} with no matching prompt left out"
        if self.changed:
            extra += f", {self.changed} with new content (track redoes them)"
        if self.copied:
            extra += f", {self.copied} copied"
        return (
            f"ingest: {self.videos} video(s) of {self.prompts} prompt(s){extra}; "
            f"{self.seconds:.1f} s -> {self.manifest}"
        )


def _list(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def find_videos(videos_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``.mp4`` files directly inside ``videos_dir``, sorted by name."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise SpatialAlignError(f"videos directory not found: {videos_dir}")
    return sorted(
        p
        for p in videos_dir.iterdir()
        if p.is_file() and p.name.lower().endswith(VIDEO_SUFFIX) and not p.name.startswith(".")
    )


def _prefix_match(stem: str, ids_longest_first: Sequence[str]) -> str | None:
    for pid in ids_longest_first:
        if stem == pid or (stem.startswith(pid) and not stem[len(pid)].isalnum()):
            return pid
    return None


def match_videos(
    files: Sequence[Path], prompt_ids: Sequence[str]
) -> tuple[list[MatchedVideo], list[str]]:
    """Assigns each file a prompt and seed; returns (matched, names of unmatched files)."""
    known = set(prompt_ids)
    by_length = sorted(known, key=len, reverse=True)
    official: list[MatchedVideo] = []
    fallback: dict[str, list[Path]] = defaultdict(list)
    unknown: list[str] = []
    stems: dict[str, str] = {}
    for path in files:
        stem = path.name[: -len(VIDEO_SUFFIX)]
        check_id(stem, "sample id (the file name)", str(path), MAX_SAMPLE_ID_LENGTH)
        if stem in stems:
            raise SpatialAlignError(
                f"two videos share the sample id {stem!r}: {stems[stem]} and {path.name}"
            )
        stems[stem] = path.name
        parsed = parse_video_name(path.name)
        if parsed is not None and parsed.prompt_id in known:
            official.append(MatchedVideo(path, parsed.prompt_id, parsed.seed, stem))
            continue
        pid = _prefix_match(stem, by_length)
        if pid is None:
            unknown.append(path.name)
        else:
            fallback[pid].append(path)
    taken: dict[str, set[int]] = defaultdict(set)
    for m in official:
        taken[m.prompt_id].add(m.seed)
    matched = list(official)
    for pid, paths in fallback.items():
        seed = 0
        for path in sorted(paths):
            while seed in taken[pid]:
                seed += 1
            taken[pid].add(seed)
            matched.append(MatchedVideo(path, pid, seed, path.name[: -len(VIDEO_SUFFIX)]))
    matched.sort(key=lambda m: (m.prompt_id, m.seed, m.sample_id))
    return matched, unknown


def _copy(src: Path, dst: Path, src_fingerprint: str) -> bool:
    """Copies ``src`` to ``dst`` atomically unless ``dst`` has the same content; True if copied."""
    if dst.is_file() and fingerprint(dst) == src_fingerprint:
        return False
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return True


def match_prompt_videos(
    videos_dir: Path, prompts: Sequence[DSRPrompt], ignore_unknown: bool
) -> tuple[list[MatchedVideo], list[str]]:
    """The ``.mp4`` files of ``videos_dir`` matched to ``prompts`` (and the unmatched
    names, an error unless ``ignore_unknown``)."""
    files = find_videos(videos_dir)
    if not files:
        raise SpatialAlignError(f"no .mp4 videos in {videos_dir}")
    ids = [p.prompt_id for p in prompts]
    if not ids or any(not i for i in ids):
        raise SpatialAlignError("every prompt needs a prompt_id to match videos against")
    matched, unknown = match_videos(files, ids)
    if unknown and not ignore_unknown:
        raise SpatialAlignError(
            f"{len(unknown)} video(s) in {videos_dir} match no prompt id: {_list(unknown)} "
            "(--ignore-unknown leaves them out)"
        )
    if not matched:
        raise SpatialAlignError(f"no video in {videos_dir} matches a prompt id")
    return matched, unknown


def video_row(
    run: RunDir, m: MatchedVideo, path: Path, content: str, model: str
) -> tuple[Row, bool]:
    """``m``'s manifest row for its video at ``path`` (content fingerprint ``content``) and
    whether the video could be read (else its video fields stay None)."""
    row: Row = {
        "sample_id": m.sample_id,
        "prompt_id": m.prompt_id,
        "seed": m.seed,
        "model": model,
        "adapter": "",
        "path": run.stored_video_path(path),
        "num_frames": None,
        "fps": None,
        "height": None,
        "width": None,
        PROVENANCE: {"source": str(m.path), "fingerprint": content},
    }
    try:
        info = probe_video(path)
    except VideoReadError:
        return row, False
    row.update(num_frames=info.num_frames, fps=info.fps, height=info.height, width=info.width)
    return row, True


def ingest_rows(
    run: RunDir,
    matched: Sequence[MatchedVideo],
    result: IngestResult,
    *,
    copy: bool,
    model: str,
    progress: bool,
) -> list[Row]:
    """The manifest rows of ``matched`` (copied into the run first with ``copy``), counting
    copies, changed contents and unreadable videos into ``result``."""
    before = {r["sample_id"]: r for r in read_rows(run.manifest_path)}
    rows: list[Row] = []
    for m in tqdm(matched, unit="video", desc="ingest", disable=not progress):
        content = fingerprint(m.path)
        path = m.path
        if copy:
            path = run.video_path(m.sample_id)
            result.copied += _copy(m.path, path, content)
        old = (before.get(m.sample_id) or {}).get(PROVENANCE) or {}
        result.changed += bool(old) and old.get("fingerprint") != content
        row, readable = video_row(run, m, path, content, model)
        if not readable:
            result.unreadable.append(m.path.name)
        rows.append(row)
    return rows


def ingest_videos(
    videos_dir: str | os.PathLike[str],
    prompts: Sequence[DSRPrompt],
    run_dir: str | os.PathLike[str] | None = None,
    *,
    copy: bool = False,
    ignore_unknown: bool = False,
    model: str = EXTERNAL_MODEL,
    progress: bool = True,
) -> IngestResult:
    """Writes ``RUN_DIR/samples/manifest.parquet`` for the videos in ``videos_dir``.

    ``run_dir`` defaults to ``videos_dir``. Existing manifest rows of other samples are
    kept; rerunning is idempotent.
    """
    start = time.perf_counter()
    videos_dir = Path(videos_dir).resolve()
    run = RunDir(Path(run_dir).resolve() if run_dir is not None else videos_dir)
    matched, unknown = match_prompt_videos(videos_dir, prompts, ignore_unknown)
    ensure_run_prompts(run.root, prompts, {m.prompt_id for m in matched})

    result = IngestResult(
        videos=len(matched),
        prompts=len({m.prompt_id for m in matched}),
        unknown=unknown,
        manifest=run.manifest_path,
    )
    rows = ingest_rows(run, matched, result, copy=copy, model=model, progress=progress)
    with manifest_lock(run):
        write_rows(merge_rows(read_rows(run.manifest_path), rows), run.manifest_path)
    result.seconds = time.perf_counter() - start
    return result
