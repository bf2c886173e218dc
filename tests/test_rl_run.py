"""``rl`` on real models: the SDE sampler without noise is the toy's ODE sampler, an update
raises the log-probability of a positive-advantage trajectory, a killed run continues to
the same adapter, and ``spatialalign rl`` runs end to end on the shipped toy model (its
adapter loads in ``sample --adapter`` and ``export-adapter``)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402
from spatialalign.cli import main  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.models.backends import BackendConfig, ToyBackend  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.rl import run as run_mod  # noqa: E402
from spatialalign.rl.config import RLConfig  # noqa: E402
from spatialalign.rl.policy import Policy  # noqa: E402
from spatialalign.rl.records import REWARDS  # noqa: E402
from spatialalign.rl.rollout import rollout  # noqa: E402
from spatialalign.rl.update import Batch, item_terms, update  # noqa: E402
from spatialalign.rundir import RLDir, RunDir  # noqa: E402
from spatialalign.training.trainer import prepare_transformer  # noqa: E402
from test_rundir_names import spelled_names  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    "a fox is on the left of a stump, then the fox walks to the right of the stump",
    "a cat is on the right of a rock, then the cat walks to the left of the rock",
]
# small runs of the shipped toy model: 2 prompts x 4 videos, 8 denoising steps
SMALL = RLConfig(iterations=3, prompts_per_iteration=2, group_size=4, top_k=1, train_steps=2,
                 sample_batch_size=8, train_batch_size=8, min_group_std=1e-6,
                 lr_schedule="constant")  # fmt: skip
TOY = BackendConfig(model="toy", device="cpu", steps=8)


def _policy(steps: int = 3) -> Policy:
    return Policy(ToyBackend(ToyPipeline.random(seed=0), steps=steps, guidance=3.0))


def test_the_sde_without_noise_is_the_ode_sampler():
    policy = _policy(steps=4)
    pipe = policy.pipe
    seeds = [3, 11]
    cond, uncond = policy.encode(PROMPTS)
    traj = rollout(policy, cond, uncond, seeds, noise_level=0.0)
    want = pipe.sample_latents(PROMPTS, seeds, num_inference_steps=4, guidance_scale=3.0)
    # two code paths (ours and ToyPipeline's loop with the scheduler's step) doing the same
    # float32 operations in the same order: float32 rounding at most (tolerance.FLOAT32_NET)
    torch.testing.assert_close(traj.final, want, rtol=1e-5, atol=1e-5)
    assert torch.isnan(traj.log_probs).all()  # a deterministic step has no density
    # with noise, the same seed gives the same initial latents and another end point
    noisy = rollout(policy, cond, uncond, seeds, noise_level=0.7)
    assert torch.equal(noisy.states[:, 0], traj.states[:, 0])
    assert (noisy.final - traj.final).abs().mean() > 1e-3
    assert torch.isfinite(noisy.log_probs).all()
    # deterministic given the seed, whatever the batch: one video at a time is the same
    alone = rollout(policy, cond[1:], uncond[1:], seeds[1:], noise_level=0.7, batch_size=1)
    torch.testing.assert_close(alone.states[0], noisy.states[1], rtol=1e-5, atol=1e-5)


def _trained_log_prob(policy: Policy, batch: Batch, cfg: RLConfig) -> torch.Tensor:
    """Each trajectory's summed step log-probabilities under the current weights."""
    items = np.array([(i, j) for i in range(len(batch.kept))
                      for j in range(batch.traj.grid.steps)])  # fmt: skip
    out = []
    with torch.no_grad():
        for i in range(len(batch.kept)):
            sel = items[items[:, 0] == i]
            tr = batch.traj
            vid, step = torch.as_tensor(sel[:, 0]), torch.as_tensor(sel[:, 1])
            from spatialalign.rl.policy import guided_velocity
            from spatialalign.rl.sde import gaussian_log_prob, step_mean, step_std

            g, std = step_std(tr.grid.sigmas[step], tr.grid.sigmas[step + 1], cfg.noise_level,
                              tr.grid.sigma_cap)  # fmt: skip
            v = guided_velocity(policy.transformer, tr.states[vid, step], tr.grid.timesteps[step],
                                batch.cond[vid], batch.uncond[vid], policy.guidance)  # fmt: skip
            mean = step_mean(tr.states[vid, step], v, tr.grid.sigmas[step],
                             tr.grid.sigmas[step + 1], g)  # fmt: skip
            out.append(gaussian_log_prob(tr.states[vid, step + 1], mean, std).sum())
    return torch.stack(out)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_an_update_moves_the_log_prob_of_a_trajectory_with_its_advantage(sign):
    cfg = RLConfig(train_steps=0, train_step_fraction=1.0, updates_per_iteration=1,
                   train_batch_size=16, kl_coef=0.0, learning_rate=1e-3)  # fmt: skip
    policy = _policy()
    params = prepare_transformer(policy.transformer, run_mod.lora_train_config(cfg, False))
    opt, sched = run_mod.make_optimizer(params, cfg)
    cond, uncond = policy.encode(PROMPTS[:1] * 2)
    traj = rollout(policy, cond, uncond, [0, 1], noise_level=cfg.noise_level)
    # only video 0 trains, with advantage +1 (or -1); video 1 is the control
    batch = Batch(traj, cond, uncond, torch.tensor([sign, 0.0]), np.array([True, False]))
    before = _trained_log_prob(policy, batch, cfg)
    # at the sampling weights the recomputed log-probs are the sampler's (two code paths)
    torch.testing.assert_close(before, traj.log_probs.sum(dim=1), rtol=1e-5, atol=1e-5)
    terms = update(policy.transformer, params, opt, sched, batch, cfg, 1, policy.guidance)
    after = _trained_log_prob(policy, batch, cfg)
    assert terms["items"] == traj.grid.steps
    assert sign * float(after[0] - before[0]) > 0, (before, after)


def test_item_terms_reference_is_the_model_without_its_adapter():
    cfg = RLConfig()
    policy = _policy()
    params = prepare_transformer(policy.transformer, run_mod.lora_train_config(cfg, False))
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))  # a LoRA that changes the output
    cond, uncond = policy.encode(PROMPTS)
    traj = rollout(policy, cond, uncond, [0, 1], noise_level=0.7)
    batch = Batch(traj, cond, uncond, torch.ones(2), np.ones(2, bool))
    items = np.array([[0, 0], [1, 2]])
    out = item_terms(policy.transformer, policy.transformer, batch, items, cfg, policy.guidance,
                     contextlib.nullcontext())  # fmt: skip
    assert float(out["kl"].detach()) > 0  # policy and reference differ
    # ratio 1 at the sampling weights (the sampler's log-probs, recomputed)
    assert float(out["ratio"]) == pytest.approx(1.0, abs=1e-4)


# ------------------------------------------------------------------ runs of the toy model
def _tensors(path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl") / "full"
    result = run_mod.rl_run(root, SMALL, TOY, progress=False)
    return root, result


def test_a_killed_run_continues_to_the_same_adapter(uninterrupted, tmp_path, monkeypatch):
    root, full = uninterrupted
    assert full.iterations == 3 and full.adapter is not None
    killed = tmp_path / "killed"
    real = run_mod.update

    def dies_in_iteration_3(*args, **kwargs):
        if args[6] == 3:  # the iteration argument: killed mid-update, after its rewards
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "update", dies_in_iteration_3)
    with pytest.raises(KeyboardInterrupt):
        run_mod.rl_run(killed, SMALL, TOY, progress=False)
    assert not RLDir(killed).train.adapter_path.exists()
    assert RLDir(killed).rewards_path(3).is_file()  # written before the update
    monkeypatch.setattr(run_mod, "update", real)
    again = run_mod.rl_run(killed, SMALL, TOY, progress=False)
    assert (again.start, again.iterations) == (2, 3)
    # the same process, code path and inputs: bit for bit
    a, b = _tensors(full.adapter), _tensors(again.adapter)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)  # it trained
    for i in (1, 2, 3):
        t1 = pq.read_table(RLDir(root).rewards_path(i)).to_pandas()
        t2 = pq.read_table(RLDir(killed).rewards_path(i)).to_pandas()
        assert t1.equals(t2), i  # NaN DSR of invalid videos compare equal here
    steps = [json.loads(ln)["step"] for ln in RLDir(killed).train.log_path.read_text().splitlines()]
    assert steps == [1, 2, 3]
    # a finished run is not trained again; more iterations continue it
    done = run_mod.rl_run(killed, SMALL, TOY, progress=False)
    assert (done.start, done.iterations) == (3, 3)


def test_a_rerun_with_other_settings_is_refused(uninterrupted, tmp_path):
    import shutil

    root, _ = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    with pytest.raises(SpatialAlignError, match="other settings.*group_size"):
        run_mod.rl_run(copy, RLConfig(**{**SMALL.to_dict(), "group_size": 2}), TOY,
                       progress=False)  # fmt: skip
    with pytest.raises(SpatialAlignError, match="--adapter is not taken"):
        run_mod.rl_run(copy, SMALL, BackendConfig(model="toy", adapter=str(root / "run")))


def test_the_rewards_table_and_log_record_every_video(uninterrupted):
    root, _ = uninterrupted
    rl = RLDir(root)
    assert [RLDir.iteration_of(p) for p in rl.rewards_paths()] == [1, 2, 3]
    table = pq.read_table(rl.rewards_path(2))
    assert table.schema.remove_metadata().equals(REWARDS)
    rows = table.to_pylist()
    assert len(rows) == SMALL.videos_per_iteration()
    # seeds continue over iterations; every group keeps its top-1 and bottom-1 or nothing
    assert [r["seed"] for r in rows] == list(range(100_008, 100_016))  # 8 videos an iteration
    for r in rows:
        want = r["dsr"] if r["valid"] else 0.0
        assert r["reward"] == pytest.approx(want)
    by_prompt: dict[str, list[bool]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r["kept"])
    assert all(sum(k) in (0, 2) for k in by_prompt.values())
    records = [json.loads(ln) for ln in rl.train.log_path.read_text().splitlines()]
    for key in ("reward_mean", "reward_std", "kept_fraction", "clip_fraction", "kl",
                "validness", "loss", "lr", "videos"):  # fmt: skip
        assert key in records[-1], key
    assert records[-1]["videos"] == 3 * SMALL.videos_per_iteration()
    assert json.loads(rl.config_path.read_text())["settings"]["config"]["group_size"] == 4
    # the reward-hacking watch: a sheet of the highest-reward videos per iteration
    assert [rl.top_sheet_path(i).read_bytes()[:4] for i in (1, 2, 3)] == [b"\x89PNG"] * 3
    assert rl.latest_top_sheet() == rl.top_sheet_path(3)


def test_rl_names_are_spelled_in_rundir_only():
    from test_rundir_names import PACKAGE_DIR

    d = RLDir("/r")
    names = {d.config_path.name, d.iterations_dir.name}
    assert names == {"rl_config.json", "rl"}
    assert spelled_names(PACKAGE_DIR, names) == []
    assert d.rewards_path(12).name == "iter-0000012.parquet"
    assert RLDir.iteration_of(d.rewards_path(12)) == 12
    with pytest.raises(SpatialAlignError):
        d.video_path(1, "../escape")


def test_the_cli_runs_end_to_end_and_its_adapter_serves_the_other_verbs(tmp_path, capsys):
    root = tmp_path / "run"
    main(["rl", str(root), "--model", "toy", "--device", "cpu", "--steps", "6", "--iterations",
          "2", "--prompts-per-iteration", "2", "--group-size", "3", "--top-k", "1",
          "--train-steps", "2", "--keep-videos", "-q"])  # fmt: skip
    out = capsys.readouterr().out
    assert "rl: iterations 1-2 (6 videos each)" in out
    rl = RLDir(root)
    assert len(list(rl.videos_dir(2).glob("*.mp4"))) == 6
    assert list(rl.train.tensorboard_dir.glob("events.out.tfevents.*"))
    # the adapter is train's: sample --adapter loads it, export-adapter reads the checkpoint
    other = tmp_path / "sampled"
    RunDir(other).write_prompts(RunDir(root).read_prompts()[:1])
    main(["sample", str(other), "--model", "toy", "--steps", "2", "--seeds", "1", "--adapter",
          str(rl.train.root)])  # fmt: skip
    assert RunDir(other).read_manifest().num_rows == 1
    main(["export-adapter", str(root), "--step", "2", "--to", "kohya"])
    assert "exported the LoRA of step 2" in capsys.readouterr().out
    # bad input: one line
    with pytest.raises(SystemExit) as e:
        main(["rl", str(tmp_path / "bad"), "--group-size", "1"])
    assert e.value.code == 2
    main(["rl", str(root), "--model", "toy", "--device", "cpu", "--steps", "6", "--iterations",
          "2", "--prompts-per-iteration", "2", "--group-size", "3", "--top-k", "1",
          "--train-steps", "2", "-q"])  # fmt: skip
    assert "already done" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_finishes_the_iteration_saves_and_exits_143(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "run"
    cmd = [sys.executable, "-m", "spatialalign.cli", "rl", str(root), "--model", "toy",
           "--device", "cpu", "--steps", "4", "--iterations", "1000",
           "--prompts-per-iteration", "2", "--group-size", "2", "--train-steps", "1", "-q"]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    rl = RLDir(root)
    deadline = time.monotonic() + 120
    while not rl.rewards_paths() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "rerun the same command to continue" in err
    last = rl.train.checkpoint_paths()[-1]
    done = type(rl.train).checkpoint_step(last)
    assert done >= 1 and rl.rewards_path(done).is_file()


def test_the_train_prompts_follow_the_model(tmp_path):
    hard = run_mod.train_prompts(RLDir(tmp_path / "hard"), "toy-hard")
    assert len(hard) == 600 and {p.split for p in hard} == {"train"}
    assert "B" in {p.initial for p in hard} | {p.final for p in hard}  # the hard split's types
    toy = run_mod.train_prompts(RLDir(tmp_path / "toy"), "toy")
    assert len(toy) == 500 and RunDir(tmp_path / "toy").prompts_path.is_file()
    with pytest.raises(SpatialAlignError, match="spatialalign prompts"):
        run_mod.train_prompts(RLDir(tmp_path / "wan"), "wan")
    # a file with splits but no train split is refused; one without splits is used whole
    RunDir(tmp_path / "test").write_prompts([replace(p, split="test") for p in toy[:3]])
    with pytest.raises(SpatialAlignError, match="no train split"):
        run_mod.train_prompts(RLDir(tmp_path / "test"), "toy")
    RunDir(tmp_path / "none").write_prompts([replace(p, split="") for p in toy[:3]])
    assert len(run_mod.train_prompts(RLDir(tmp_path / "none"), "wan")) == 3
