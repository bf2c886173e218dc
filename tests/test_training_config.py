"""TrainConfig: documented once, the CLI options derived from it."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner
from spatialalign.options import click_options, from_options
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
