"""The report in a real browser: headless Chromium loads index.html from disk and every
table, image and video loads with no error and no console message; a screenshot is saved.

Two small toy runs are made with the CLI (3 test prompts x 1 seed, sampled once at the
default guidance and once at guidance 6, tracked and scored). The report itself has no
scripts; the test loads a copy with a checker script injected at the top of <head>,
which records load errors (capture-phase ``error`` events), ``console.error`` calls,
each image's natural size, each video's ready state, and every src/href as resolved, and
writes them as JSON into the page, which ``--dump-dom`` returns.

Chromium comes from ``PATH``: ``make test-deps`` (a step of ``make test``) installs Debian's
``chromium`` as root with apt; the test installs nothing. Without it the test fails under CI
(``CI`` set to a true value) and skips elsewhere, saying why.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from spatialalign.cli import main
from spatialalign.report.build import INDEX, build_report

pytestmark = pytest.mark.slow  # toy runs + browser launches: ~30 s on 2 cores

CHECK_ID = "__report_check__"
CHECKER = f"""<script>
window.__errors = [];
addEventListener('error', e => {{
  const t = e.target;
  __errors.push(t && t !== window ? 'load: ' + (t.currentSrc || t.src || t.tagName)
                                  : 'js: ' + e.message);
}}, true);
const __consoleError = console.error;
console.error = (...a) => {{ __errors.push('console: ' + a.join(' ')); }};
function __report() {{
  let out = document.getElementById('{CHECK_ID}');
  if (!out) {{ out = document.createElement('pre'); out.id = '{CHECK_ID}';
               document.body.appendChild(out); }}
  out.textContent = JSON.stringify({{
    errors: __errors,
    tables: document.querySelectorAll('table').length,
    rows: [...document.querySelectorAll('table.cmp tbody tr')].map(r => r.cells.length),
    images: [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
    videos: [...document.querySelectorAll('video')].map(
      v => [v.getAttribute('src'), v.readyState, v.videoWidth, v.error && v.error.code]),
    resources: [...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href),
  }});
}}
addEventListener('load', () => {{ __report(); setInterval(__report, 100); }});
</script>"""

CHROMIUM_NAMES = ("chromium", "chromium-browser")
TRUE = {"1", "true", "yes", "on"}


def _find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's executable from PATH (``make test-deps`` installs Debian's ``chromium``);
    without it: fail under CI, where the set-up step must have installed it, else skip."""
    found = _find_chromium()
    if found is None:
        reason = (
            "headless Chromium is needed for the report browser test: not on PATH "
            "(`make test-deps` installs Debian's `chromium` as root; or install it yourself)"
        )
        if os.environ.get("CI", "").strip().lower() in TRUE:
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def headless(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``url`` (no GPU, no sandbox: root in a container;
    every host name unresolvable, so an external request could not succeed)."""
    cmd = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--hide-scrollbars",
        "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def make_toy_runs(root: Path) -> tuple[Path, Path]:
    """Two scored toy runs of the same 3 test prompts x 1 seed: default guidance and 6."""
    base, other = root / "base", root / "guidance6"
    for run, extra in ((base, []), (other, ["--guidance", "6"])):
        main(["prompts", str(run), "--train", "0", "--test", "3"])
        main(["sample", str(run), "--seeds", "1", *extra])
        main(["track", str(run)])
        main(["score-batch", str(run), "-q"])
    return base, other


def write_train_log(run: Path, steps: int = 20) -> Path:
    """A train log with the trainer's keys (loss terms, rewards, margin, accuracy, lr)."""
    path = run / "run" / "train_log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in range(1, steps + 1):
        margin = 0.05 * s
        record = {
            "step": s,
            "loss": 0.69 - 0.01 * s,
            "loss_dpo": 0.69 - 0.012 * s,
            "loss_zo": 0.001 * s,
            "score_w": margin / 2,
            "score_l": -margin / 2,
            "margin": margin,
            "accuracy": min(1.0, 0.5 + 0.03 * s),
            "lr": 1e-4 * min(1.0, s / 5),
        }
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def checked_copy(index: Path) -> Path:
    """A copy of index.html beside it with the checker script first in <head>."""
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html, "the report itself has no scripts"
    copy = index.with_name("_check.html")
    copy.write_text(html.replace("<head>", "<head>" + CHECKER, 1), encoding="utf-8")
    return copy


def read_check(stdout: str) -> dict:
    """The checker's JSON from a dumped DOM."""
    found = re.search(rf'<pre id="{CHECK_ID}">(.*?)</pre>', stdout, re.S)
    assert found, "the checker did not run"
    return json.loads(html.unescape(found.group(1)))


def console_lines(stderr: str) -> list[str]:
    """The page's console messages Chromium logged to stderr."""
    return [ln for ln in stderr.splitlines() if re.search(r":CONSOLE[:(\]]", ln)]


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy_report")
    base, other = make_toy_runs(root)
    write_train_log(other)
    result = build_report([base, other], root / "report", n_grid=3)
    assert result.n_grid_rows == 3 and result.n_videos == 6
    return result.index


def test_report_loads_in_chromium(chromium, toy_report) -> None:
    page = checked_copy(toy_report)
    done = headless(chromium, page.as_uri(), "--virtual-time-budget=5000", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    check = read_check(done.stdout)

    assert check["errors"] == []
    assert console_lines(done.stderr) == []
    assert check["tables"] == 2  # the comparison table and the grid
    assert check["rows"] == [6, 6]  # one row per run: run, videos, prompts, validness, C, Δ
    # curves, per-type bars, one training figure, 3 rows x 2 runs of SSR curves
    assert len(check["images"]) == 3 + 6
    for src, complete, width in check["images"]:
        assert complete and width > 0, f"image {src} did not load"
    assert len(check["videos"]) == 6
    for src, ready, width, error in check["videos"]:
        # HAVE_CURRENT_DATA or better: a decoded frame (a codec Chromium cannot play
        # would report error code 4 and readyState 0)
        assert error is None and ready >= 2 and width > 0, f"video {src} did not load"
    report_dir = toy_report.parent.resolve().as_uri()
    assert len(check["resources"]) == 9 + 6
    outside = [r for r in check["resources"] if not r.startswith(report_dir + "/")]
    assert outside == [], "the page refers to something outside its directory"


def test_report_screenshot(chromium, toy_report) -> None:
    shot = toy_report.parent / "screenshot.png"
    done = headless(
        chromium,
        toy_report.as_uri(),
        "--window-size=1280,2000",
        "--virtual-time-budget=3000",
        f"--screenshot={shot}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == (1280, 2000)
        # not a blank page: many distinct colours (figures, videos, text)
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 100
    assert console_lines(done.stderr) == []
    target = os.environ.get("SPATIALALIGN_REPORT_SCREENSHOT")
    if target:  # how docs/report_screenshot.png is made
        shutil.copyfile(shot, target)


def test_checker_catches_a_broken_page(chromium, tmp_path) -> None:
    """The checker is not blind: a missing image, a missing video and a video that does
    not decode all show up."""
    (tmp_path / "garbage.webm").write_bytes(bytes(range(256)) * 64)
    index = tmp_path / INDEX
    index.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<img src="missing.png"><video src="missing.webm"></video>'
        '<video src="garbage.webm" preload="auto"></video></body></html>'
    )
    page = checked_copy(index)
    done = headless(chromium, page.as_uri(), "--virtual-time-budget=5000", "--dump-dom")
    check = read_check(done.stdout)
    assert any("missing.png" in e for e in check["errors"])
    assert any("missing.webm" in e for e in check["errors"])
    ((_, ready, width, error),) = [v for v in check["videos"] if v[0] == "garbage.webm"]
    assert error == 4 and ready == 0 and width == 0  # MEDIA_ERR_SRC_NOT_SUPPORTED
