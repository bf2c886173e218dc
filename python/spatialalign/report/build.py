"""``build_report``: writes a report directory (index.html beside its figures and media).

The page references every figure and video by a relative path inside the directory, so
the directory can be copied or opened from disk (``file://``) and makes no request
elsewhere; it names runs and their files by the run directory's name, never by a local
path. It also holds the comparison's own files (comparison.md/.json,
correctness_curves.png), the same that ``spatialalign compare`` writes.

``report`` writes into a new or empty directory or one it wrote before (its index.html
carries :data:`GENERATOR`; without an index.html, it holds only files a report writes),
and refuses any other (a user's own ``index.html``) unless forced; forced, it deletes
none of the directory's other files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.core.video import VideoReadError
from spatialalign.evaluation.compare import CompareConfig, Comparison, compare_runs
from spatialalign.evaluation.run_tables import (
    read_prompt_texts,
    refuse_other_texts,
    run_names,
    write_comparison,
)
from spatialalign.report.figures import per_type_bars_png, training_curves_png
from spatialalign.report.grid import Sample, shared_samples
from spatialalign.report.media import WEB_VIDEO_SUFFIX, ssr_curve_pngs, write_browser_video
from spatialalign.report.page import GENERATOR, Cell, Image, Page, Row, markdown_table, render
from spatialalign.report.runs import ReportRun, load_report_run
from spatialalign.rundir.rl import RLDir
from spatialalign.scoring.plots import plot_name

INDEX = "index.html"
MEDIA = "media"
_OWN_FILES = re.compile(
    r"index\.html|comparison\.(md|json)|correctness_curves\.png|per_type\.png|train_r\d+\.png"
    r"|rl_top_r\d+\.png"
    rf"|{MEDIA}|\..*\.tmp.*"
)
"""Names of what a report writes in its directory (and atomic writes' leftovers)."""


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    index: Path
    comparison: Comparison
    n_grid_rows: int
    n_videos: int
    warnings: list[str] = field(default_factory=list)


def _write(data: bytes, path: Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _shown(path: Path, run: ReportRun) -> str:
    """A path as the page shows it: the run directory's name and the path inside it, else
    the path's last three parts; never a local absolute path (a report is shared)."""
    path, root = Path(path).resolve(), run.run.root.resolve()
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return "/".join(path.relative_to(path.anchor).parts[-3:])


def _check_out(out: Path, force: bool) -> bool:
    """Refuses (one line) an ``--out`` that is a file, or a non-empty directory that is not
    a report of ours (unless ``force``); True when it holds one of ours."""
    if out.exists() and not out.is_dir():
        raise SpatialAlignError(f"--out {out} is a file, not a directory: name a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SpatialAlignError(f"--out {out}: {parent} is a file, not a directory")
            break
    if not out.is_dir():
        return False
    index = out / INDEX
    if index.exists():  # a report's page says so
        try:
            if GENERATOR in index.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            pass
    elif all(_OWN_FILES.fullmatch(p.name) for p in out.iterdir()):
        return True  # empty, or a report killed before its page was written
    if not force:
        raise SpatialAlignError(
            f"--out {out} is a non-empty directory that holds no report of ours: name a new "
            "or empty directory, or add --force to write the report into it"
        )
    return False


def _figures(runs: list[ReportRun], out: Path) -> tuple[Image | None, list[Image]]:
    """per_type.png from the summaries, train_rN.png from the train logs and, for an rl
    run's log, rl_top_rN.png: its latest highest-reward sheet."""
    summaries = [(r.name, r.summary) for r in runs if r.summary]
    png = per_type_bars_png(summaries) if summaries else None
    per_type = None
    if png is not None:
        _write(png, out / "per_type.png")
        per_type = Image("per_type.png", "Correctness@0.7 and validness per DSR type")
    training = []
    for i, r in enumerate(runs):
        png = training_curves_png(r.name, r.train_log) if r.train_log else None
        if png is not None:
            name = f"train_r{i}.png"
            _write(png, out / name)
            caption = _shown(r.train_log_path, r) if r.train_log_path else ""
            training.append(Image(name, f"training curves of {r.name}", caption))
        sheet = _rl_top_sheet(r)
        if sheet is not None:
            name = f"rl_top_r{i}.png"
            _write(sheet.read_bytes(), out / name)
            training.append(Image(name, f"highest-reward samples of {r.name}", _shown(sheet, r)))
    return per_type, training


def _rl_top_sheet(run: ReportRun) -> Path | None:
    """The latest highest-reward sheet of the rl run that wrote ``run``'s train log (the
    reward-hacking watch, :mod:`spatialalign.rl.watch`); None for a ``train`` run's log."""
    if run.train_log_path is None:
        return None
    rl = RLDir.of_train_log(run.train_log_path)
    return None if rl is None else rl.latest_top_sheet()


@dataclass
class _RunInfo:
    """Per run: (video path, fps) of each sample and (initial, final, text) of each prompt."""

    videos: dict[str, tuple[str, float]]
    prompts: dict[str, tuple[str, str, str]]


def _run_info(run: ReportRun, warnings: list[str]) -> _RunInfo:
    videos: dict[str, tuple[str, float]] = {}
    prompts: dict[str, tuple[str, str, str]] = {}
    try:
        m = run.run.read_manifest(["path", "fps"]).to_pydict()
        for sid, path, fps in zip(m["sample_id"], m["path"], m["fps"], strict=True):
            if path:
                videos[sid] = (path, float(fps or 0.0))
    except SpatialAlignError as e:
        warnings.append(f"{run.name}: no videos ({e})")
    try:
        prompts = {p.prompt_id: (p.initial, p.final, p.text) for p in run.run.read_prompts()}
    except (SpatialAlignError, ValueError, OSError) as e:
        warnings.append(f"{run.name}: no prompt texts ({e})")
    return _RunInfo(videos, prompts)


def _column(
    i: int,
    run: ReportRun,
    info: _RunInfo,
    chosen: list[tuple[tuple[str, int], list[Sample]]],
    out: Path,
    warnings: list[str],
) -> tuple[list[Cell], set[Path]]:
    """Run ``i``'s cells of the grid; writes its WebM copies and SSR curve PNGs."""
    samples = [cells[i] for _, cells in chosen]
    requests = []
    for s, ((pid, _), _) in zip(samples, chosen, strict=True):
        initial, final, _ = info.prompts.get(pid, ("", "", ""))
        requests.append((s.sample_id, initial, final, f"{run.name}: {s.sample_id}"))
    written: set[Path] = set()
    column = []
    for s, png in zip(samples, ssr_curve_pngs(run.run, requests), strict=True):
        stem = f"{MEDIA}/r{i}_{plot_name(s.sample_id)}"
        if png is not None:
            written.add(_write(png, out / f"{stem}_ssr.png"))
        video, missing = _video(info.videos.get(s.sample_id), out / f"{stem}{WEB_VIDEO_SUFFIX}")
        if video is not None:
            written.add(video)
        elif missing != "no video":
            warnings.append(f"{run.name}: {s.sample_id}: {missing}")
        label = f"DSR {s.dsr:.3f}" if s.valid else f"invalid ({s.reason or 'no reason'})"
        column.append(
            Cell(
                label,
                video=f"{stem}{WEB_VIDEO_SUFFIX}" if video is not None else None,
                ssr=f"{stem}_ssr.png" if png is not None else None,
                missing=missing,
            )
        )
    return column, written


def _grid(
    runs: list[ReportRun], out: Path, n: int, warnings: list[str]
) -> tuple[list[Row], set[Path]]:
    """The before/after rows: ``n`` prompt/seed pairs, a cell per run."""
    chosen = shared_samples([r.table for r in runs], n)
    if not chosen:
        return [], set()
    infos = [_run_info(r, warnings) for r in runs]
    written: set[Path] = set()
    columns = []
    for i, (run, info) in enumerate(zip(runs, infos, strict=True)):
        column, files = _column(i, run, info, chosen, out, warnings)
        columns.append(column)
        written |= files
    rows = []
    for j, ((pid, seed), _) in enumerate(chosen):
        text = next((info.prompts[pid][2] for info in infos if pid in info.prompts), "")
        rows.append(Row(pid, seed, text, [col[j] for col in columns]))
    return rows, written


def _video(src: tuple[str, float] | None, dst: Path) -> tuple[Path | None, str]:
    """(the WebM copy, "") or (None, why there is none)."""
    if src is None or not Path(src[0]).is_file():
        return None, "no video"
    try:
        return write_browser_video(src[0], dst, fps=src[1]), ""
    except VideoReadError as e:
        return None, f"unreadable video ({e})"


def _remove_stale(media: Path, keep: set[Path]) -> None:
    """Drops media files of an earlier report in the same directory."""
    if not media.is_dir():
        return
    for path in media.iterdir():
        if path.is_file() and path.suffix in (WEB_VIDEO_SUFFIX, ".png") and path not in keep:
            path.unlink()


def build_report(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    names: str | None = None,
    train_logs: Mapping[str, str | os.PathLike[str]] | None = None,
    n_grid: int = 6,
    config: CompareConfig | None = None,
    force: bool = False,
) -> ReportResult:
    """Writes ``out_dir/index.html`` comparing ``run_dirs`` (the first is the baseline).

    ``names``: comma-separated display names; ``train_logs``: run name -> JSONL train
    log (a run without one: ``RUN/run/train_log.jsonl``, else the log beside the
    adapter its videos were sampled with, when present); ``n_grid``: prompt/seed pairs
    in the before/after grid; ``force``: write into a non-empty directory that is not a
    report of ours. Runs whose shared prompt ids have other texts are refused.
    """
    if not run_dirs:
        raise SpatialAlignError("nothing to report: no run directories")
    out = Path(out_dir)
    ours = _check_out(out, force)
    labels = run_names(run_dirs, names)
    train_logs = dict(train_logs or {})
    unknown = sorted(set(train_logs) - set(labels))
    if unknown:
        raise SpatialAlignError(
            f"--train-log for unknown run(s) {', '.join(unknown)} (runs: {', '.join(labels)})"
        )
    logs = [train_logs.get(name) for name in labels]
    runs = [load_report_run(d, n, g) for d, n, g in zip(run_dirs, labels, logs, strict=True)]
    warnings = refuse_other_texts([(r.name, r.table, read_prompt_texts(r.run)) for r in runs])
    comparison = compare_runs([(r.name, r.table) for r in runs], config=config)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpatialAlignError(f"--out {out}: cannot create the directory: {e.strerror}") from e
    files = write_comparison(comparison, out)
    per_type, training = _figures(runs, out)
    grid, written = _grid(runs, out, n_grid, warnings)
    if ours:
        _remove_stale(out / MEDIA, written)
    head, rows = markdown_table(comparison.to_markdown())
    page = Page(
        title="SpatialAlign report: " + " vs ".join(labels),
        runs=[(r.name, r.run.root.resolve().name) for r in runs],
        table_head=head,
        table_rows=rows,
        curves=Image(files.curves.name, "overlaid Correctness@τ curves"),
        per_type=per_type,
        training=training,
        grid=grid if n_grid > 0 else None,
        notes=[
            "Grid: prompt/seed pairs scored in every run, the largest DSR change between "
            "the first and the last run first.",
            *(f"Δ of {line}." for line in comparison.rests_on()),
            "Videos are VP9/WebM copies enlarged with nearest-neighbour pixels; SSR curves "
            "show each frame's score for the initial and the final relation.",
            *warnings,
        ],
    )
    index = out / INDEX
    with atomic_path(index) as tmp:
        tmp.write_text(render(page), encoding="utf-8")
    n_videos = sum(1 for p in written if p.suffix == WEB_VIDEO_SUFFIX)
    return ReportResult(index, comparison, len(grid), n_videos, warnings)
