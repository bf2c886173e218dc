"""The report builder without a browser: files written, every link resolves inside the
report directory, nothing external, browser-playable video copies, the grid's choice."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.video import read_video, write_video
from spatialalign.report.build import build_report
from spatialalign.report.figures import per_type_bars_png, train_panels, training_curves_png
from spatialalign.report.grid import shared_samples
from spatialalign.report.media import display_frames, write_browser_video
from spatialalign.report.page import markdown_table
from spatialalign.report.runs import load_report_run, read_train_log
from spatialalign.rundir.layout import RunDir

REPO = Path(__file__).resolve().parents[1]


class Links(HTMLParser):
    """Every src/href of a page, and its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.links += [(tag, v) for k, v in attrs if k in ("src", "href") and v is not None]


def parse(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def toy_frames(seed: int, n: int = 6, size: int = 16) -> np.ndarray:
    """A tiny clip of flat colour blocks (like the toy world's sprites)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, size // 4, size // 4, 3), dtype=np.uint8)
    return small.repeat(4, axis=1).repeat(4, axis=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two copies of the synthetic demo run; the second scores its first 5 valid samples
    0.3 lower (so the grid picks them), has videos for them and a train log."""
    root = tmp_path_factory.mktemp("report")
    base = root / "base"
    main(["demo", str(base), "--synthetic"])
    other = root / "aligned"
    shutil.copytree(base, other)
    path = RunDir(other).scores_path
    table = pq.read_table(path)
    dsr = table.column("dsr").to_numpy(zero_copy_only=False).copy()
    changed = np.flatnonzero(table.column("valid").to_numpy(zero_copy_only=False))[:5]
    dsr[changed] -= 0.3
    table = table.set_column(
        table.column_names.index("dsr"), table.schema.field("dsr"), pa.array(dsr)
    )
    pq.write_table(table, path)
    ids = [table.column("sample_id")[int(i)].as_py() for i in changed]
    for run in (base, other):
        for k, sid in enumerate(ids):
            write_video(RunDir(run).video_path(sid), toy_frames(k), fps=8)
    log = RunDir(other).train.log_path
    log.parent.mkdir(parents=True)
    records = [{"step": s, "loss": 1 / s, "loss_dpo": 0.5, "margin": 0.1 * s} for s in (1, 2, 3)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return base, other, ids


def test_report_is_self_contained(runs, tmp_path) -> None:
    base, other, ids = runs
    out = tmp_path / "report"
    result = build_report([base, other], out, n_grid=4)
    html = result.index.read_text(encoding="utf-8")
    page = parse(html)
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "url(" not in html  # no CSS fetches either
    assert page.links, "the page links nothing"
    for tag, link in page.links:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//|^/", link), f"{tag} {link} is not relative"
        target = (out / link).resolve()
        assert target.is_relative_to(out.resolve()) and target.is_file(), f"{tag} {link}"
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    for name in ("index.html", "comparison.md", "comparison.json", "correctness_curves.png"):
        assert name in files
    assert {"per_type.png", "train_r1.png"} <= files and "train_r0.png" not in files
    # every file but the comparison's text files is used by the page
    assert files - {link for _, link in page.links} == {
        "index.html",
        "comparison.md",
        "comparison.json",
    }
    # the grid: the 4 largest changes (all among the 5 changed samples), 2 runs each
    videos = [link for tag, link in page.links if tag == "video"]
    assert result.n_grid_rows == 4 and result.n_videos == 8 and len(videos) == 8
    assert all(any(sid in v for sid in ids) for v in videos)
    assert sum(1 for tag, _ in page.links if tag == "img") == 3 + 8
    assert result.warnings == []


def test_table_matches_compare(runs, tmp_path) -> None:
    base, other, _ = runs
    result = build_report([base, other], tmp_path, names="before,after", n_grid=0)
    head, rows = markdown_table(result.comparison.to_markdown())
    html = result.index.read_text(encoding="utf-8")
    cells = re.findall(r"<td>(.*?)</td>", html.split('class="grid"')[0])
    assert cells == [c for r in rows for c in r]
    assert [r[0] for r in rows] == ["before", "after"] and head[0] == "run"
    assert "Same prompt and seed" not in html  # --grid 0: no grid section


def test_browser_copy_is_vp9_and_keeps_pixels(tmp_path) -> None:
    frames = toy_frames(3, n=7, size=16)
    src = write_video(tmp_path / "toy.mp4", frames, fps=8)
    dst = write_browser_video(src, tmp_path / "toy.webm", fps=8)
    with av.open(str(dst)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        assert (stream.width, stream.height) == (128, 128)  # 16 px x 8, nearest neighbour
    copy = read_video(dst)
    assert copy.shape == (7, 128, 128, 3)
    # each source pixel is an 8x8 block; its centre keeps the colour (lossy, so roughly)
    centres = copy[:, 4::8, 4::8].astype(int)
    assert np.abs(centres - frames.astype(int)).mean() < 12


def test_display_frames_sizes() -> None:
    assert display_frames(np.zeros((2, 16, 16, 3), np.uint8)).shape == (2, 128, 128, 3)
    assert display_frames(np.zeros((1, 9, 33, 3), np.uint8)).shape == (1, 144, 528, 3)
    # large frames are shrunk (strided) and cropped to even sizes
    assert display_frames(np.zeros((1, 480, 832, 3), np.uint8)).shape == (1, 240, 416, 3)
    assert display_frames(np.zeros((1, 481, 481, 3), np.uint8)).shape == (1, 240, 240, 3)
    # in between: kept as it is, but for an odd row or column
    assert display_frames(np.zeros((1, 200, 301, 3), np.uint8)).shape == (1, 200, 300, 3)
    assert display_frames(np.zeros((1, 64, 100, 3), np.uint8)).shape == (1, 128, 200, 3)


def scores(rows) -> pa.Table:
    keys = ("sample_id", "prompt_id", "seed", "valid", "dsr", "reason")
    return pa.table({k: [r[i] for r in rows] for i, k in enumerate(keys)})


def test_grid_shows_shared_pairs_largest_change_first() -> None:
    a = scores(
        [
            ("a1", "p1", 0, True, 0.5, ""),
            ("a2", "p2", 0, True, 0.5, ""),
            ("a3", "p3", 0, False, None, "too_few_frames"),
            ("a4", "p4", 0, True, 0.9, ""),  # not in b
        ]
    )
    b = scores(
        [
            ("b1", "p1", 0, True, 0.6, ""),
            ("b2", "p2", 0, True, 0.1, ""),
            ("b3", "p3", 0, True, 0.8, ""),  # invalid -> 0.8: the largest change
        ]
    )
    chosen = shared_samples([a, b], 10)
    assert [key for key, _ in chosen] == [("p3", 0), ("p2", 0), ("p1", 0)]
    assert [s.sample_id for s in chosen[0][1]] == ["a3", "b3"]
    assert chosen[0][1][0].reason == "too_few_frames"
    assert [key for key, _ in shared_samples([a, b], 1)] == [("p3", 0)]


def test_markdown_table() -> None:
    head, rows = markdown_table("| a | b |\n|---|---|\n| 1 | x y |\n| 2 | — |\n")
    assert head == ["a", "b"] and rows == [["1", "x y"], ["2", "—"]]


def test_an_rl_logs_reward_kl_and_kept_panels() -> None:
    """An rl run's log (spatialalign rl's keys) gets its own panels beside loss and lr; a
    train run's log does not."""
    rl = [{"step": i, "loss": 0.1, "policy_loss": 0.1, "reward_mean": 0.6, "validness": 0.9,
           "correct_0.7": 0.5, "kl": 1e-3, "approx_kl": 1e-4, "kept_fraction": 0.5,
           "groups_kept": 1.0, "clip_fraction": 0.2, "lr": 3e-3} for i in (1, 2)]  # fmt: skip
    panels = dict(train_panels(rl))
    assert panels["rl: samples"] == ["reward_mean", "correct_0.7", "validness"]
    assert panels["rl: KL to the reference"] == ["kl", "approx_kl"]
    assert panels["rl: kept and clipped"] == ["kept_fraction", "groups_kept", "clip_fraction"]
    assert panels["loss terms"] == ["loss", "policy_loss"]
    dpo = [{"step": 1, "loss": 0.7, "loss_dpo": 0.6, "accuracy": 0.5, "lr": 1e-4}]
    assert not any(t.startswith("rl:") for t, _ in train_panels(dpo))


def test_train_log_reading_and_figures(tmp_path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "loss": 0.7}\n\n{"step": 2, "loss": 0.6, "note": "x"}\n')
    records = read_train_log(path)
    assert [r["step"] for r in records] == [1, 2]
    assert training_curves_png("r", records)[:4] == b"\x89PNG"
    assert training_curves_png("r", [{"step": 1, "note": "text only"}]) is None
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(SpatialAlignError, match="line 2"):
        read_train_log(path)
    assert per_type_bars_png([("a", {"per_type": {}})]) is None


def test_rerun_drops_stale_media_and_reports_unreadable_videos(runs, tmp_path) -> None:
    base, other, ids = runs
    out = tmp_path / "report"
    build_report([base, other], out, n_grid=3)
    assert len(list((out / "media").glob("*.webm"))) == 6
    broken = tmp_path / "broken"
    shutil.copytree(other, broken)
    for sid in ids:
        RunDir(broken).video_path(sid).write_bytes(b"not a video")
    result = build_report([base, broken], out, n_grid=1)
    assert len(list((out / "media").glob("*.webm"))) == 1  # the base's copy only
    assert len(list((out / "media").glob("*.png"))) == 2  # SSR curves of both runs
    assert len(result.warnings) == 1 and "unreadable video" in result.warnings[0]
    assert "unreadable video" in result.index.read_text()


def test_report_cli(runs, tmp_path, capsys) -> None:
    base, other, _ = runs
    out = tmp_path / "r"
    main(["report", str(base), str(other), "--out", str(out), "--grid", "2", "--n-boot", "50"])
    text = capsys.readouterr().out
    assert (
        text.splitlines()[-1] == f"report: 2 run(s), 2 grid row(s), 4 video(s) -> {out}/index.html"
    )
    assert "| base | 90 |" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(base), str(tmp_path / "nope"), "--out", str(out)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().startswith("error: run directory not found")
    missing = f"base={tmp_path / 'none.jsonl'}"
    for log, message in (
        (missing, "train log not found"),
        ("nope=x.jsonl", "--train-log for unknown run(s) nope"),
        ("x.jsonl", "--train-log wants NAME=PATH"),
    ):
        with pytest.raises(SystemExit):
            main(["report", str(base), "--train-log", log, "--out", str(out)])
        assert message in capsys.readouterr().err


def test_train_log_found_beside_the_adapter(runs, tmp_path) -> None:
    """An evaluation run sampled with a trained adapter shows that training's log."""
    base, _, _ = runs
    run = tmp_path / "eval"
    shutil.copytree(base, run)
    trained = RunDir(tmp_path / "trained").train
    trained.root.mkdir(parents=True)
    trained.log_path.write_text('{"step": 1, "margin": 0.5}\n')
    path = RunDir(run).manifest_path
    manifest = pq.read_table(path)
    adapter = pa.array([str(trained.adapter_path)] * manifest.num_rows)
    index = manifest.column_names.index("adapter")
    pq.write_table(manifest.set_column(index, manifest.schema.field(index), adapter), path)
    loaded = load_report_run(run, "eval")
    assert loaded.train_log_path == trained.log_path
    assert loaded.train_log == [{"step": 1, "margin": 0.5}]
    assert load_report_run(base, "base").train_log_path is None  # no adapter, no log


def test_an_rl_runs_latest_highest_reward_sheet_is_shown(runs, tmp_path) -> None:
    """The reward-hacking watch: a run whose train log is an rl run's shows that run's last
    iteration's sheet of highest-reward samples under its training curves."""
    from spatialalign.rl.watch import top_sheet_png
    from spatialalign.rundir.rl import RLDir

    base, other, _ = runs
    rl = RLDir(tmp_path / "rl")
    rl.train.root.mkdir(parents=True)
    rl.config_path.write_text("{}")
    rl.train.log_path.write_text('{"step": 1, "reward_mean": 0.5, "kl": 0.001}\n')
    frames = np.stack([toy_frames(k) for k in range(3)])
    for it in (1, 2):
        png = top_sheet_png(frames, np.array([0.1, 0.9, 0.5]), ["a", "b", "c"], it)
        rl.top_sheet_path(it).parent.mkdir(parents=True, exist_ok=True)
        rl.top_sheet_path(it).write_bytes(png)
    out = tmp_path / "report"
    build_report([base, other], out, n_grid=0, train_logs={"aligned": rl.train.log_path})
    html = (out / "index.html").read_text(encoding="utf-8")
    assert (out / "rl_top_r1.png").read_bytes() == rl.top_sheet_path(2).read_bytes()
    assert "highest-reward samples of aligned" in html and "rl/iter-0000002-top.png" in html
    # a train run's log (no rl_config.json beside its run/) has no sheet
    build_report([base, other], out, n_grid=0)
    assert "highest-reward samples" not in (out / "index.html").read_text(encoding="utf-8")


def test_report_refuses_other_prompt_texts_and_says_what_it_rests_on(
    runs, tmp_path, capsys
) -> None:
    """Issue 18 (E): report matched prompts by id only; it refuses a shared id with other
    texts (writing nothing) and says how many prompts and videos the difference rests on."""
    import dataclasses

    from spatialalign.prompts import read_prompts, write_prompts

    base, other, _ = runs
    main(["report", str(base), str(other), "--out", str(tmp_path / "r"), "--grid", "0"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == (
        "report: 'aligned' vs 'base' rests on 30 shared prompt(s): 90 video(s) of 'base', "
        "90 of 'aligned'"
    )
    assert "rests on 30 shared prompt(s)" in (tmp_path / "r" / "index.html").read_text()

    moved = tmp_path / "moved"
    shutil.copytree(other, moved)
    prompts = read_prompts(RunDir(moved).prompts_path)
    prompts[0] = dataclasses.replace(prompts[-1], prompt_id=prompts[0].prompt_id)
    write_prompts(prompts, RunDir(moved).prompts_path)
    out = tmp_path / "r2"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(base), str(moved), "--out", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 1 prompt id(s) have other texts in 'moved' than in 'base'")
    assert repr(prompts[0].prompt_id) in err and "\n" not in err
    assert not out.exists()


def test_report_out_is_ours_or_refused_and_has_no_local_paths(runs, tmp_path, capsys) -> None:
    """Issue 18 (J): --out DIR overwrote a user's own index.html; --out FILE failed with
    [Errno 17]; the page showed the train log's absolute path."""
    base, other, _ = runs

    def refused(*args: str) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(["report", str(base), str(other), "--grid", "0", *args])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Errno" not in err
        return err

    mine = tmp_path / "site"
    mine.mkdir()
    (mine / "index.html").write_text("<p>my own page</p>")
    assert "--force" in refused("--out", str(mine))
    assert (mine / "index.html").read_text() == "<p>my own page</p>"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "not a directory" in refused("--out", str(afile))
    assert "not a directory" in refused("--out", str(afile / "sub"))
    assert afile.read_text() == "x"

    # an empty or new directory is fine, and so is a report we wrote, again
    ours = tmp_path / "ours"
    for _ in range(2):
        main(["report", str(base), str(other), "--grid", "2", "--out", str(ours)])
    html = (ours / "index.html").read_text(encoding="utf-8")
    assert "train log" in html or "aligned" in html
    root = str(base.parent.resolve())
    assert root not in html and str(base.parent) not in html, "a local path in the page"
    assert "aligned/run/train_log.jsonl" in html  # the log named by run and relative path
    # --force writes into the user's directory, and leaves its other files alone
    (mine / "media").mkdir()
    (mine / "media" / "holiday.png").write_bytes(b"png")
    main(["report", str(base), str(other), "--grid", "0", "--out", str(mine), "--force"])
    assert "SpatialAlign report" in (mine / "index.html").read_text()
    assert (mine / "media" / "holiday.png").read_bytes() == b"png"
