"""The report's HTML: plain HTML and CSS, no scripts, every resource a relative file.

Nothing here reads files; :mod:`.build` gathers the content into a :class:`Page` and
this module only renders it (text escaped, paths URL-quoted).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from urllib.parse import quote

GENERATOR = '<meta name="generator" content="spatialalign report">'
"""In every page ``report`` writes: a rerun may rewrite a directory whose index.html has it."""

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } th, td { padding: 0.3em 0.7em; text-align: left; }
table.cmp th, table.cmp td { border-bottom: 1px solid #e3e3e3; }
table.cmp td { font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0.4em 0; }
figure img { max-width: 100%; width: 560px; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
table.grid td, table.grid th { vertical-align: top; border-top: 1px solid #e3e3e3; }
table.grid th.prompt { max-width: 16em; font-weight: normal; font-size: 0.9em; }
.sample { display: flex; gap: 0.4em; align-items: flex-start; }
.sample video { width: 160px; height: auto; image-rendering: pixelated; background: #000; }
.sample img { width: 240px; height: auto; }
.missing { width: 160px; height: 120px; display: flex; align-items: center;
           justify-content: center; background: #f3f3f3; color: #888; font-size: 0.85em; }
.label { font-size: 0.85em; font-variant-numeric: tabular-nums; }
.muted { color: #777; font-size: 0.9em; }
code { font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Image:
    """A figure file of the report, by its path relative to index.html."""

    src: str
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Cell:
    """One run's sample in a grid row: its video, SSR curves and score label."""

    label: str
    video: str | None = None
    ssr: str | None = None
    missing: str = "no video"


@dataclass(frozen=True)
class Row:
    """A prompt/seed pair of the grid, one cell per run."""

    prompt_id: str
    seed: int
    prompt: str
    cells: list[Cell]


@dataclass(frozen=True)
class Page:
    """Everything the report shows."""

    title: str
    runs: list[tuple[str, str]]  # (name, directory)
    table_head: list[str]
    table_rows: list[list[str]]
    curves: Image | None = None
    per_type: Image | None = None
    training: list[Image] = field(default_factory=list)
    grid: list[Row] | None = field(default_factory=list)  # None: no grid section
    notes: list[str] = field(default_factory=list)


def markdown_table(md: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a pipe table such as :meth:`Comparison.to_markdown` writes."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip().startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    if not cells:
        return [], []
    return cells[0], [r for r in cells[1:] if not all(set(c) <= {"-", ":"} for c in r)]


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _src(path: str) -> str:
    return _e(quote(path))


def _image(img: Image | None, missing: str) -> str:
    if img is None:
        return f'<p class="muted">{_e(missing)}</p>'
    cap = f"<figcaption>{_e(img.caption)}</figcaption>" if img.caption else ""
    return f'<figure><img src="{_src(img.src)}" alt="{_e(img.alt)}">{cap}</figure>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="cmp"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _cell(cell: Cell) -> str:
    if cell.video:
        video = (
            # muted autoplay is allowed everywhere; no controls, so nothing covers a
            # 160 px clip (a still page, e.g. a screenshot, shows its first frame)
            f'<video src="{_src(cell.video)}" autoplay muted loop playsinline '
            f'preload="auto" title="{_e(cell.label)}"></video>'
        )
    else:
        video = f'<div class="missing">{_e(cell.missing)}</div>'
    ssr = f'<img src="{_src(cell.ssr)}" alt="SSR curves">' if cell.ssr else ""
    return (
        f'<td><div class="sample">{video}{ssr}</div><div class="label">{_e(cell.label)}</div></td>'
    )


def _grid(names: list[str], rows: list[Row]) -> str:
    if not rows:
        return '<p class="muted">No prompt/seed pair is scored in every run.</p>'
    head = "<th>prompt / seed</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
    body = []
    for row in rows:
        th = (
            f'<th class="prompt"><code>{_e(row.prompt_id)}</code> seed {row.seed}'
            f"<br>{_e(row.prompt)}</th>"
        )
        body.append("<tr>" + th + "".join(_cell(c) for c in row.cells) + "</tr>")
    return (
        f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def render(page: Page) -> str:
    """The complete ``index.html``."""
    names = [n for n, _ in page.runs]
    runs = "".join(f"<li><b>{_e(n)}</b>: <code>{_e(d)}</code></li>" for n, d in page.runs)
    training = (
        "".join(_image(img, "") for img in page.training)
        if page.training
        else '<p class="muted">No run has a train log (RUN/run/train_log.jsonl).</p>'
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in page.notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        GENERATOR,
        f"<title>{_e(page.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(page.title)}</h1>",
        f"<ul>{runs}</ul>",
        "<h2>Comparison</h2>",
        _table(page.table_head, page.table_rows),
        '<p class="muted">The first run is the baseline; intervals are a percentile '
        "bootstrap over prompts (comparison.json has every number).</p>",
        '<div class="figures">',
        _image(page.curves, "no curves"),
        _image(page.per_type, "No run has a summary.json with per-type figures."),
        "</div>",
        "<h2>Training</h2>",
        f'<div class="figures">{training}</div>',
        "" if page.grid is None else "<h2>Same prompt and seed across runs</h2>",
        "" if page.grid is None else _grid(names, page.grid),
        f'<ul class="muted">{notes}</ul>' if notes else "",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
