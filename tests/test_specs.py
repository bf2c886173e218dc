"""One spec per concept: ``DetectorSpec``/``TrackSpec`` and ``BackendConfig`` are the source of
the ``track``, ``eval``, ``loop`` and ``sample`` options, which stay those the verbs offered
before the specs (flag names and defaults), and a spec survives config -> options -> config."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
import pytest
from spatialalign.cli import cli, main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import click_options, from_options
from spatialalign.detection.spec import DetectorSpec, TrackSpec
from spatialalign.loop.config import LoopConfig
from spatialalign.models.backends import BackendConfig
from spatialalign.models.registry import MODELS, backend_class, is_toy, scoring_preset

# The flags each verb offered before its options were derived from the specs.
_TRAIN_FLAGS = (
    "--adam-beta1 --adam-beta2 --beta --checkpoint-every --distributed --global-batch-size "
    "--gradient-accumulation-steps --gradient-checkpointing --keep-checkpoint-every "
    "--keep-checkpoints --lambda-sft --lambda-zo --learning-rate --log-every --logit-mean "
    "--logit-std --lora-alpha --lora-rank --loss --lr-schedule-steps --lr-scheduler "
    "--lr-warmup-steps --margin-clip --max-grad-norm --max-steps --mixed-precision "
    "--no-gradient-checkpointing --no-shared-noise --pair-sampling --quiet "
    "--rwr-temperature --save-adapter-steps --seed --sft-top-k --shared-noise "
    "--timestep-sampling --timestep-shift --train-batch-size --weight-decay -q"
)
_MODEL_FLAGS = (
    "--adapter --attention --compile --device --dtype --fps --guidance --height --model "
    "--model-dir --model-path --negative-prompt --num-frames --offload --steps "
    "--text-encoder-dir --vae-slicing --vae-tiling --width"
)
BEFORE_LOOP = (
    "--batch-size --continue-adapter --detector --device --eval-seeds --first-seed "
    "--gdino-dir --guidance --invalid-losers --max-pairs-per-prompt --merge --model "
    "--model-dir --no-invalid-losers --onnx-dir --pair-seed --prompt-seed --rounds --sam "
    "--sample-steps --seeds --tau --test-prompts --train-prompts --workers " + _TRAIN_FLAGS
)
BEFORE = {
    "track": "--batch-size --box-threshold --detector --device --merge-timeout --model-dir "
    "--onnx-dir --overwrite --preset --prompts --sam --text-threshold --workers",
    "eval": "--batch-size --best-of --clip --detector --dinov2 --dinov2-size --first-seed "
    "--gdino-dir --musiq --onnx-dir --prompts --sam --seeds --split --workers " + _MODEL_FLAGS,
    "sample": "--batch-size --first-seed --prompts --seeds --split --workers " + _MODEL_FLAGS,
    "loop": BEFORE_LOOP,
    "train": "--encode --model --model-path --no-encode --no-resume --recipe --resume "
    "--text-encoder-dir --vae-tiling " + _TRAIN_FLAGS,
}
# what the loop offers since it embeds the back end's spec: sample's model options (less
# --adapter: the loop trains its own; --steps spelled --sample-steps, as before)
AFTER = {
    **BEFORE,
    "loop": BEFORE_LOOP
    + " "
    + " ".join(f for f in _MODEL_FLAGS.split() if f not in ("--adapter", "--steps")),
    # train's model options come from the same spec, which also spells --model-path --model-dir
    "train": BEFORE["train"] + " --model-dir",
    # rl (new with its spec, RLConfig): sample's model options less --adapter, --offload,
    # --compile and --vae-slicing; track's detector options (--batch-size spelled
    # --detector-batch-size; the device is the model's)
    "rl": "--adam-beta1 --adam-beta2 --advantage-clip --attention --box-threshold --clip-range "
    "--detector --detector-batch-size --device --dtype --first-seed --fps --gdino-dir "
    "--gradient-checkpointing --group-size --guidance --height --invalid-reward --iterations "
    "--keep-checkpoints --keep-videos --kl-coef --learning-rate --log-every --lora-alpha "
    "--lora-rank --lr-schedule --lr-warmup-steps --max-grad-norm --min-group-std --mixed-precision --model "
    "--model-dir --model-path --negative-prompt --no-gradient-checkpointing --no-keep-videos "
    "--no-normalize-per-prompt --noise-level --normalize-per-prompt --num-frames --onnx-dir "
    "--preset --prompts-per-iteration --quiet --sam --sample-batch-size --seed --steps "
    "--text-encoder-dir --text-threshold --top-k --train-batch-size --train-step-fraction "
    "--train-steps "
    "--updates-per-iteration --vae-tiling --weight-decay --width -q",
}
DETECTOR_DEFAULTS = {"--detector": "toy", "--onnx-dir": None, "--gdino-dir": None, "--sam": None}


def _command(verb: str) -> click.Command:
    return cli.get_command(click.Context(cli), verb)


def _flags(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


@pytest.mark.parametrize("verb", sorted(AFTER))
def test_each_verb_offers_the_flags_it_offered_before_the_specs(verb):
    assert _flags(_command(verb)) == set(AFTER[verb].split())


@pytest.mark.parametrize("verb", ["track", "eval", "loop"])
def test_the_detector_options_come_from_one_spec(verb):
    by_flag = {o: p for p in _command(verb).params for o in p.opts}
    flags = {"gdino_dir": "--model-dir"} if verb == "track" else {}
    for f in dataclasses.fields(DetectorSpec):
        param = by_flag[flags.get(f.name, "--" + f.name.replace("_", "-"))]
        assert param.name == f.name and param.help == f.metadata["help"]
        assert param.default == DETECTOR_DEFAULTS.get(param.opts[0], f.default)


@pytest.mark.parametrize("verb", ["sample", "eval"])
def test_the_model_options_come_from_backend_config(verb):
    params = {p.name: p for p in _command(verb).params}
    fields = {f.name for f in dataclasses.fields(BackendConfig)} - {"max_sequence_length"}
    assert fields <= set(params)
    assert tuple(params["model"].type.choices) == MODELS


def _roundtrip(cls: type, config: Any, **kw: Any) -> Any:
    """``config`` rendered as command-line arguments, parsed by options derived from ``cls``."""

    @click.command()
    @click_options(cls, **kw)
    def cmd(**options: Any) -> Any:
        return from_options(cls, options)

    args: list[str] = []
    for p in cmd.params:
        value = _value(config, p.name)
        if isinstance(value, bool):
            if value != p.default:
                args.append(p.opts[0] if value else p.secondary_opts[0])
        elif value is not None:
            args += [p.opts[0], str(value)]
    return cmd.main(args, standalone_mode=False)


def _value(config: Any, name: str) -> Any:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == name:
            return value
        if dataclasses.is_dataclass(value) and name in {g.name for g in dataclasses.fields(value)}:
            return getattr(value, name)
    raise KeyError(name)


def test_specs_round_trip_through_their_options(tmp_path):
    detection = DetectorSpec("gdino-onnx", onnx_dir=str(tmp_path), sam=str(tmp_path / "sam"))
    assert _roundtrip(DetectorSpec, detection) == detection
    track = TrackSpec(detection, preset="official", box_threshold=0.35, device="cpu", batch_size=3)
    assert _roundtrip(TrackSpec, track) == track
    assert _roundtrip(TrackSpec, track, flags={"gdino_dir": ("--model-dir",)}) == track
    backend = BackendConfig(
        model="wan", model_path=str(tmp_path), steps=7, guidance=4.5, fps=8.0, vae_tiling=True,
        offload="model", compile=True,
    )  # fmt: skip
    assert _roundtrip(BackendConfig, backend, exclude=("max_sequence_length",)) == backend
    loop = LoopConfig(rounds=2, detection=detection, tau=0.5, invalid_losers=True)
    again = _roundtrip(LoopConfig, loop, exclude=("mode", "train"))
    assert again == loop


def test_loop_settings_keep_the_detector_flat():
    # loop.json of loops made before the spec must still match (a rerun compares them)
    settings = LoopConfig(detection=DetectorSpec("gdino-torch", gdino_dir="g")).settings()
    assert "detection" not in settings
    assert (settings["detector"], settings["gdino_dir"], settings["onnx_dir"]) == (
        "gdino-torch", "g", None,
    )  # fmt: skip
    keys = list(settings)
    assert keys[keys.index("invalid_losers") + 1 : keys.index("train")] == [
        "detector", "onnx_dir", "gdino_dir", "sam",
    ]  # fmt: skip


@pytest.mark.parametrize("verb", ["track", "eval", "loop"])
def test_an_unknown_detector_is_one_line(tmp_path, capsys, verb):
    with pytest.raises(SystemExit) as e:
        main([verb, str(tmp_path / "run"), "--detector", "yolo"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown detector 'yolo'") and "\n" not in err
    with pytest.raises(SpatialAlignError, match="unknown detector 'yolo'"):
        DetectorSpec("yolo").validate()


def test_one_model_registry():
    assert MODELS == ("toy", "toy-hard", "wan")
    assert [backend_class(m).model for m in MODELS] == list(MODELS)
    assert [is_toy(m) for m in MODELS] == [True, True, False]
    assert [scoring_preset(m) for m in MODELS] == ["toy", "toy-hard", "official"]
    assert not is_toy("sd")
    with pytest.raises(SpatialAlignError, match="unknown model 'sd'"):
        backend_class("sd")


def test_the_toy_split_is_one_constant():
    from spatialalign.evaluation.eval_prompts import toy_test_count, toy_test_prompts
    from spatialalign.prompts.generate import generate_dataset
    from spatialalign.prompts.splits import TOY_SPLIT
    from spatialalign.toy.evaluate import ToyEvalConfig, eval_prompts

    assert (TOY_SPLIT.n_train, TOY_SPLIT.n_test, TOY_SPLIT.seed) == (500, 120, 0)
    assert toy_test_count("toy-test") == TOY_SPLIT.n_test
    drawn = generate_dataset(500, 120, seed=0)
    assert TOY_SPLIT.prompts() == drawn
    assert toy_test_prompts("toy-test") == eval_prompts(ToyEvalConfig()) == drawn[500:]
    assert toy_test_prompts("toy-test:3") == generate_dataset(500, 3, seed=0)[500:]


def test_loop_json_keeps_its_back_end_keys():
    # loop directories made before the loop embedded BackendConfig recorded these keys
    old_keys = {"model", "model_dir", "sample_steps", "guidance", "device", "batch_size"}
    settings = LoopConfig().settings()
    assert old_keys <= settings.keys()
    assert not {"model_path", "steps", "adapter", "num_frames", "backend"} & settings.keys()
    cfg = LoopConfig(backend=BackendConfig(model_path="m", steps=7, num_frames=17))
    got = cfg.settings()
    assert (got["model_dir"], got["sample_steps"], got["num_frames"]) == ("m", 7, 17)
