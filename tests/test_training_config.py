"""TrainConfig: documented once, the CLI options derived from it."""

from __future__ import annotations

import dataclasses
import re

import click
import pytest
from click.testing import CliRunner
from spatialalign.core.options import click_options, from_options
from spatialalign.training.config import TrainConfig


def test_defaults_are_design_md():
    c = TrainConfig()
    assert (c.loss, c.beta, c.lambda_zo, c.margin_clip) == ("dpo+zo", 1.0, 0.25, 5.0)
    assert (c.lora_rank, c.lora_alpha, c.learning_rate, c.lr_warmup_steps) == (16, 16.0, 1e-4, 300)
    assert c.lr_scheduler == "cosine"


def test_every_field_is_documented_in_the_docstring():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f.name
        assert f"    {f.name} (default ``{f.default!r}``)" in TrainConfig.__doc__


def test_cli_options_are_derived_from_the_fields():
    @click.command()
    @click_options(TrainConfig)
    def cmd(**options):
        click.echo(repr(from_options(TrainConfig, options)))

    runner = CliRunner()
    help_text = runner.invoke(cmd, ["--help"]).output
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    res = runner.invoke(
        cmd, ["--loss", "sft", "--beta", "2", "--shared-noise", "--global-batch-size", "48"]
    )
    assert res.exit_code == 0, res.output
    want = TrainConfig(loss="sft", beta=2.0, shared_noise=True, global_batch_size=48)
    assert res.output.strip() == repr(want)
    assert runner.invoke(cmd, ["--loss", "ppo"]).exit_code != 0  # Literal -> choice


def test_validation_and_accumulation():
    with pytest.raises(ValueError, match="beta"):
        TrainConfig(beta=float("nan")).validate()
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=0).validate()
    c = TrainConfig(train_batch_size=8, global_batch_size=48)
    assert c.accumulation_steps(1) == 6 and c.accumulation_steps(3) == 2
    with pytest.raises(ValueError, match="multiple"):
        c.accumulation_steps(4)
    assert TrainConfig(gradient_accumulation_steps=3).accumulation_steps(2) == 3


def _float_fields(cls) -> list[str]:
    import typing

    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if float in (hints[f.name], *typing.get_args(hints[f.name]))
    ]


@pytest.mark.parametrize("name", _float_fields(TrainConfig))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_setting_must_be_finite(name, value):
    # `train --learning-rate inf` (or --timestep-shift nan) trained an all-NaN adapter
    with pytest.raises(ValueError, match=f"^{name} must be a finite number"):
        TrainConfig(**{name: value}).validate()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("timestep_shift", 0.0, "timestep_shift must be > 0"),
        ("logit_std", 0.0, "logit_std must be > 0"),
        ("max_grad_norm", -1.0, "max_grad_norm must be >= 0"),
        ("weight_decay", -0.1, "weight_decay must be >= 0"),
        ("adam_beta1", 1.0, "adam_beta1 must be in [0, 1)"),
        ("adam_beta2", -0.5, "adam_beta2 must be in [0, 1)"),
        ("lora_rank", 0, "lora_rank must be >= 1"),
        ("lora_alpha", 0.0, "lora_alpha must be > 0"),
        ("lora_alpha", -2.0, "lora_alpha must be > 0"),
    ],
)
def test_float_settings_out_of_range_are_refused(name, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**{name: value}).validate()


def test_derived_float_options_refuse_nan_and_inf():
    from spatialalign.core.errors import SpatialAlignError

    @click.command()
    @click_options(TrainConfig)
    def cmd(**options):
        click.echo("ran")

    runner = CliRunner()
    for value in ("nan", "inf", "-inf", "NaN"):
        res = runner.invoke(cmd, ["--learning-rate", value])
        assert isinstance(res.exception, SpatialAlignError) and "ran" not in res.output, value
        want = f"--learning-rate must be a finite number, got {float(value)}"
        assert str(res.exception) == want
    assert runner.invoke(cmd, ["--learning-rate", "1e-3"]).output == "ran\n"


def _float_options():
    """(argv prefix, option) for every float option of every verb (subcommands of groups)."""
    from spatialalign.cli import COMMANDS, cli

    ctx = click.Context(cli)
    out = []
    todo = [([name], cli.get_command(ctx, name)) for name in COMMANDS]
    while todo:
        argv, cmd = todo.pop()
        if isinstance(cmd, click.Group):
            todo += [([*argv, n], c) for n, c in cmd.commands.items()]
            continue
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, click.types.FloatParamType):
                out.append((argv, p.opts[0]))
    return sorted(out)


def test_every_float_option_of_every_verb_refuses_nan_and_inf(capsys):
    # e.g. `track --box-threshold nan` / `--merge-timeout nan` passed click's FloatRange
    from spatialalign.cli import main

    options = _float_options()
    have = {opt for _, opt in options}
    assert {"--box-threshold", "--text-threshold", "--merge-timeout", "--tau"} <= have
    assert {"--learning-rate", "--max-grad-norm", "--logit-std", "--guidance"} <= have
    for argv, opt in options:
        for value in ("nan", "inf"):
            with pytest.raises(SystemExit) as e:
                main([*argv, opt, value])
            err = capsys.readouterr().err
            assert e.value.code == 1, (argv, opt, err)
            assert err == f"error: {opt} must be a finite number, got {value}\n", (argv, err)
