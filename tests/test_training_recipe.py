"""Training recipes: ``official`` (the release's Wan2.1 run, DESIGN.md "The official run") and
``toy``; the official timestep grid, prompt-uniform pair draws, the schedule's horizon, and how
``train`` resolves a recipe with explicit options."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import click
import pytest
import torch

pytest.importorskip("peft")

from spatialalign.cli import main  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.rundir.layout import RunDir  # noqa: E402
from spatialalign.training import trainer  # noqa: E402
from spatialalign.training.config import (  # noqa: E402
    ADDED_FIELDS,
    RECIPES,
    TrainConfig,
    default_recipe,
)
from spatialalign.training.data import (  # noqa: E402
    ItemSampler,
    Pair,
    micro_batch_positions,
)
from spatialalign.trainlib.flow import official_grid, sample_sigmas, timesteps  # noqa: E402
from test_training_cli import FAST, _pair_seed0_over_seed1, _scores  # noqa: E402
from test_training_trainer import run, tiny_cfg  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FLOAT32_ULP_AT_1 = 2.0**-23
"""One float32 ulp at 1. The grid is ``linspace`` then elementwise float32 arithmetic; another
CPU may compute ``linspace`` with or without FMA, moving a point by an ulp (on this machine the
grid equals the fixture bit for bit)."""


# ------------------------------------------------------------------ timestep grid
def _fixture() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    from shared_data import OFFICIAL_STEP_TENSORS

    return load_file(str(OFFICIAL_STEP_TENSORS))


def test_the_official_grid_is_the_fixtures():
    fx = _fixture()
    grid = official_grid(5.0)
    assert grid.dtype == torch.float32 and grid.shape == (1000,)
    torch.testing.assert_close(grid, fx["official_grid.sigmas"], rtol=0, atol=2 * FLOAT32_ULP_AT_1)
    # the model timestep 1000 * sigma: two ulps at 1000
    torch.testing.assert_close(
        timesteps(grid), fx["official_grid.timesteps"], rtol=0, atol=2 * 1024 * FLOAT32_ULP_AT_1
    )
    assert torch.equal(official_grid(), grid)  # shift 5 is the default


def test_official_grid_draws_are_uniform_on_the_grid_points():
    n = 20000
    draws = sample_sigmas(n, torch.Generator().manual_seed(0), mode="official-grid", shift=5.0)
    grid = official_grid(5.0)
    index_of = {float(v): i for i, v in enumerate(grid.tolist())}
    assert len(index_of) == 1000  # distinct points
    # every draw is a grid point (same process, same code: an exact lookup)
    idx = [index_of[v] for v in draws.tolist()]
    counts = torch.bincount(torch.tensor(idx), minlength=1000).double()
    # chi-square on 1000 cells (df 999: mean 999, sd 44.7): at most 5 sd above the mean
    expected = n / 1000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 999 + 5 * math.sqrt(2 * 999), chi2
    # Kolmogorov-Smirnov on the index: below the 1 % critical value 1.63 / sqrt(n)
    ecdf = counts.cumsum(0) / n
    ks = float((ecdf - torch.arange(1, 1001, dtype=torch.float64) / 1000).abs().max())
    assert ks < 1.63 / math.sqrt(n), ks
    # the shift-3 continuous sampling does not hit the grid
    other = sample_sigmas(100, torch.Generator().manual_seed(0), mode="shift", shift=3.0)
    assert sum(float(v) in index_of for v in other.tolist()) < 5


def test_winner_and_loser_share_a_grid_level(tmp_path, monkeypatch):
    seen: list[torch.Tensor] = []
    real = trainer.noisy_latents

    def spy(x0, noise, sigmas):
        seen.append(sigmas.detach().clone())
        return real(x0, noise, sigmas)

    monkeypatch.setattr(trainer, "noisy_latents", spy)
    cfg = tiny_cfg(max_steps=2, checkpoint_every=0, timestep_sampling="official-grid",
                   timestep_shift=5.0)  # fmt: skip
    run(tmp_path / "run", cfg)
    grid = set(official_grid(5.0).tolist())
    assert len(seen) == 2
    for sig2 in seen:  # [winners; losers] of one micro-batch
        w, lo = sig2.chunk(2)
        assert torch.equal(w, lo) and set(w.tolist()) <= grid


# ------------------------------------------------------------------ pair draws
def _items() -> list[Pair]:
    """Prompt "a" with 1 pair, "b" with 30, "c" with 5."""
    items = [Pair("a", "a_w", "a_l")]
    items += [Pair("b", f"b_w{i}", f"b_l{i}") for i in range(30)]
    items += [Pair("c", f"c_w{i}", f"c_l{i}") for i in range(5)]
    return items


def test_prompt_uniform_draws_weigh_prompts_equally_and_pairs_uniformly():
    items = _items()
    n = 30000
    drawn = [i for _, i in ItemSampler.of(items, "prompt-uniform", 0).positions(n, 0)]
    by_prompt = Counter(items[i].prompt_id for i in drawn)
    # each prompt 1/3 of the draws (binomial sd 81.6): within 5 sd, whatever its pair count
    for pid in "abc":
        assert abs(by_prompt[pid] - n / 3) < 5 * math.sqrt(n * (1 / 3) * (2 / 3)), by_prompt
    # within prompt "b", its 30 pairs uniformly: chi-square (df 29) at most 6 sd above its mean
    in_b = Counter(i for i in drawn if items[i].prompt_id == "b")
    assert len(in_b) == 30
    expected = by_prompt["b"] / 30
    chi2 = sum((c - expected) ** 2 / expected for c in in_b.values())
    assert chi2 < 29 + 6 * math.sqrt(2 * 29), chi2
    # the listed-pairs stream instead weighs prompts by their pair count
    listed = Counter(items[i].prompt_id for _, i in ItemSampler.of(items, "pairs", 0).positions(
        36 * 100, 0))  # fmt: skip
    assert listed == {"a": 100, "b": 3000, "c": 500}


def test_draws_are_a_function_of_the_position_only():
    items = _items()
    uni = ItemSampler.of(items, "prompt-uniform", 7)
    one = uni.positions(8, 3)  # micro-batch 3 of 8 draws on one process
    two = uni.positions(4, 3, rank=0, world=2) + uni.positions(4, 3, rank=1, world=2)
    assert one == two  # two processes split the same global micro-batch
    assert one == ItemSampler.of(items, "prompt-uniform", 7).positions(8, 3)  # resume: same
    assert one != ItemSampler.of(items, "prompt-uniform", 8).positions(8, 3)  # the seed decides
    # "pairs" is the per-epoch permutation stream it always was
    assert ItemSampler.of(items, "pairs", 7).positions(8, 3) == micro_batch_positions(36, 8, 3, 7)
    with pytest.raises(SpatialAlignError, match="unknown pair sampling"):
        ItemSampler.of(items, "shuffled", 0)


# ---------------------------------------------------------------- schedule
def _official_lr(step: int) -> float:
    """The official LambdaLR (train.py): linear warm-up from 0 over 300 steps, then cosine to
    0 at step 3000, times the peak 1e-4."""
    if step < 300:
        factor = step / 300
    else:
        factor = 0.5 * (1 + math.cos(math.pi * (step - 300) / (3000 - 300)))
    return 1e-4 * factor


def test_the_official_schedule_is_the_releases_lambda_lr():
    cfg = TrainConfig.from_recipe("official")
    param = torch.nn.Parameter(torch.zeros(1))
    opt, sched = trainer.make_optimizer([param], cfg)
    assert opt.defaults["weight_decay"] == 0.01 and opt.defaults["betas"] == (0.9, 0.999)
    lrs = []
    for _ in range(2401):  # the lr each step trains with, as the trainer logs it
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    for step in (0, 1, 299, 300, 1000, 2400):
        assert lrs[step] == pytest.approx(_official_lr(step), rel=1e-12, abs=0), step
    assert lrs[2400] > 0  # stopped at 2400 of a cosine that ends at 3000
    # without a horizon the cosine ends at max_steps
    toy = TrainConfig(max_steps=1000)
    assert toy.schedule_steps() == 1000 and cfg.schedule_steps() == 3000


# ---------------------------------------------------------------- the recipes
def test_the_recipes():
    assert TrainConfig() == TrainConfig.from_recipe("toy")  # toy = the fields' defaults
    off = TrainConfig.from_recipe("official")
    off.validate()
    assert (off.timestep_sampling, off.timestep_shift) == ("official-grid", 5.0)
    assert off.pair_sampling == "prompt-uniform"
    assert (off.train_batch_size, off.global_batch_size, off.global_batch(4)) == (1, 48, 48)
    assert off.accumulation_steps(4) == 12  # 1 pair x 4 GPUs x 12, as the release
    assert (off.max_grad_norm, off.weight_decay, off.learning_rate) == (0.0, 0.01, 1e-4)
    assert (off.lr_warmup_steps, off.lr_scheduler, off.lr_schedule_steps, off.max_steps) == (
        300, "cosine", 3000, 2400)  # fmt: skip
    assert (off.checkpoint_every, off.keep_checkpoint_every) == (100, 100)
    # DESIGN.md's loss and LoRA in both
    for cfg in (off, TrainConfig()):
        assert (cfg.loss, cfg.beta, cfg.margin_clip, cfg.lambda_zo) == ("dpo+zo", 1.0, 5.0, 0.25)
        assert (cfg.lora_rank, cfg.lora_alpha, cfg.shared_noise) == (16, 16.0, False)
    assert (default_recipe("wan"), default_recipe("toy")) == ("official", "toy")
    with pytest.raises(ValueError, match="unknown recipe"):
        TrainConfig.from_recipe("paper")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lr_schedule_steps": 500}, "lr_schedule_steps must be >= max_steps (1000)"),
        ({"save_adapter_steps": "100,x"}, "save_adapter_steps must be comma-separated"),
        ({"save_adapter_steps": "0"}, "save_adapter_steps must be comma-separated"),
        ({"save_adapter_steps": "2000"}, "step 2000 is beyond max_steps (1000)"),
        ({"keep_checkpoint_every": -1}, "keep_checkpoint_every must be >= 0"),
        ({"pair_sampling": "all"}, "pair_sampling must be one of pairs, prompt-uniform"),
    ],
)
def test_new_settings_are_checked(kw, message):
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kw).validate()
    assert TrainConfig(save_adapter_steps=" 600, 200,600 ").adapter_steps() == (200, 600)


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def captured(monkeypatch):
    """``train``'s resolved config and recipe, without training."""
    import spatialalign.training.run as run_mod

    got: dict = {}

    def fake_train_run(run_dir, cfg, **kw):
        got.update(cfg=cfg, **kw)
        raise SpatialAlignError("captured")

    monkeypatch.setattr(run_mod, "train_run", fake_train_run)

    def call(*args: str) -> tuple[TrainConfig, str]:
        got.clear()
        with pytest.raises(SystemExit):
            main(["train", "unused_dir", *args])
        return got["cfg"], got["recipe"]

    return call


def test_the_model_picks_the_recipe_and_explicit_options_override_it(captured):
    cfg, recipe = captured("--model", "wan")
    assert recipe == "official" and cfg == TrainConfig.from_recipe("official")
    cfg, recipe = captured("--model", "toy")
    assert recipe == "toy" and cfg == TrainConfig()
    cfg, recipe = captured()
    assert recipe == "toy" and cfg == TrainConfig()  # toy is the default model
    cfg, recipe = captured("--model", "wan", "--recipe", "toy")
    assert recipe == "toy" and cfg == TrainConfig()
    cfg, recipe = captured("--recipe", "official")
    assert recipe == "official" and cfg == TrainConfig.from_recipe("official")
    # an explicit option wins over the recipe, even when it equals the fields' default
    cfg, _ = captured("--model", "wan", "--max-grad-norm", "1.0", "--max-steps", "3000",
                      "--beta", "2")  # fmt: skip
    assert cfg == TrainConfig.from_recipe("official", max_grad_norm=1.0, max_steps=3000, beta=2.0)
    cfg, _ = captured("--model", "toy", "--timestep-sampling", "official-grid")
    assert (cfg.timestep_sampling, cfg.timestep_shift) == ("official-grid", 3.0)
    # explicit accumulation drops the recipe's global batch (else it would be ignored)
    cfg, _ = captured("--model", "wan", "--gradient-accumulation-steps", "12")
    assert (cfg.global_batch_size, cfg.accumulation_steps(4)) == (None, 12)
    cfg, _ = captured("--model", "wan", "--gradient-accumulation-steps", "2",
                      "--global-batch-size", "8")  # fmt: skip
    assert cfg.global_batch_size == 8


def test_help_shows_the_recipes_and_their_values():
    from click.testing import CliRunner
    from spatialalign.cli import cli

    text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "--recipe [toy|official]" in text
    assert "official for --model wan, toy for --model toy" in text
    for name, values in RECIPES.items():
        shown = ", ".join(f"{k}={'none' if v is None else v}" for k, v in values.items())
        assert f"{name}: {shown}" in " ".join(text.replace("- ", "-").split()), name
    assert "[default: (recipe toy 1.0, official 0.0)]" in text  # --max-grad-norm
    assert "[default: (recipe toy shift, official official-grid)]" in text.replace("- ", "-")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """3 prompts x 2 seeds sampled with the shipped toy model; seed 0 wins over seed 1."""
    root = tmp_path_factory.mktemp("recipe") / "run"
    main(["prompts", str(root), "--train", "3", "--test", "0"])
    main(["sample", str(root), "--model", "toy", "--seeds", "2", "--steps", "2"])
    run_ = RunDir(root)
    from spatialalign.core.fileio import write_parquet

    write_parquet(_scores(run_.read_manifest()), run_.scores_path)
    _pair_seed0_over_seed1(run_)
    return root


OFFICIAL_SMALL = ["--recipe", "official", "--max-steps", "2", "--lr-schedule-steps", "10",
                  "--lr-warmup-steps", "1", "--global-batch-size", "4", "--train-batch-size",
                  "2", "--checkpoint-every", "1", "-q"]  # fmt: skip


def test_the_recipe_and_its_values_land_in_train_config_json(run_dir, tmp_path, capsys):
    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    main(["train", str(root), *OFFICIAL_SMALL])
    assert "trained dpo+zo LoRA on 3 pairs of 3 prompts: 2 steps" in capsys.readouterr().out
    saved = json.loads((RunDir(root).train_dir / "train_config.json").read_text())
    assert saved["recipe"] == {
        "name": "official",
        "values": RECIPES["official"],
        "overridden": {"max_steps": 2, "lr_schedule_steps": 10, "lr_warmup_steps": 1,
                       "global_batch_size": 4, "train_batch_size": 2, "checkpoint_every": 1},
    }  # fmt: skip
    want = TrainConfig.from_recipe("official", max_steps=2, lr_schedule_steps=10,
                                   lr_warmup_steps=1, global_batch_size=4, train_batch_size=2,
                                   checkpoint_every=1)  # fmt: skip
    assert {k: saved[k] for k in want.to_dict()} == want.to_dict()
    log = [json.loads(ln) for ln in (RunDir(root).train_dir / "train_log.jsonl").open()]
    assert [r["lr"] for r in log] == pytest.approx([0.0, 1e-4])  # warm-up 1, then the peak
    # the same command reuses the finished run; --resume finds it finished
    main(["train", str(root), *OFFICIAL_SMALL])
    assert capsys.readouterr().out.startswith("already trained: ")
    main(["train", str(root), *OFFICIAL_SMALL, "--resume"])
    # the toy recipe is another configuration
    with pytest.raises(SystemExit):
        main(["train", str(root), *FAST, "--resume"])
    err = capsys.readouterr().err
    assert "configuration differs in" in err and "pair_sampling" in err
    assert err.endswith("the run was trained with --recipe official: pass it to resume\n")


def test_a_run_recorded_before_the_new_fields_resumes(tmp_path):
    out = tmp_path / "old"
    part = run(out, tiny_cfg(max_steps=2))
    assert part.steps == 2
    path = out / "train_config.json"
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ADDED_FIELDS}
    path.write_text(json.dumps(old))
    assert run(out, tiny_cfg(max_steps=4, resume=True)).steps == 4
    path.write_text(json.dumps(old))
    with pytest.raises(SpatialAlignError, match="differs in pair_sampling"):
        run(out, tiny_cfg(max_steps=5, resume=True, pair_sampling="prompt-uniform"))
    # a run made with the toy values before --model wan defaulted to official: the hint
    path.write_text(json.dumps(old))
    tiny = ("learning_rate", "lr_warmup_steps", "max_steps", "train_batch_size",
            "global_batch_size", "checkpoint_every")  # fmt: skip
    official = {k: v for k, v in RECIPES["official"].items() if k not in tiny}
    with pytest.raises(SpatialAlignError, match="trained with --recipe toy: pass it to resume$"):
        run(out, tiny_cfg(max_steps=6, resume=True, **official))


def test_train_options_come_from_train_config_only():
    # --recipe is the one hand-written option about training values
    from spatialalign.training.cli import train

    names = {p.name for p in train.params if isinstance(p, click.Option)}
    fields = set(TrainConfig().to_dict()) - {"gradient_checkpointing"}
    assert fields <= names
