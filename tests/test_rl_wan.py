"""``rl --model wan`` on a tiny random ``WanPipeline`` (CPU, nothing downloaded): the SDE
sampler without noise is the pipeline's own sampler, two iterations run end to end through
the CLI with the real detector and scorer (its adapter loads in ``sample --adapter``), and
an iteration with rewards that rank the videos updates the LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402
from shared_data import OFFICIAL_CSV  # noqa: E402
from spatialalign.cli import main  # noqa: E402
from spatialalign.models.backends import BackendConfig, WanBackend, load_wan_pipeline  # noqa: E402
from spatialalign.prompts import read_prompts, write_prompts  # noqa: E402
from spatialalign.rl import run as run_mod  # noqa: E402
from spatialalign.rl.config import RLConfig  # noqa: E402
from spatialalign.rl.policy import Policy  # noqa: E402
from spatialalign.rl.reward import DSR_TERMS, Verdicts  # noqa: E402
from spatialalign.rl.rollout import rollout  # noqa: E402
from spatialalign.rundir import RLDir, RunDir  # noqa: E402
from test_sampling_wan import build_tiny_wan  # noqa: E402
from tolerance import FLOAT32_NET  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GEOMETRY = ["--num-frames", "5", "--height", "16", "--width", "16", "--steps", "2"]


@pytest.fixture(scope="module")
def prompts():
    return read_prompts(OFFICIAL_CSV)[:2]


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory, prompts) -> Path:
    return build_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny-wan", prompts)


def test_the_sde_without_noise_is_the_wan_pipelines_sampler(wan_dir, prompts):
    pipe = load_wan_pipeline(wan_dir)
    backend = WanBackend(pipe, num_frames=5, height=16, width=16, steps=2,
                         max_sequence_length=32)  # fmt: skip
    policy = Policy(backend)
    cond, uncond = policy.encode([p.text for p in prompts])
    traj = rollout(policy, cond, uncond, [4, 9], noise_level=0.0)
    want = pipe(
        prompt=[p.text for p in prompts],
        negative_prompt=[backend.negative_prompt] * 2,
        generator=[torch.Generator().manual_seed(s) for s in (4, 9)],
        num_inference_steps=2, num_frames=5, height=16, width=16,
        max_sequence_length=32, output_type="latent",
    ).frames  # fmt: skip
    # the pipeline runs the conditional and unconditional passes apart, we batch them: the
    # same float32 network on other batch shapes (tolerance.FLOAT32_NET)
    torch.testing.assert_close(traj.final, want.float(), **FLOAT32_NET)


def test_two_iterations_end_to_end_with_the_real_scorer(wan_dir, prompts, tmp_path, capsys):
    root = tmp_path / "run"
    write_prompts(prompts, root / "prompts.parquet")
    main(["rl", str(root), "--model", "wan", "--model-path", str(wan_dir), *GEOMETRY,
          "--device", "cpu", "--iterations", "2", "--prompts-per-iteration", "2",
          "--group-size", "2", "--train-steps", "1", "--keep-videos", "-q"])  # fmt: skip
    assert "rl: iterations 1-2 (4 videos each)" in capsys.readouterr().out
    rl = RLDir(root)
    for i in (1, 2):
        table = pq.read_table(rl.rewards_path(i)).to_pylist()
        assert len(table) == 4
        for r in table:  # a random model's videos: whatever the verdict, it is recorded
            assert r["reward"] == (r["dsr"] if r["valid"] else 0.0)
            assert r["valid"] or r["reason"]
        assert len(list(rl.videos_dir(i).glob("*.mp4"))) == 4
    # the adapter is a Wan LoRA in diffusers' format: sample --adapter loads it
    other = tmp_path / "sampled"
    write_prompts(prompts[:1], other / "prompts.parquet")
    main(["sample", str(other), "--model", "wan", "--model-path", str(wan_dir), *GEOMETRY,
          "--seeds", "1", "--device", "cpu", "--adapter", str(rl.train.root)])  # fmt: skip
    assert RunDir(other).read_manifest().num_rows == 1


class _BrightnessScorer:
    """Stands in for the detector (a random model's videos are all invalid): every video
    valid, its "DSR" its mean brightness, so a group's videos rank."""

    def __init__(self, spec) -> None:
        pass

    def score(self, frames, prompts) -> Verdicts:
        dsr = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1).mean(axis=1) / 255
        terms = {k: dsr.copy() for k in DSR_TERMS}
        n = len(frames)
        return Verdicts(np.ones(n, bool), [""] * n, terms, np.full(n, 5, dtype=np.int64))


def test_an_iteration_with_ranked_rewards_updates_the_wan_lora(wan_dir, prompts, tmp_path,
                                                                monkeypatch):  # fmt: skip
    root = tmp_path / "run"
    write_prompts(prompts, root / "prompts.parquet")
    monkeypatch.setattr(run_mod, "Scorer", _BrightnessScorer)
    # brightness rewards differ by less than the default min_group_std: keep every group
    cfg = RLConfig(iterations=1, prompts_per_iteration=2, group_size=2, train_steps=0,
                   train_step_fraction=1.0, learning_rate=1e-3, min_group_std=1e-6)  # fmt: skip
    backend = BackendConfig(model="wan", model_path=str(wan_dir), num_frames=5, height=16,
                            width=16, steps=2, device="cpu")  # fmt: skip
    result = run_mod.rl_run(root, cfg, backend, progress=False)
    log = result.last_log
    assert log["kept_fraction"] == 1.0 and log["items"] == 4 * 2
    assert abs(log["ratio"] - 1.0) < 1e-3 and np.isfinite(log["kl"])
    lora = load_file(str(result.adapter))
    assert any(float(v.abs().max()) > 0 for k, v in lora.items() if "lora_B" in k)
