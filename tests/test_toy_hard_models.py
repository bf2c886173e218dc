"""``--model toy-hard``: the hard world's model taken by name by every verb, its shipped
weights (or one clear error), its scoring preset through the whole chain (prompts -> sample
-> track -> score-batch -> pairs, eval, loop), the hard split where the toy split is used,
and ``toy evaluate --world hard``.

The shipped hard weights need not be installed: a tiny random ``ToyPipeline`` of the hard
video shape (12 frames of 16x16) stands in, passed as ``--model-path`` (or put in place of
the shipped directory with ``monkeypatch``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json
from spatialalign.core.provenance import record_of
from spatialalign.detection.spec import DetectorSpec, TrackSpec, manifest_preset, preset_for_model
from spatialalign.evaluation.eval_prompts import default_test_set, toy_test_count, toy_test_prompts
from spatialalign.loop import stages
from spatialalign.loop.config import LoopConfig
from spatialalign.models.backends import BackendConfig, load_backend
from spatialalign.models.registry import (
    default_steps,
    is_toy,
    model_world,
    scoring_preset,
    world_model,
)
from spatialalign.models.toy import shipped
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.prompts.splits import HARD_SPLIT, TOY_SPLIT, model_split
from spatialalign.rundir.layout import RunDir
from spatialalign.sampling.batching import resolve_batch_size
from spatialalign.training.config import default_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HARD_SHAPE = {"num_frames": 12, "height": 16, "width": 16}
"""The hard world's clips (the shipped toy-hard model's video config)."""


@pytest.fixture(scope="module")
def hard_model(tmp_path_factory):
    """A tiny random toy-family model of the hard video shape, saved as a weights directory."""
    return ToyPipeline.random(seed=0, **HARD_SHAPE).save_pretrained(
        tmp_path_factory.mktemp("toy_hard") / "model"
    )


@pytest.fixture
def shipped_hard(hard_model, monkeypatch):
    """The tiny model in place of the shipped toy-hard weights."""
    monkeypatch.setitem(shipped.SHIPPED_WEIGHTS, "toy-hard", hard_model)
    return hard_model


def _one_line_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


# ------------------------------------------------------------------ the registry


def test_toy_hard_is_a_toy_family_model_with_its_own_preset_and_split():
    assert is_toy("toy-hard") and is_toy("toy") and not is_toy("wan")
    assert (model_world("toy"), model_world("toy-hard"), model_world("wan")) == (
        "toy",
        "hard",
        None,
    )
    assert (world_model("toy"), world_model("hard")) == ("toy", "toy-hard")
    assert scoring_preset("toy-hard") == "toy-hard" and scoring_preset("toy") == "toy"
    assert default_recipe("toy-hard") == default_recipe("toy") == "toy"
    assert default_recipe("wan") == "official"
    assert resolve_batch_size(None, "toy-hard") == resolve_batch_size(None, "toy") == 16
    assert resolve_batch_size(None, "wan") == 1 and resolve_batch_size(3, "toy-hard") == 3
    assert model_split("toy-hard") is HARD_SPLIT
    assert model_split("toy") is TOY_SPLIT and model_split("wan") is TOY_SPLIT
    assert default_test_set("toy-hard") == "toy-hard-test" and default_test_set("toy") == "toy-test"
    with pytest.raises(SpatialAlignError, match="unknown toy world 'moon'"):
        world_model("moon")


def test_preset_follows_the_model_else_the_detector():
    assert preset_for_model("toy-hard", "toy") == "toy-hard"
    assert preset_for_model("toy", "toy") == "toy"
    assert preset_for_model("wan", "gdino-onnx") == "official"
    assert preset_for_model("external", "toy") == "toy"  # ingested: the detector's rule
    assert preset_for_model(None, "gdino-onnx") == "official"
    spec = TrackSpec(DetectorSpec("toy"))
    assert spec.for_model("toy-hard").preset_name == "toy-hard"
    assert spec.for_model("toy").preset_name == spec.preset_name == "toy"
    told = TrackSpec(DetectorSpec("toy"), preset="official")
    assert told.for_model("toy-hard") is told  # a preset the user gave wins


def test_missing_shipped_weights_are_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "weights_hard"
    monkeypatch.setitem(shipped.SHIPPED_WEIGHTS, "toy-hard", missing)
    with pytest.raises(SpatialAlignError, match="shipped toy-hard model is missing") as e:
        load_backend(BackendConfig(model="toy-hard", device="cpu"))
    assert str(missing) in str(e.value)
    prompts = tmp_path / "p"
    main(["prompts", str(prompts), "--world", "hard", "--train", "1", "--test", "1"])
    capsys.readouterr()
    for argv in (
        ["sample", str(tmp_path / "s"), "--model", "toy-hard", "--prompts",
         str(prompts / "prompts.parquet"), "--seeds", "1"],
        ["toy", "evaluate", "--world", "hard", "--test-prompts", "1", "--seeds", "1"],
    ):  # fmt: skip
        err = _one_line_error(capsys, argv)
        assert "the shipped toy-hard model is missing from the installation" in err
        assert str(missing) in err
    # the shipped toy model is untouched by it
    assert shipped.shipped_weights("toy") == shipped.WEIGHTS_DIR


def test_model_path_overrides_the_shipped_weights(hard_model, tmp_path, monkeypatch):
    monkeypatch.setitem(shipped.SHIPPED_WEIGHTS, "toy-hard", tmp_path / "none")
    backend = load_backend(
        BackendConfig(model="toy-hard", device="cpu", steps=2, model_path=str(hard_model))
    )
    assert backend.model == "toy-hard"
    assert (backend.num_frames, backend.height, backend.width) == (12, 16, 16)
    assert shipped.SHIPPED_WEIGHTS["toy"] == shipped.WEIGHTS_DIR
    assert shipped.HARD_WEIGHTS_DIR.name == "weights_hard"


def test_each_toy_model_samples_with_its_own_default_steps(hard_model, shipped_hard):
    """toy-hard samples with 10 steps unless told (docs/TOY_MODEL.md: as good as 20 on its
    model), the toy model with 20; --steps overrides; Wan keeps its back end's 50."""
    from spatialalign.toy.evaluate import ToyEvalConfig

    assert (default_steps("toy"), default_steps("toy-hard"), default_steps("wan")) == (20, 10, None)
    hard = load_backend(BackendConfig(model="toy-hard", device="cpu"))
    toy = load_backend(BackendConfig(model="toy", device="cpu"))
    told = load_backend(BackendConfig(model="toy-hard", device="cpu", steps=3))
    assert (hard.settings()["steps"], toy.settings()["steps"], told.settings()["steps"]) == (
        10,
        20,
        3,
    )
    # a back end built directly takes its model's default too
    assert type(hard)(hard.pipeline).steps == 10 and type(toy)(toy.pipeline).steps == 20
    assert ToyEvalConfig(world="hard").num_inference_steps == 10
    assert ToyEvalConfig(world="toy").num_inference_steps == 20
    assert ToyEvalConfig(world="hard", num_inference_steps=4).num_inference_steps == 4


# ------------------------------------------------------------------ prompts


def test_prompts_world_hard_writes_the_hard_split(tmp_path, capsys):
    main(["prompts", str(tmp_path / "hard"), "--world", "hard"])
    assert "720 prompts (600 train, 120 test; 12 DSR types" in capsys.readouterr().out
    got = RunDir(tmp_path / "hard").read_prompts()
    assert [(p.prompt_id, p.text) for p in got] == [
        (p.prompt_id, p.text) for p in HARD_SPLIT.prompts()
    ]
    main(["prompts", str(tmp_path / "toy")])  # the default stays the toy split
    assert [p.text for p in RunDir(tmp_path / "toy").read_prompts()] == [
        p.text for p in TOY_SPLIT.prompts()
    ]
    with pytest.raises(SystemExit) as e:  # a usage error, as --from with --train always was
        main(["prompts", str(tmp_path / "x"), "--world", "hard", "--from",
              str(tmp_path / "toy" / "prompts.parquet")])  # fmt: skip
    assert e.value.code == 2
    assert "--from cannot be combined with --world" in capsys.readouterr().err


def test_toy_hard_test_prompt_sets():
    assert toy_test_count("toy-hard-test") == HARD_SPLIT.n_test == 120
    assert toy_test_count("toy-hard-test:7") == 7
    assert toy_test_prompts("toy-hard-test:5") == replace(HARD_SPLIT, n_test=5).prompts("test")
    assert toy_test_prompts("toy-hard-test") == HARD_SPLIT.prompts("test")
    assert toy_test_prompts("toy-test:3") == replace(TOY_SPLIT, n_test=3).prompts("test")
    assert {p.dsr_type for p in toy_test_prompts("toy-hard-test")} >= {"LR", "TB", "BL"}
    with pytest.raises(SpatialAlignError, match="toy-hard-test"):
        toy_test_count("toy-hard-test:0")


# ------------------------------------------------------------------ the chain


def test_sample_track_score_pairs_use_the_toy_hard_preset(hard_model, tmp_path, capsys):
    run = tmp_path / "run"
    main(["prompts", str(run), "--world", "hard", "--train", "2", "--test", "0"])
    main(["sample", str(run), "--model", "toy-hard", "--model-path", str(hard_model),
          "--steps", "2", "--seeds", "2", "--workers", "1"])  # fmt: skip
    rd = RunDir(run)
    rows = rd.read_manifest(["model", "num_frames", "height", "width"]).to_pylist()
    assert len(rows) == 4
    assert {(r["model"], r["num_frames"], r["height"], r["width"]) for r in rows} == {
        ("toy-hard", 12, 16, 16)
    }
    assert manifest_preset(run) == "toy-hard"

    main(["track", str(run), "--workers", "1"])  # no --preset: the manifest's model decides
    assert record_of(rd.tracks_path)["preset"] == "toy-hard"
    main(["score-batch", str(run), "-q"])
    scores = record_of(rd.scores_path)
    assert scores["preset"] == "toy-hard" and scores["config"]["min_frames"] == 8
    assert read_json(rd.summary_path)["config"]["min_valid"] == 8
    main(["pairs", str(run)])  # current scores (made from these tracks): no stale refusal
    assert record_of(rd.pairs_path)["stage"] == "pairs"
    capsys.readouterr()

    # a preset the user gives still wins, and score-batch follows what track recorded
    main(["track", str(run), "--workers", "1", "--preset", "toy"])
    assert record_of(rd.tracks_path)["preset"] == "toy"
    main(["score-batch", str(run), "-q"])
    assert record_of(rd.scores_path)["preset"] == "toy"


def test_track_refuses_a_run_of_models_with_different_presets(hard_model, tmp_path, capsys):
    run = tmp_path / "mixed"
    main(["prompts", str(run), "--train", "1", "--test", "0"])
    toy_dir = ToyPipeline.random(seed=1).save_pretrained(tmp_path / "toy")
    for model, path in (("toy", toy_dir), ("toy-hard", hard_model)):
        main(["sample", str(run), "--model", model, "--model-path", str(path), "--steps", "1",
              "--seeds", "1", "--workers", "1"])  # fmt: skip
    capsys.readouterr()
    err = _one_line_error(capsys, ["track", str(run), "--workers", "1"])
    assert "models toy, toy-hard" in err and "pass --preset" in err


def test_eval_toy_hard_test_scores_with_the_toy_hard_preset(hard_model, tmp_path, capsys):
    ev = tmp_path / "eval"
    main(["eval", str(ev), "--model", "toy-hard", "--model-path", str(hard_model),
          "--prompts", "toy-hard-test:2", "--seeds", "1", "--steps", "2", "--workers", "1"])  # fmt: skip
    summary = read_json(RunDir(ev).summary_path)
    assert summary["eval"]["preset"] == "toy-hard" and summary["eval"]["model"] == "toy-hard"
    assert summary["config"]["min_frames"] == 8 and summary["n_videos"] == 2
    assert record_of(RunDir(ev).tracks_path)["preset"] == "toy-hard"
    texts = [p.text for p in RunDir(ev).read_prompts()]
    assert texts == [p.text for p in replace(HARD_SPLIT, n_test=2).prompts("test")]


# ------------------------------------------------------------------ loop and train


def test_loop_takes_the_hard_split_and_preset():
    cfg = LoopConfig(backend=BackendConfig(model="toy-hard"))
    assert (cfg.train_prompts, cfg.test_prompts) == (600, "toy-hard-test")
    toy = LoopConfig()
    assert (toy.train_prompts, toy.test_prompts) == (500, "toy-test")  # as before
    assert (toy.settings()["train_prompts"], toy.settings()["test_prompts"]) == (500, "toy-test")
    told = LoopConfig(backend=BackendConfig(model="toy-hard"), train_prompts=3, test_prompts="x")
    assert (told.train_prompts, told.test_prompts) == (3, "x")
    assert stages.train_prompts(replace(cfg, train_prompts=4)) == HARD_SPLIT.prompts("train")[:4]
    assert stages.train_prompts(replace(toy, train_prompts=4)) == TOY_SPLIT.prompts("train")[:4]
    assert stages.track_spec(cfg).preset_name == "toy-hard"
    assert stages.track_spec(toy).preset_name == "toy"
    cfg.validate()  # merge mode is a toy-family mode


def test_loop_checks_the_hard_model_before_sampling(hard_model, shipped_hard):
    cfg = LoopConfig(backend=BackendConfig(model="toy-hard"))
    stages.check_train_settings(cfg)  # loads the (stand-in) shipped weights: rank fits
    with pytest.raises(SpatialAlignError, match="rank"):
        stages.check_train_settings(replace(cfg, train=replace(cfg.train, lora_rank=4096)))


def test_merge_fuses_into_the_hard_model(hard_model, shipped_hard, tmp_path):
    import torch
    from spatialalign.core.provenance import fingerprint
    from spatialalign.loop.merge import merge_model, merged_record
    from spatialalign.training.config import TrainConfig
    from spatialalign.training.trainer import prepare_transformer, save_adapter

    pipe = ToyPipeline.from_pretrained(hard_model)
    prepare_transformer(pipe.transformer, TrainConfig(lora_rank=2, lora_alpha=2.0))
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    adapter = save_adapter(tmp_path / "lora", pipe.transformer)
    out, written = merge_model("toy-hard", None, adapter, tmp_path / "merged")
    assert written and merged_record(out)["base"] == fingerprint(hard_model)
    merged = ToyPipeline.from_pretrained(out)
    assert (merged.num_frames, merged.height, merged.width) == (12, 16, 16)


@pytest.mark.parametrize(
    ("verb", "args", "message"),
    [
        ("loop", ["--tau", "2"], "--tau must be in [0, 1]"),
        ("sample", ["--steps", "0"], "Invalid value for '--steps'"),
        ("eval", ["--prompts", "toy-hard-test:0"], "toy-hard-test"),
        ("train", [], "run directory not found"),
    ],
)
def test_every_verb_takes_toy_hard_by_name(tmp_path, capsys, verb, args, message):
    # --model toy-hard passes option parsing: each verb fails on its own later check
    with pytest.raises(SystemExit) as e:
        main([verb, str(tmp_path / "run"), "--model", "toy-hard", *args])
    assert e.value.code in (1, 2)
    err = capsys.readouterr().err
    assert "unknown model" not in err and message in err, err


# ------------------------------------------------------------------ toy evaluate


def test_toy_evaluate_world_hard(hard_model, tmp_path, capsys):
    out = tmp_path / "hard.json"
    main(["toy", "evaluate", "--world", "hard", "--model", str(hard_model), "--test-prompts", "2",
          "--seeds", "1", "--steps", "2", "--out", str(out)])  # fmt: skip
    summary = read_json(out)
    assert summary["n_videos"] == 2 and summary["config"]["min_frames"] == 8
    assert summary["eval_config"]["world"] == "hard"
    assert summary["eval_config"]["preset"] == "toy-hard"
    assert summary["eval_config"]["n_train"] == HARD_SPLIT.n_train
    assert set(summary["per_type"]) <= {
        p.dsr_type for p in replace(HARD_SPLIT, n_test=2).prompts("test")
    }


def test_toy_evaluate_rendered_world_hard_is_the_ceiling(tmp_path):
    from spatialalign.toy.evaluate import ToyEvalConfig, eval_prompts, render_world
    from spatialalign.toy.world import WORLDS

    cfg = ToyEvalConfig(world="hard", n_test=4, seeds=(0,))
    assert render_world(cfg) is WORLDS["hard"] and cfg.preset == "toy-hard"
    assert eval_prompts(cfg) == replace(HARD_SPLIT, n_test=4).prompts("test")
    main(["toy", "evaluate", "--world", "hard", "--rendered", "--test-prompts", "4",
          "--seeds", "1", "--out", str(tmp_path / "r.json")])  # fmt: skip
    summary = read_json(tmp_path / "r.json")
    assert summary["n_videos"] == 4 and summary["config"]["min_frames"] == 8
    # the hard world's own clips pass the toy-hard rules (the renderer's contract)
    assert summary["validness"] == 1.0


def test_a_copied_best_of_run_grows_by_its_new_candidates_only(hard_model, tmp_path, capsys):
    # scripts/experiment_toy.sh (WORLD=hard) evaluates best-of-8 in a copy of the best-of-4
    # run: only the new candidates are sampled, and the selection is best-of-8's
    import shutil

    common = ["--model", "toy-hard", "--model-path", str(hard_model), "--prompts",
              "toy-hard-test:2", "--seeds", "1", "--steps", "1", "--workers", "1"]  # fmt: skip
    main(["eval", str(tmp_path / "bo2"), *common, "--best-of", "2"])
    shutil.copytree(tmp_path / "bo2", tmp_path / "bo3", symlinks=True)
    capsys.readouterr()
    main(["eval", str(tmp_path / "bo3"), *common, "--best-of", "3"])
    out = capsys.readouterr().out
    assert "generated 2 video(s)" in out  # 2 prompts x 1 slot x the one new candidate
    summary = read_json(RunDir(tmp_path / "bo3").summary_path)
    assert summary["sampling"]["videos_sampled"] == 6 and summary["sampling"]["best_of"] == 3
    assert summary["eval"]["preset"] == "toy-hard"
    kept = RunDir(tmp_path / "bo3").read_manifest(["seed"]).to_pylist()
    assert len(kept) == 2 and {r["seed"] for r in kept} == {0}
