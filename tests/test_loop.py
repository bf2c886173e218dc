"""``spatialalign loop`` on the toy model at tiny settings: layout, which model each round
samples with, resume after a kill, the merge, one-line errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json, write_json
from spatialalign.core.presets import PRESETS, preset_for
from spatialalign.core.provenance import fingerprint
from spatialalign.detection.registry import DETECTORS
from spatialalign.detection.spec import DetectorSpec, TrackSpec, preset_for_model
from spatialalign.loop import stages
from spatialalign.loop.config import TRAIN_SEED_RULE, LoopConfig, loop_train_config
from spatialalign.loop.layout import LoopDir
from spatialalign.loop.merge import merge_toy
from spatialalign.loop.run import loop_run
from spatialalign.lora.adapter import load_lora_into_transformer
from spatialalign.models.backends import BackendConfig, ToyBackend
from spatialalign.models.toy.pipeline import ToyPipeline
from spatialalign.training.config import TrainConfig
from spatialalign.training.trainer import prepare_transformer, save_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# the tests that run whole rounds (the ``merged`` loop, a continued adapter) are marked slow
# one by one; the option checks, errors, locks and the merge itself stay in `make test-fast`


def tiny(mode: str = "merge", **overrides) -> LoopConfig:
    """9 TRAIN prompts x 3 seeds, 4 TEST prompts x 1 seed, 3 steps of 4 pairs, 2 rounds.

    Invalid losers: the toy model's verdicts hardly vary with the seed, so 3 fresh seeds of
    a few prompts seldom give the paper's pairs (valid winner and loser); with invalid
    losers, two TRAIN prompts make pairs in each round (the shipped model: prompts 3 and 9
    with seeds 1000-1002, prompts 3 and 7 with 2000-2002).
    """
    settings = {
        "rounds": 2,
        "mode": mode,
        "train_prompts": 9,
        "seeds": 3,
        "test_prompts": "toy-test:4",
        "eval_seeds": 1,
        "invalid_losers": True,
        "train": loop_train_config(max_steps=3, train_batch_size=4),
    }
    return LoopConfig(**{**settings, **overrides})


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """A merge loop killed in round 1 after ``pairs`` (train raises), then rerun to the end;
    (layout, result of the rerun, echo lines of the rerun)."""
    root = tmp_path_factory.mktemp("loop") / "merge"
    cfg = tiny()
    with pytest.MonkeyPatch.context() as mp:

        def killed(*args, **kwargs):
            raise Killed

        mp.setattr(stages, "train", killed)
        with pytest.raises(Killed):
            loop_run(root, cfg, progress=False)
    layout = LoopDir(root)
    assert layout.train_run(1).pairs_path.is_file()
    assert not layout.adapter_path(1).exists()
    lines: list[str] = []
    result = loop_run(root, cfg, echo=lines.append, progress=False)
    return layout, result, lines


@pytest.mark.slow
def test_every_round_writes_its_files(merged):
    layout, result, _ = merged
    for k in (1, 2):
        train = layout.train_run(k)
        for path in (train.manifest_path, train.tracks_path, train.scores_path, train.pairs_path):
            assert path.is_file(), path
        assert layout.adapter_path(k).is_file()
        assert (layout.model_dir(k) / "model.safetensors").is_file()
    for k in (0, 1, 2):
        assert layout.eval_run(k).summary_path.is_file()
        assert layout.eval_run(k).metrics_path.is_file()
    assert not layout.train_run(0).root.exists()
    state = read_json(layout.state_path)
    assert [r["round"] for r in state["table"]] == [0, 1, 2]
    assert state["settings"]["train"]["max_steps"] == 3
    stages_timed = {"sample", "track", "score", "pairs", "train", "merge", "eval"}
    assert set(state["table"][2]["stage_seconds"]) == stages_timed
    assert [r.round for r in result.rows] == [0, 1, 2]
    assert result.rows[1].pairs and result.rows[1].train_steps == 3
    assert "| 2 |" in layout.table_path.read_text()


def _model_ids(run) -> set[str]:
    return {r["model_id"] for r in run.sample_records().values()}


@pytest.mark.slow
def test_each_round_samples_with_the_previous_rounds_model(merged):
    layout, _, _ = merged
    shipped = ToyBackend(ToyPipeline.from_pretrained()).identity()
    round1 = ToyBackend(ToyPipeline.from_pretrained(layout.model_dir(1))).identity()
    round2 = ToyBackend(ToyPipeline.from_pretrained(layout.model_dir(2))).identity()
    assert len({shipped, round1, round2}) == 3
    assert _model_ids(layout.train_run(1)) == {shipped}
    assert _model_ids(layout.train_run(2)) == {round1}
    assert _model_ids(layout.eval_run(0)) == {shipped}
    assert _model_ids(layout.eval_run(2)) == {round2}
    # round 2 trained on round 1's model (its reference), recorded by train
    inputs = read_json(layout.train_run(2).train_dir / "inputs.json")
    assert inputs["model"] == "toy:" + fingerprint(layout.model_dir(1))


@pytest.mark.slow
def test_a_killed_loop_resumes_in_the_stage_it_was_in(merged):
    _, result, lines = merged
    first, second = result.reports
    assert first.sampled == 0 and first.tracked == 0  # round 1 was sampled and tracked before
    assert first.trained and first.merged
    assert second.sampled > 0 and second.trained
    round0 = [ln for ln in lines if ln.startswith("sample:")]  # round 0's eval
    assert round0 and all("generated 0 video(s)" in ln for ln in round0)


@pytest.mark.slow
def test_a_finished_loop_reruns_nothing(merged):
    layout, _, _ = merged
    again = loop_run(layout.root, tiny(), progress=False)
    for report in again.reports:
        assert (report.sampled, report.tracked) == (0, 0)
        assert not report.trained and not report.merged
    assert [r.correctness for r in again.rows] == [
        r["correctness"] for r in read_json(layout.state_path)["table"]
    ]


@pytest.mark.slow
def test_other_settings_are_refused_but_rounds_may_grow(merged, capsys):
    layout, _, _ = merged
    with pytest.raises(SystemExit):
        main(["loop", str(layout.root), "--rounds", "2", "--seeds", "4", "--max-steps", "3"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "other settings" in err and "\n" not in err


@pytest.mark.slow
def test_rounds_sample_train_videos_from_fresh_seeds_disjoint_from_the_evals(merged):
    # every round sampled the TRAIN prompts with seeds 0..N-1, the very noises of the
    # evaluation's seeds and of every earlier round
    layout, _, _ = merged

    def seeds(run) -> set[int]:
        rows = run.read_manifest(["seed"]).to_pylist()
        assert all(r["sample_id"].endswith(f"_seed{r['seed']:02d}") for r in rows)
        return {r["seed"] for r in rows}

    train = {k: seeds(layout.train_run(k)) for k in (1, 2)}
    evals = {k: seeds(layout.eval_run(k)) for k in (0, 1, 2)}
    assert train == {1: {1000, 1001, 1002}, 2: {2000, 2001, 2002}}
    assert evals == {0: {0}, 1: {0}, 2: {0}}  # the evaluation: --first-seed 0, 1 seed
    assert not train[1] & train[2] and not (train[1] | train[2]) & evals[0]
    assert read_json(layout.state_path)["seeds"] == {
        "eval": [0, 0],
        "train": {"1": [1000, 1002], "2": [2000, 2002]},
        "rule": TRAIN_SEED_RULE,
    }


@pytest.mark.slow
def test_continue_adapter_trains_the_previous_adapter_on(tmp_path):
    layout = LoopDir(tmp_path / "continue")
    result = loop_run(layout.root, tiny("continue"), progress=False)
    assert [r.round for r in result.rows] == [0, 1, 2]
    assert not layout.model_dir(1).exists()
    # round 2 sampled with the shipped model + round 1's adapter
    records = layout.train_run(2).sample_records().values()
    assert {r["adapter"] for r in records} == {str(layout.adapter_path(1).resolve())}
    assert {r["adapter_id"] for r in records} == {fingerprint(layout.adapter_path(1))}
    # ... and its training started from that adapter: the step-0 checkpoint holds it
    ckpt = layout.train_run(2).train.checkpoint_path(0)
    start = {k.removeprefix("lora."): v for k, v in load_file(str(ckpt)).items()}
    start = {k: v for k, v in start.items() if "lora_" in k}
    adapter = {
        k.removeprefix("transformer."): v for k, v in load_file(str(layout.adapter_path(1))).items()
    }
    assert start.keys() == adapter.keys()
    assert all(torch.equal(start[k], adapter[k]) for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)


def _transformer_out(transformer) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    cfg = transformer.config
    x = torch.randn(2, cfg.in_channels, 9, 4, 4, generator=g)
    text = torch.randn(2, 5, cfg.text_dim, generator=g)
    with torch.no_grad():
        return transformer(
            hidden_states=x,
            timestep=torch.tensor([300.0, 700.0]),
            encoder_hidden_states=text,
            return_dict=False,
        )[0]


def test_merged_model_equals_base_plus_lora(tmp_path):
    pipe = ToyPipeline.from_pretrained()
    prepare_transformer(pipe.transformer, TrainConfig(lora_rank=4, lora_alpha=8.0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in pipe.transformer.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    adapter = save_adapter(tmp_path / "lora", pipe.transformer)

    out, written = merge_toy(None, adapter, tmp_path / "merged")
    assert written and merge_toy(None, adapter, out) == (out, False)  # equal merge: skipped
    base = ToyPipeline.from_pretrained()
    plain = _transformer_out(base.transformer)
    load_lora_into_transformer(base.transformer, adapter)
    with_lora = _transformer_out(base.transformer)
    merged = ToyPipeline.from_pretrained(out)
    assert not any("lora" in k for k in merged.state_dict())
    got = _transformer_out(merged.transformer)
    assert (with_lora - plain).abs().max() > 1e-2  # the adapter matters
    assert torch.allclose(got, with_lora, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--model", "sdxl"], "unknown model 'sdxl'"),
        (["--model", "wan"], "--merge is implemented for the toy model only"),
        (["--seeds", "1"], "--seeds must be >= 2"),
        (["--max-steps", "0"], "max_steps must be >= 1"),
        (["--first-seed", "-1"], "--first-seed must be >= 0, got -1"),
        (["--seeds", "1001"], "--seeds must be at most 1000, got 1001"),
        (["--eval-seeds", "1001"], "--eval-seeds must be in 1..1000, got 1001"),
        (["--first-seed", "2147482000"], "round 3's TRAIN seeds reach 2147485007"),
    ],
)
def test_one_line_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["loop", str(tmp_path / "run"), *args])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_train_seeds_are_fresh_each_round_and_disjoint_from_the_evals():
    cfg = LoopConfig()
    assert cfg.eval_seeds_range() == range(5)
    assert [cfg.train_seeds(k) for k in (1, 2, 3)] == [
        range(1000, 1008),
        range(2000, 2008),
        range(3000, 3008),
    ]
    with pytest.raises(ValueError):
        cfg.train_seeds(0)  # round 0 only evaluates
    # eval seeds reaching past 1000 push the TRAIN blocks above them
    assert LoopConfig(first_seed=995, eval_seeds=10).train_seeds(1) == range(2000, 2008)
    assert LoopConfig(first_seed=995, eval_seeds=5).train_seeds(1) == range(1000, 1008)
    for first, n_eval, n_train in [(0, 5, 8), (0, 1000, 1000), (999, 1, 1000), (4321, 7, 2)]:
        cfg = LoopConfig(first_seed=first, eval_seeds=n_eval, seeds=n_train, rounds=4)
        cfg.validate()
        used = [set(cfg.eval_seeds_range())] + [set(cfg.train_seeds(k)) for k in range(1, 5)]
        assert sum(map(len, used)) == len(set().union(*used))  # pairwise disjoint
    assert LoopConfig(rounds=2).seeds_record() == {
        "eval": [0, 4],
        "train": {"1": [1000, 1007], "2": [2000, 2007]},
        "rule": TRAIN_SEED_RULE,
    }


def test_sample_and_eval_stages_pass_the_rounds_seeds(tmp_path, monkeypatch):
    seen: dict[str, list] = {"sample": [], "eval": []}
    monkeypatch.setattr(
        "spatialalign.sampling.run.sample_on_workers",
        lambda root, backend, workers, **kw: seen["sample"].append(kw),
    )
    monkeypatch.setattr(
        "spatialalign.evaluation.eval_run.eval_run",
        lambda root, cfg, echo, workers: seen["eval"].append(cfg),
    )
    cfg, layout = replace(tiny(first_seed=3), eval_seeds=2), LoopDir(tmp_path)
    for k in (1, 2):
        stages.sample(layout.train_run(k), None, layout.prompts_path, cfg, k, None, False)
    stages.evaluate(layout.eval_run(1), cfg, None, None, print, False)
    assert [(kw["first_seed"], kw["seeds"]) for kw in seen["sample"]] == [(1000, 3), (2000, 3)]
    assert [(c.first_seed, c.seeds) for c in seen["eval"]] == [(3, 2)]


def test_a_loop_made_before_fresh_seeds_is_refused(tmp_path, monkeypatch, capsys):
    # its rounds sampled seeds 0..N-1; continuing it would mix two seed rules in one loop
    _stop_at_round_0(monkeypatch)
    root = tmp_path / "loop"
    root.mkdir()
    old = tiny().settings()
    del old["train_seed_rule"], old["first_seed"]
    write_json({"settings": old, "rounds": 2, "table": []}, LoopDir(root).state_path)
    with pytest.raises(SystemExit) as e:
        main(["loop", str(root), *TINY_ARGS])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1, err
    assert "made before each round sampled fresh TRAIN seeds" in err
    # a loop of the current rule with another evaluation first seed: other settings
    write_json({"settings": tiny().settings()}, LoopDir(root).state_path)
    with pytest.raises(SpatialAlignError, match=r"other settings \(first_seed\)"):
        loop_run(root, tiny(first_seed=5), progress=False)
    with pytest.raises(Reached):  # the same settings continue
        loop_run(root, tiny(), progress=False)


def test_pairs_stage_passes_the_pair_settings(monkeypatch):
    seen = []
    monkeypatch.setattr("spatialalign.pairs.run.pair_run", lambda root, cfg: seen.append(cfg))
    for invalid_losers in (True, False):
        cfg = tiny(invalid_losers=invalid_losers, max_pairs_per_prompt=3)
        stages.pairs(LoopDir("unused").train_run(1), cfg)
        assert seen[-1].invalid_losers is invalid_losers
    assert seen[0].max_per_prompt == 3 and seen[0].tau == 0.7


def test_the_worker_count_is_not_a_setting_of_the_loop():
    # results do not depend on it, so a rerun with other --workers continues the loop
    assert LoopConfig(workers=2).settings() == LoopConfig().settings()
    with pytest.raises(SpatialAlignError, match="--workers must be >= 1"):
        LoopConfig(workers=0).validate()


@pytest.mark.parametrize("detector", DETECTORS)
def test_loop_tracks_and_scores_with_the_preset_eval_and_track_use(detector, monkeypatch):
    # one rule (detection.spec.preset_for_model: the model's preset) behind track's TrackSpec,
    # eval and the loop's stages; the detector's rule (preset_for) only where no model is known
    seen = []
    monkeypatch.setattr(
        "spatialalign.scoring.batch.score_run",
        lambda root, config, preset, progress: seen.append(preset),
    )
    stages.score(LoopDir("unused").train_run(1), LoopConfig(detection=DetectorSpec(detector)))
    assert seen == [preset_for_model("toy", detector)] == ["toy"]  # the loop's model: toy
    spec = stages.track_spec(LoopConfig(detection=DetectorSpec(detector)))
    assert spec.preset_name == "toy"
    hard = LoopConfig(backend=BackendConfig(model="toy-hard"), detection=DetectorSpec(detector))
    assert stages.track_spec(hard).preset_name == "toy-hard"
    assert TrackSpec(DetectorSpec(detector)).preset_name == preset_for(detector)
    assert preset_for(detector) in PRESETS
    assert (preset_for(detector) == "toy") == (detector == "toy")


class Reached(Exception):
    """The loop got past its checks to its first stage."""


def _stop_at_round_0(monkeypatch) -> None:
    def evaluate(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(stages, "evaluate", evaluate)


TINY_ARGS = ["--rounds", "1", "--train-prompts", "6", "--seeds", "3", "--test-prompts",
             "toy-test:4", "--eval-seeds", "1", "--max-steps", "3", "--train-batch-size", "4",
             "--workers", "1", "-q"]  # fmt: skip


def test_a_second_loop_on_a_directory_fails_at_once(tmp_path, monkeypatch):
    # two loops on one directory both ran, interleaving their rounds' files
    from test_training_cli import lock_held_elsewhere

    _stop_at_round_0(monkeypatch)
    root = tmp_path / "loop"
    with lock_held_elsewhere("loop", root) as pid:
        with pytest.raises(SpatialAlignError) as e:
            loop_run(root, tiny(), progress=False)
        assert str(e.value) == f"another loop is running on {root} (pid {pid})"
    with pytest.raises(Reached):  # released when the holder ends
        loop_run(root, tiny(), progress=False)


def test_test_prompts_without_a_test_split_are_refused(tmp_path, monkeypatch, capsys):
    # a file of TRAIN prompts was silently evaluated as the TEST set
    from shared_data import OFFICIAL_CSV
    from spatialalign.prompts import write_prompts
    from spatialalign.prompts.generate import generate_dataset

    _stop_at_round_0(monkeypatch)
    train_only = write_prompts(generate_dataset(4, 0, seed=3), tmp_path / "train.parquet")
    args = [a if a != "toy-test:4" else str(train_only) for a in TINY_ARGS]
    with pytest.raises(SystemExit) as e:
        main(["loop", str(tmp_path / "loop"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1, err
    assert err.startswith(
        f"error: --test-prompts {train_only} has no test split (its splits: train)"
    )
    assert not (tmp_path / "loop").exists()
    both = write_prompts(generate_dataset(4, 2, seed=3), tmp_path / "both.parquet")
    assert stages.eval_split(replace(tiny(), test_prompts=str(both))) == "test"
    assert (
        stages.eval_split(replace(tiny(), test_prompts=str(OFFICIAL_CSV))) == "all"
    )  # no splits named
    assert stages.eval_split(tiny()) == "auto"  # toy-test


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tau": float("nan")}, "--tau must be a finite number"),
        ({"backend": BackendConfig(guidance=float("inf"))}, "--guidance must be a finite number"),
        ({"train": {"learning_rate": float("inf")}}, "learning_rate must be a finite number"),
        ({"train": {"timestep_shift": float("nan")}}, "timestep_shift must be a finite number"),
        ({"train": {"lora_rank": 65}}, "lora_rank 65 is larger than the smallest layer"),
    ],
)
def test_bad_numbers_are_refused_before_round_0(tmp_path, monkeypatch, overrides, message):
    # `loop --learning-rate inf` trained and merged an all-NaN adapter
    _stop_at_round_0(monkeypatch)
    train = loop_train_config(max_steps=3, train_batch_size=4, **overrides.pop("train", {}))
    with pytest.raises(SpatialAlignError, match=message):
        loop_run(tmp_path / "loop", replace(tiny(), train=train, **overrides), progress=False)


def test_non_finite_options_are_refused_by_the_cli(tmp_path, capsys, monkeypatch):
    _stop_at_round_0(monkeypatch)  # were one accepted, the test stops instead of looping
    for opt, value in [("--learning-rate", "inf"), ("--tau", "nan"), ("--max-grad-norm", "nan"),
                       ("--logit-std", "nan"), ("--guidance", "inf")]:  # fmt: skip
        with pytest.raises(SystemExit) as e:
            main(["loop", str(tmp_path / "loop"), opt, value])
        err = capsys.readouterr().err
        assert err == f"error: {opt} must be a finite number, got {value}\n", err
        assert e.value.code == 1
    assert not (tmp_path / "loop").exists()


@pytest.mark.parametrize(("signum", "code"), [(15, 143), (2, 130)])
def test_a_signal_during_training_ends_the_loop_with_128_plus_its_number(
    tmp_path, monkeypatch, capsys, signum, code
):
    from types import SimpleNamespace

    from spatialalign.loop import run as loop_run_mod

    said = SimpleNamespace(line=lambda: "ok", summary=lambda: "ok")
    monkeypatch.setattr(stages, "evaluate", lambda *a, **k: said)
    monkeypatch.setattr(
        loop_run_mod,
        "eval_row",
        lambda k, run: loop_run_mod.RoundRow(k, 0.5, 0.4, 0.6, 0.9, None, None, 4),
    )
    monkeypatch.setattr(
        stages, "sample", lambda *a, **k: SimpleNamespace(generated=0, **vars(said))
    )
    monkeypatch.setattr(stages, "track", lambda *a, **k: SimpleNamespace(n_tracked=0, **vars(said)))
    monkeypatch.setattr(stages, "score", lambda *a: SimpleNamespace(summary={"validness": 1.0}))
    monkeypatch.setattr(stages, "pairs", lambda *a: (None, SimpleNamespace(pairs=3, **vars(said))))
    stopped = SimpleNamespace(steps=2, interrupted=True, adapter=None, signal=signum, last_log={})
    monkeypatch.setattr(stages, "train", lambda *a: SimpleNamespace(result=stopped, n_items=3))
    with pytest.raises(SystemExit) as e:
        main(["loop", str(tmp_path / "loop"), *TINY_ARGS])
    err = capsys.readouterr().err
    assert e.value.code == code and err.count("\n") == 1, err
    assert f"round 1: training interrupted by signal {signum} at step 2" in err
