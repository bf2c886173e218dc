"""RunDir and provenance (issue 9, findings 2-6): ids that cannot escape the run directory,
reruns that redo exactly what changed (and say why), settings carried between stages, and
one-line errors. Small toy runs: a randomly initialised toy model with 2 steps, toy-world
clips for the detector."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_parquet, write_parquet
from spatialalign.core.ids import check_id
from spatialalign.core.presets import scoring_config
from spatialalign.core.provenance import StampedFingerprint, fingerprint, record_of
from spatialalign.core.schemas import MANIFEST
from spatialalign.core.video import write_video
from spatialalign.detection.pipeline import track_run
from spatialalign.detection.registry import make_detector
from spatialalign.detection.tracker import tracker_config
from spatialalign.models.backends import ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.prompts import DSRPrompt, read_prompts, write_prompts
from spatialalign.rundir.layout import RunDir, plot_name
from spatialalign.sampling.ingest import ingest_videos
from spatialalign.sampling.sampler import sample_videos
from spatialalign.scoring.batch import score_run
from spatialalign.toy.world import render_clip

TOY = scoring_config("toy")


@pytest.fixture(scope="module")
def toy() -> ToyPipeline:
    return ToyPipeline.random(seed=0)


def _backend(toy: ToyPipeline, guidance: float = 3.0) -> ToyBackend:
    return ToyBackend(toy, steps=2, guidance=guidance)


def _one_line_error(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in captured.out + captured.err
    return err


def _track(run: Path, **kw):
    return track_run(run, make_detector("toy"), TOY, tracker_config("toy"), progress=False, **kw)


# ---------------------------------------------------------------------- layout and ids


def test_run_dir_layout_names() -> None:
    run = RunDir("/r")
    assert run.prompts_path == Path("/r/prompts.parquet")
    assert run.manifest_path == Path("/r/samples/manifest.parquet")
    assert run.tracks_path == Path("/r/tracks.parquet")
    assert run.detections_path == Path("/r/detections.parquet")
    assert run.scores_path == Path("/r/scores.parquet")
    assert run.summary_path == Path("/r/summary.json")
    assert run.correctness_path == Path("/r/correctness.png")
    assert run.plots_dir == Path("/r/plots")
    assert run.pairs_path == Path("/r/pairs.parquet")
    assert run.cache_dir == Path("/r/cache")
    assert run.train_dir == Path("/r/run")
    assert run.metrics_path == Path("/r/metrics.parquet")
    assert RunDir(run) == run and Path(run) == Path("/r")  # accepted where a path is
    assert run.video_path("1043_TL_F81_seed00") == Path("/r/samples/1043_TL_F81_seed00.mp4")
    assert run.plot_path("1043_TL_F81_seed00") == Path("/r/plots/1043_TL_F81_seed00.png")


@pytest.mark.parametrize(
    "bad", ["../../x", "/etc/x", "a/b", "a\\b", "..", ".hidden", "a..b", "x y", "", "é", "x" * 201]
)
def test_video_path_refuses_ids_that_could_leave_the_run_dir(bad) -> None:
    with pytest.raises(SpatialAlignError, match="sample_id"):
        RunDir("/r").video_path(bad)


def test_id_check_names_where_it_came_from() -> None:
    with pytest.raises(SpatialAlignError, match=r"^f\.csv: row 3: prompt_id '\.\./x' has"):
        check_id("../x", "prompt_id", "f.csv: row 3")
    with pytest.raises(SpatialAlignError, match="at most 128"):
        check_id("p" * 129, "prompt_id")
    assert check_id("1043_TL-v2.b", "prompt_id") == "1043_TL-v2.b"


@pytest.mark.parametrize("bad", ["../../escaped", "/tmp/abs_escape", "sub/dir", "p" * 300])
def test_prompt_ids_are_refused_where_prompts_are_read(tmp_path, bad) -> None:
    p = read_prompts(OFFICIAL_CSV)[0]
    rows = [{"prompt_id": "ok_1", "prompt": p.text}, {"prompt_id": bad, "prompt": p.text}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(SpatialAlignError, match=r"\[1\] prompt_id") as exc:
        read_prompts(path)
    assert len(str(exc.value).splitlines()) == 1


def test_sample_with_a_traversal_id_writes_nothing_anywhere(tmp_path, capsys) -> None:
    """Finding 2: ``sample`` used to write ``RUN/samples/../../x_F09_seed00.mp4``."""
    p = read_prompts(OFFICIAL_CSV)[0]
    run = tmp_path / "a" / "run"
    run.mkdir(parents=True)
    record = {"prompt_id": "../../x", "prompt": p.text}
    (run / "prompts.jsonl").write_text(json.dumps(record) + "\n")
    err = _one_line_error(capsys, ["sample", str(run), "--prompts", str(run / "prompts.jsonl")])
    assert "'../../x'" in err and "[0]" in err
    assert not list(tmp_path.rglob("*.mp4")) and not (run / "samples").exists()


def test_over_long_prompt_id_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """Finding 5: an over-long id failed only after a batch was generated."""
    from spatialalign.sampling import run as run_module

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(run_module, "load_backend", no_model)
    p = read_prompts(OFFICIAL_CSV)[0]
    write_prompts([DSRPrompt(**{**p.to_dict(), "prompt_id": "ok"})], tmp_path / "prompts.parquet")
    table = read_parquet(tmp_path / "prompts.parquet")
    table = table.set_column(0, "prompt_id", pa.array(["p" * 300]))
    write_parquet(table, tmp_path / "prompts.parquet")
    err = _one_line_error(capsys, ["sample", str(tmp_path)])
    assert "300 characters long" in err


def test_manifest_refuses_unsafe_and_duplicate_sample_ids(tmp_path) -> None:
    run = RunDir(tmp_path)
    row = {c: None for c in MANIFEST.names} | {"prompt_id": "p", "seed": 0}
    bad = [row | {"sample_id": "ok"}, row | {"sample_id": "../x"}]
    write_parquet(pa.Table.from_pylist(bad, MANIFEST), run.manifest_path)
    with pytest.raises(SpatialAlignError, match=r"row 1: sample_id '\.\./x'"):
        run.read_manifest()
    dup = [row | {"sample_id": "a"}, row | {"sample_id": "b"}, row | {"sample_id": "a"}]
    write_parquet(pa.Table.from_pylist(dup, MANIFEST), run.manifest_path)
    with pytest.raises(SpatialAlignError, match="duplicate sample_id"):
        run.read_manifest()


def test_ssr_plot_names_are_injective() -> None:
    """Finding 6: ``x y`` and ``x_y`` both became ``x_y.png``."""
    names = [plot_name(s) for s in ("x y", "x_y", "x/y", "x__y", "x~y")]
    assert len(set(names)) == len(names) and names[1] == "x_y"
    assert all(check_id(n.replace("~", "-"), "name") for n in names)


# ---------------------------------------------------------------------- sample reruns


def test_rerun_with_other_guidance_redoes_every_video_and_says_why(toy, tmp_path) -> None:
    """Finding 3: a rerun with other --guidance/--steps silently skipped everything."""
    prompts = read_prompts(OFFICIAL_CSV)[:2]
    first = sample_videos(tmp_path, _backend(toy), prompts, seeds=2, progress=False)
    assert first.generated == 4
    before = {p.name: p.read_bytes() for p in (tmp_path / "samples").glob("*.mp4")}
    again = sample_videos(tmp_path, _backend(toy, 4.5), prompts, seeds=2, progress=False)
    assert (again.generated, again.skipped) == (4, 0)
    assert "4 redone: settings changed: guidance 3.0 -> 4.5" in again.summary()
    after = {p.name: p.read_bytes() for p in (tmp_path / "samples").glob("*.mp4")}
    assert before.keys() == after.keys() and all(before[k] != after[k] for k in before)
    # the manifest records what each video is made from
    rows = {r["sample_id"]: r for r in RunDir(tmp_path).read_manifest().to_pylist()}
    samples = RunDir(tmp_path).sample_records()
    assert set(samples) == set(rows)
    rec = samples[f"{prompts[0].prompt_id}_F09_seed01"]
    assert (rec["prompt"], rec["seed"], rec["settings"]["guidance"]) == (prompts[0].text, 1, 4.5)
    assert rec["model_id"] and rec["fingerprint"] == fingerprint(
        RunDir(tmp_path).video_path(f"{prompts[0].prompt_id}_F09_seed01")
    )
    third = sample_videos(tmp_path, _backend(toy, 4.5), prompts, seeds=2, progress=False)
    assert (third.generated, third.skipped) == (0, 4)


def test_prompts_force_with_a_new_seed_then_sample_redoes_changed_prompts(
    toy, tmp_path, capsys
) -> None:
    """Finding 3: an old prompt's video was kept for a new prompt with the same id, and
    track/score-batch then refused the run (manifest rows of prompts no longer there)."""
    model = toy.save_pretrained(tmp_path / "toy")
    run = tmp_path / "run"
    sample = ["sample", str(run), "--model-path", str(model), "--steps", "2", "--seeds", "1"]
    main(["prompts", str(run), "--train", "0", "--test", "6", "--seed", "0"])
    old = {p.prompt_id: p.text for p in RunDir(run).read_prompts()}
    main(sample)
    main(["prompts", str(run), "--train", "0", "--test", "6", "--seed", "3", "--force"])
    capsys.readouterr()
    new = {p.prompt_id: p.text for p in RunDir(run).read_prompts()}
    same_id_new_text = sum(i in old and old[i] != t for i, t in new.items())
    assert same_id_new_text == 2  # ids are {index}_{type}: two of them come back
    main(sample)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "generated 6 video(s) (4 new; 2 redone: prompt text changed), skipped 0" in line
    # the manifest holds the current prompts' samples only, each made from its current text
    rows = RunDir(run).read_manifest().to_pylist()
    assert sorted(r["prompt_id"] for r in rows) == sorted(new)
    records = RunDir(run).sample_records()
    assert all(records[r["sample_id"]]["prompt"] == new[r["prompt_id"]] for r in rows)
    main(["track", str(run)])
    main(["score-batch", str(run), "-q"])
    assert pq.read_table(RunDir(run).scores_path).num_rows == 6


def test_other_model_weights_redo_the_videos(toy, tmp_path) -> None:
    prompts = read_prompts(OFFICIAL_CSV)[:1]
    sample_videos(tmp_path, _backend(toy), prompts, seeds=2, progress=False)
    retrained = ToyBackend(ToyPipeline.random(seed=1), steps=2, guidance=3.0)
    result = sample_videos(tmp_path, retrained, prompts, seeds=2, progress=False)
    assert result.reasons == {"model weights changed": 2}


def test_a_video_without_a_record_is_redone(toy, tmp_path) -> None:
    prompts = read_prompts(OFFICIAL_CSV)[:1]
    run = RunDir(tmp_path)
    frames = toy([prompts[0].text], [0], num_inference_steps=2)[0]
    write_video(run.video_path(f"{prompts[0].prompt_id}_F09_seed00"), frames)
    result = sample_videos(tmp_path, _backend(toy), prompts, seeds=1, progress=False)
    assert result.generated == 1 and "no record" in result.summary()


# ---------------------------------------------------------------------- ingest and track


def _clip_frames(prompt: DSRPrompt, seed: int) -> np.ndarray:
    return render_clip(prompt, seed).frames


@pytest.fixture
def external(tmp_path) -> tuple[Path, list[DSRPrompt]]:
    """Toy-world clips of three prompts under official names, outside any run dir."""
    prompts = read_prompts(OFFICIAL_CSV)[:3]
    d = tmp_path / "external"
    for i, p in enumerate(prompts):
        write_video(d / f"{p.prompt_id}_F09_seed00.mp4", _clip_frames(p, 100 + i), fps=8)
    return d, prompts


def test_reingest_of_different_videos_makes_track_redo_them_and_scores_change(
    external, tmp_path
) -> None:
    """Finding 3: track reported "0 tracked, N already done" and scored the old videos."""
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    assert _track(run).n_tracked == 3
    first = score_run(run, config=TOY).scores.to_pylist()
    assert all(r["valid"] for r in first)

    noise = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    write_video(videos / f"{prompts[1].prompt_id}_F09_seed00.mp4", noise, fps=8)
    result = ingest_videos(videos, prompts, run, progress=False)
    assert result.changed == 1 and "1 with new content" in result.summary()
    stale = score_run(run, config=TOY)  # scoring before tracking again says so
    assert any("1 sample(s) have other video content" in w for w in stale.warnings)
    again = _track(run)
    assert (again.n_tracked, again.n_done_before) == (1, 2)
    assert again.reasons == {"video changed": 1} and "1 redone: video changed" in again.line()
    current = score_run(run, config=TOY)
    assert current.warnings == []
    second = current.scores.to_pylist()
    assert [r["valid"] for r in second] == [True, False, True]
    assert second[1]["reason"] == "too_few_frames"
    # the tables record the fingerprint of each video they were made from
    rec = record_of(RunDir(run).detections_path)
    assert rec["videos"][second[1]["sample_id"]] == fingerprint(
        videos / f"{prompts[1].prompt_id}_F09_seed00.mp4"
    )


def test_moved_run_dir_keeps_its_work_and_missing_videos_are_retried(external, tmp_path) -> None:
    """Finding 3: after a move every video was unreadable_video, cached even once repaired."""
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, copy=True, progress=False)
    assert _track(run).n_tracked == 3
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    after_move = _track(moved)
    assert (after_move.n_tracked, after_move.run_counts["valid"]) == (0, 3)

    # a video missing while tracking is retried once it is back
    sid = f"{prompts[0].prompt_id}_F09_seed00"
    video = RunDir(moved).video_path(sid)
    kept = video.read_bytes()
    video.unlink()
    _track(moved, overwrite=True)
    assert score_run(moved, config=TOY).scores.to_pylist()[0]["reason"] == "unreadable_video"
    video.write_bytes(kept)
    repaired = _track(moved)
    assert (repaired.n_tracked, repaired.reasons) == (1, {"video changed": 1})
    assert score_run(moved, config=TOY).scores.to_pylist()[0]["valid"]


def test_old_absolute_manifest_paths_are_found_after_a_move(external, tmp_path) -> None:
    videos, prompts = external
    run = RunDir(tmp_path / "run")
    ingest_videos(videos, prompts, run.root, copy=True, progress=False)
    table = read_parquet(run.manifest_path)
    stale = [f"/gone/somewhere/samples/{Path(p).name}" for p in table.column("path").to_pylist()]
    write_parquet(table.set_column(5, "path", pa.array(stale)), run.manifest_path)
    paths = run.read_manifest().column("path").to_pylist()
    assert all(Path(p).parent == run.samples_dir for p in paths)


def test_ingest_copy_replaces_a_same_size_copy_with_other_content(external, tmp_path) -> None:
    """Finding 3: ``ingest --copy`` compared sizes only and kept an outdated copy."""
    videos, prompts = external
    run = RunDir(tmp_path / "run")
    ingest_videos(videos, prompts, run.root, copy=True, progress=False)
    name = f"{prompts[0].prompt_id}_F09_seed00"
    copy = run.video_path(name)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    copy.write_bytes(bytes(data))
    result = ingest_videos(videos, prompts, run.root, copy=True, progress=False)
    assert result.copied == 1
    assert copy.read_bytes() == (videos / f"{name}.mp4").read_bytes()


def test_ingest_refuses_unsafe_file_names(external, tmp_path) -> None:
    videos, prompts = external
    shutil.copy(
        videos / f"{prompts[0].prompt_id}_F09_seed00.mp4", videos / f"{prompts[0].prompt_id} x.mp4"
    )
    with pytest.raises(SpatialAlignError, match=r"x\.mp4: sample id .* has character"):
        ingest_videos(videos, prompts, tmp_path / "run", progress=False)


def test_track_summary_separates_this_call_from_the_run(external, tmp_path) -> None:
    """Finding 6: after a resume the summary mixed this call's counts with the run's."""
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    _track(run)
    key_dir = next(RunDir(run).track_parts_dir.iterdir())
    next(key_dir.glob("*.det.parquet")).unlink()
    again = _track(run)
    assert again.counts == {"valid": 1} and again.run_counts == {"valid": 3}
    line = again.line()
    assert "1 video(s) tracked (1 new), 2 already done" in line
    assert "this call: 1 valid, 0 rejected" in line and "run: 3 valid, 0 rejected" in line


def test_track_settings_change_is_named(external, tmp_path) -> None:
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    _track(run)
    strict = scoring_config("toy", min_run=4)
    redo = track_run(run, make_detector("toy"), strict, tracker_config("toy"), progress=False)
    assert redo.reasons == {"settings changed: min_run 3 -> 4": 3}
    # the detector's own configuration is part of its identity
    from spatialalign.detection.color import ColorDetector

    other = ColorDetector(min_pixels=ColorDetector().config.min_pixels + 1)
    redo = track_run(run, other, strict, tracker_config("toy"), progress=False)
    assert list(redo.reasons) == [
        f"settings changed: detector_config.min_pixels {other.config.min_pixels - 1} -> "
        f"{other.config.min_pixels}"
    ]


def test_detector_weights_are_identified_by_content(tmp_path) -> None:
    from spatialalign.detection.registry import detector_weights as _weights

    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "gdino.onnx").write_bytes(b"graph one")
    first = _weights("gdino-onnx", None, onnx, None)
    (onnx / "gdino.onnx").write_bytes(b"graph two")  # re-exported in place
    second = _weights("gdino-onnx", None, onnx, None)
    assert first["onnx_dir"] == second["onnx_dir"]
    assert first["onnx_dir_fingerprint"] != second["onnx_dir_fingerprint"]


def test_track_part_records_the_video_it_was_made_from(external, tmp_path) -> None:
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    _track(run)
    det = next(next(RunDir(run).track_parts_dir.iterdir()).glob("*.det.parquet"))
    stamp = StampedFingerprint.from_dict(record_of(det)["video"])
    assert stamp is not None and stamp.fingerprint.startswith(str(stamp.size) + ":")


# ---------------------------------------------------------------------- score-batch


def test_score_batch_defaults_to_the_preset_track_recorded_and_warns(
    external, tmp_path, capsys
) -> None:
    """Finding 4: ``score-batch`` defaulted to official after a toy track: 0 of N valid."""
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    main(["track", str(run), "--detector", "toy"])
    capsys.readouterr()
    main(["score-batch", str(run), "-q"])
    out = capsys.readouterr()
    assert out.err == "" and record_of(RunDir(run).scores_path)["preset"] == "toy"
    assert pq.read_table(RunDir(run).scores_path).column("valid").to_pylist() == [True] * 3
    main(["score-batch", str(run), "-q", "--preset", "official"])
    err = capsys.readouterr().err
    assert "warning: track used the 'toy' preset; scoring with 'official'" in err
    assert record_of(RunDir(run).scores_path)["preset"] == "official"


def test_score_batch_warns_about_samples_not_tracked_yet(external, tmp_path, capsys) -> None:
    """Finding 3: new samples were scored no_tracks without a word."""
    videos, prompts = external
    run = tmp_path / "run"
    ingest_videos(videos, prompts, run, progress=False)
    _track(run)
    more = read_prompts(OFFICIAL_CSV)[3]
    write_video(videos / f"{more.prompt_id}_F09_seed00.mp4", _clip_frames(more, 7), fps=8)
    write_prompts([*prompts, more], RunDir(run).prompts_path)
    ingest_videos(videos, [*prompts, more], run, progress=False)
    main(["score-batch", str(run), "-q"])
    err = capsys.readouterr().err
    assert "warning: 1 of 4 sample(s) have neither tracks nor a detections row" in err


@pytest.mark.slow
def test_quiet_silences_the_plots_bar(tmp_path, capsys) -> None:
    """Finding 6: ``-q`` did not silence the SSR plots progress bar."""
    from spatialalign.demo import copy_demo_run

    copy_demo_run(tmp_path)
    main(["score-batch", str(tmp_path), "--plots", "-q"])
    captured = capsys.readouterr()
    assert "SSR plots" not in captured.err and len(captured.out.strip().splitlines()) == 1
    assert len(list(RunDir(tmp_path).plots_dir.glob("*.png"))) >= 20


# ---------------------------------------------------------------------- one-line errors


def test_score_batch_huge_m_is_one_line(tmp_path, capsys) -> None:
    from spatialalign.demo import copy_demo_run

    copy_demo_run(tmp_path)
    err = _one_line_error(capsys, ["score-batch", str(tmp_path), "--m", "99999999999999999999"])
    assert "--m must be at most" in err
    err = _one_line_error(
        capsys, ["score-batch", str(tmp_path), "--min-frames", "99999999999999999999"]
    )
    assert "--min-frames must be at most" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "nonsense"], "unknown device 'nonsense'"),
        (["--seeds", "99999999999999999999"], "--seeds must be in 1..1000"),
        (["--guidance", "nan"], "--guidance must be a finite number"),
        (["--guidance", "inf"], "--guidance must be a finite number"),
        (["--steps", "99999999999999999999"], "--steps must be in"),
    ],
)
def test_sample_bad_settings_are_one_line_errors(tmp_path, capsys, extra, message) -> None:
    write_prompts(read_prompts(OFFICIAL_CSV)[:1], tmp_path / "prompts.parquet")
    assert message in _one_line_error(capsys, ["sample", str(tmp_path), *extra])
    assert not (tmp_path / "samples").exists()


def test_sample_on_cuda_without_a_gpu_is_one_line(tmp_path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    write_prompts(read_prompts(OFFICIAL_CSV)[:1], tmp_path / "prompts.parquet")
    err = _one_line_error(capsys, ["sample", str(tmp_path), "--device", "cuda:0"])
    assert "CUDA is not available" in err


def test_guidance_nan_is_refused_by_the_library_too() -> None:
    from spatialalign.models.backends import BackendConfig, check_config

    with pytest.raises(SpatialAlignError, match="finite"):
        check_config(BackendConfig(guidance=math.nan))


def test_wan_loads_weights_with_safetensors_only(tmp_path, monkeypatch) -> None:
    """Finding 6: the Wan loader's from_pretrained calls lacked use_safetensors=True."""
    import json

    import diffusers
    from spatialalign.models.backends import load_wan_pipeline

    calls = []

    class Stop(Exception):
        pass

    def record(name):
        def from_pretrained(*args, **kwargs):
            calls.append((name, kwargs))
            if name == "pipe":
                raise Stop
            return object()

        return from_pretrained

    monkeypatch.setattr(diffusers.WanTransformer3DModel, "from_pretrained", record("transformer"))
    monkeypatch.setattr(diffusers.AutoencoderKLWan, "from_pretrained", record("vae"))
    monkeypatch.setattr(diffusers.WanPipeline, "from_pretrained", record("pipe"))
    # a directory that passes the layout check (the loads themselves are recorded)
    parts = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    index = {"_class_name": "WanPipeline", **{p: ["library", "Class"] for p in parts}}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    for part in parts:
        (tmp_path / part).mkdir()
    for part in ("transformer", "vae", "text_encoder"):
        (tmp_path / part / "model.safetensors").write_bytes(b"")
    with pytest.raises(Stop):
        load_wan_pipeline(tmp_path)
    assert [n for n, _ in calls] == ["transformer", "vae", "pipe"]
    assert all(kw.get("use_safetensors") is True for _, kw in calls)


def test_gdino_onnx_identity_defaults_to_the_default_onnx_dir(tmp_path, monkeypatch) -> None:
    """track, eval and loop record one detector identity: without --onnx-dir, gdino-onnx
    uses models/onnx/ (the loop's own copy once recorded no directory, so a later
    `spatialalign track` on a loop run redid every video)."""
    from spatialalign.detection.registry import DEFAULT_ONNX_DIR, detector_weights

    monkeypatch.chdir(tmp_path)
    DEFAULT_ONNX_DIR.mkdir(parents=True)
    (DEFAULT_ONNX_DIR / "gdino.onnx").write_bytes(b"graph")
    implicit = detector_weights("gdino-onnx")
    assert implicit == detector_weights("gdino-onnx", onnx_dir=DEFAULT_ONNX_DIR)
    assert implicit["onnx_dir"] == str((tmp_path / DEFAULT_ONNX_DIR).resolve())
    assert detector_weights("toy") == {"model_dir": None, "onnx_dir": None, "sam": None}
