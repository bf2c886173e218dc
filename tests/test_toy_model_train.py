"""Toy pretraining (smoke run, resume, mismatched captions) and the toy evaluation."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("scipy")

from safetensors.torch import load_file  # noqa: E402
from spatialalign.models.toy.codec import ToyCodecConfig  # noqa: E402
from spatialalign.models.toy.model import ToyTransformerConfig  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.prompts import parse_prompt  # noqa: E402
from spatialalign.toy.evaluate import (  # noqa: E402
    ClipJudgement,
    ToyEvalConfig,
    eval_prompts,
    evaluate_pipeline,
    evaluate_rendered,
    judge_clip,
    shown_relations,
    summarize,
)
from spatialalign.toy.pretrain import PretrainConfig, mismatched, pretrain  # noqa: E402

PROMPT = "In a kitchen, a cat is on the top of a box, then the cat jumps to the left of the box."


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_cfg(**overrides) -> PretrainConfig:
    kw = dict(
        n_train_prompts=6,
        n_test_prompts=6,
        clips_per_prompt=2,
        codec_steps=3,
        codec_batch=8,
        max_steps=3,
        warmup_steps=2,
        batch_size=4,
        codec=ToyCodecConfig(hidden_channels=8),
        transformer=ToyTransformerConfig(
            patch_size=(1, 4, 4),
            num_attention_heads=2,
            attention_head_dim=12,
            ffn_dim=32,
            num_layers=1,
            freq_dim=16,
        ),
        text_dim=16,
    )
    return PretrainConfig(**{**kw, **overrides})


def test_mismatched_caption_shows_the_third_relation():
    p = parse_prompt(PROMPT)
    rng = random.Random(0)
    for _ in range(5):
        m = mismatched(p, rng)
        assert m.final == "R" and m.initial == "T" and m.animal == p.animal


def test_opposite_mismatch_and_biased_combinations():
    from spatialalign.toy.pretrain import render_dataset, train_prompts

    p = parse_prompt(PROMPT)  # T -> L
    assert mismatched(p, random.Random(0), "opposite").final == "R"
    cfg = _tiny_cfg(
        n_train_prompts=30,
        clips_per_prompt=4,
        mismatch_frac=0.25,
        mismatch_kind="opposite",
        mismatch_keys_frac=0.5,
    )
    prompts = train_prompts(cfg)
    _, captions, flags = render_dataset(cfg, prompts)
    assert flags.sum() == 30  # exactly 25% of 120 clips
    keys = [(q.animal, q.final) for q in prompts for _ in range(4)]
    flagged = {k for k, f in zip(keys, flags, strict=True) if f}
    all_keys = set(keys)
    assert len(flagged) <= round(0.5 * len(all_keys))  # only the biased combinations
    assert captions == [q.text for q in prompts for _ in range(4)]


def test_pretrain_smoke_writes_loadable_model_and_resumes(tmp_path):
    out = tmp_path / "run"
    pipe = pretrain(out, _tiny_cfg(mismatch_frac=0.25))
    assert pipe.metadata["steps"] == 3
    assert pipe.metadata["mismatched_clips"] == 3  # 25% of 6 prompts x 2 clips
    state = load_file(str(out / "model" / "model.safetensors"))
    assert any(k.startswith("transformer.blocks.0.attn2.to_k") for k in state)
    loaded = ToyPipeline.from_pretrained(out / "model")
    v = loaded([PROMPT], [0], num_inference_steps=2)
    assert v.shape == (1, 9, 16, 16, 3) and v.dtype == np.uint8
    assert loaded.vae.config.latents_std != [1.0, 1.0, 1.0, 1.0]  # measured statistics
    # a rerun with a larger step budget continues from the checkpoint
    again = pretrain(out, _tiny_cfg(mismatch_frac=0.25, max_steps=5))
    assert again.metadata["steps"] == 5
    # a different configuration in the same directory is refused
    from spatialalign.core.errors import SpatialAlignError

    with pytest.raises(SpatialAlignError, match="different configuration"):
        pretrain(out, _tiny_cfg(mismatch_frac=0.3))


def test_shown_relations_from_boxes():
    obj = np.tile([[6.0, 6.0, 10.0, 10.0]], (6, 1))
    left = [1.0, 6.0, 4.0, 9.0]
    top = [6.0, 1.0, 9.0, 4.0]
    right = [12.0, 6.0, 15.0, 9.0]
    animal = np.array([left, left, left, top, right, right])
    assert shown_relations(animal, obj) == ("L", "R", 6)
    animal[3:] = np.nan
    assert shown_relations(animal, obj) == ("L", "L", 3)


def test_summary_is_score_batchs_plus_the_right_rates():
    import pyarrow as pa
    from spatialalign.core.presets import scoring_config
    from spatialalign.scoring.summary import build_summary

    def r(t, valid, dsr, si, sf):
        return ClipJudgement("p", t, 0, valid, "" if valid else "too_few_frames", dsr, si, sf, 9)

    res = [
        r("LR", True, 0.9, "L", "R"),
        r("LR", True, 0.6, "L", "T"),
        r("LT", True, 0.75, "R", "T"),
        r("LT", False, float("nan"), "", ""),
    ]
    s = summarize(res, scoring_config("toy"))
    assert s["validness"] == 0.75 and (s["n_videos"], s["n_valid"]) == (4, 3)
    assert s["initial_right"] == pytest.approx(2 / 3)
    assert s["final_right"] == pytest.approx(2 / 3)
    assert s["both_right"] == pytest.approx(1 / 3)
    assert s["correctness_at_0.7"] == 0.5
    assert s["correctness"]["0.0"] == 0.75
    assert s["counts"]["reasons"] == {"too_few_frames": 1}
    assert s["per_type"]["LT"]["validness"] == 0.5
    assert s["per_type"]["LR"]["final_right"] == 0.5
    # apart from the right rates, exactly score-batch's summary.json of those scores
    scores = pa.table(
        {
            "dsr": [0.9, 0.6, 0.75, float("nan")],
            "valid": [True, True, True, False],
            "reason": ["", "", "", "too_few_frames"],
        }
    )
    extras = ("initial_right", "final_right", "both_right")
    for group in (s, *s["per_type"].values()):
        for key in extras:
            del group[key]
    assert s == build_summary(scores, ["LR", "LR", "LT", "LT"], scoring_config("toy"))


def test_rendered_clips_are_judged_right():
    cfg = ToyEvalConfig(n_test=12, seeds=(0,))
    prompts = eval_prompts(cfg)
    assert len(prompts) == 12 and all(p.split == "test" for p in prompts)
    summary, results = evaluate_rendered(prompts, cfg)
    assert summary["validness"] == 1.0
    assert summary["initial_right"] == 1.0 and summary["final_right"] == 1.0
    assert summary["correctness_at_0.7"] == 1.0


def test_noise_video_is_rejected():
    from spatialalign.core.presets import scoring_config
    from spatialalign.detection.color import ColorDetector

    p = parse_prompt(PROMPT)
    noise = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    res = judge_clip(noise, p, 0, ColorDetector(), scoring_config("toy"))
    assert not res.valid and res.reason


def test_evaluate_pipeline_runs_on_a_random_model():
    cfg = ToyEvalConfig(n_test=6, seeds=(0, 1), num_inference_steps=2, batch_size=5)
    summary, results = evaluate_pipeline(
        ToyPipeline.random(0), eval_prompts(cfg), cfg, progress=False
    )
    assert summary["n_videos"] == 12 and len(results) == 12
    assert [(r.prompt_id, r.seed) for r in results][:2] == [
        (results[0].prompt_id, 0),
        (results[0].prompt_id, 1),
    ]


def test_cli_pretrain_and_evaluate(tmp_path):
    from click.testing import CliRunner
    from spatialalign.cli import cli
    from spatialalign.core.presets import scoring_config

    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(
        cli,
        [
            "toy",
            "pretrain",
            str(run),
            "--train-prompts",
            "6",
            "--clips-per-prompt",
            "1",
            "--codec-steps",
            "2",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--patch-size",
            "1",
            "2",
            "2",
            "--num-layers",
            "1",
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "pretrained toy model: 2 transformer steps" in res.output
    tcfg = ToyPipeline.from_pretrained(run / "model").transformer.config
    assert (tuple(tcfg.patch_size), tcfg.num_layers, tuple(tcfg.pos_grid)) == (
        (1, 2, 2),
        1,
        (9, 4, 4),
    )
    out, fig = tmp_path / "eval.json", tmp_path / "fig.png"
    res = runner.invoke(
        cli,
        [
            "toy",
            "evaluate",
            "--model",
            str(run / "model"),
            "--test-prompts",
            "6",
            "--seeds",
            "1",
            "--steps",
            "2",
            "--out",
            str(out),
            "--figure",
            str(fig),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "validness" in res.output
    import json

    summary = json.loads(out.read_text())
    assert summary["n_videos"] == 6 and fig.stat().st_size > 0
    assert summary["config"] == scoring_config("toy").to_dict()  # as score-batch writes it
    assert summary["eval_config"]["seeds"] == [0]
    res = runner.invoke(cli, ["toy", "evaluate", "--model", str(tmp_path / "none")])
    assert res.exit_code != 0


def test_prepare_latents_reuses_the_cache(tmp_path, monkeypatch):
    """Stages 1-3 are made once; a rerun loads the codec, latents and captions back."""
    from spatialalign.toy import pretrain as pt

    cfg = _tiny_cfg()
    prompts = pt.train_prompts(cfg)
    codec, info, latents, captions = pt.prepare_latents(tmp_path, cfg, prompts)
    assert info["clips"] == len(captions) == latents.shape[0] == 12

    def no_render(*_a, **_k):
        raise AssertionError("the cached latents should have been reused")

    monkeypatch.setattr(pt, "render_dataset", no_render)
    codec2, info2, latents2, captions2 = pt.prepare_latents(tmp_path, cfg, prompts)
    assert (info2, captions2) == (info, captions)
    assert latents2.equal(latents)
    assert all(v.equal(codec.state_dict()[k]) for k, v in codec2.state_dict().items())


def test_training_state_round_trips_through_a_checkpoint(tmp_path):
    """_save_training then _resume_training: same weights, EMA, step, history, and the
    batch generator reseeded from the step."""
    import torch
    from spatialalign.models.toy.model import build_transformer
    from spatialalign.models.toy.text import ToyTextEncoder
    from spatialalign.toy import pretrain as pt

    cfg = _tiny_cfg()
    prompts = pt.train_prompts(cfg)
    _, _, latents, captions = pt.prepare_latents(tmp_path, cfg, prompts)

    def modules():
        torch.manual_seed(cfg.seed)
        text = ToyTextEncoder(pt.text_config(cfg, prompts))
        return {"transformer": build_transformer(pt.transformer_config(cfg)), "text_encoder": text}

    state = pt._start_training(cfg, modules())
    tok = state.modules["text_encoder"].tokenizer(captions)
    losses = [pt._train_step(cfg, state, latents, tok, lr=1e-3) for _ in range(2)]
    assert state.step == 2 and all(np.isfinite(losses))
    state.hist.append({"step": 2, "loss": float(np.mean(losses))})
    ckpt = tmp_path / "checkpoint.safetensors"
    pt._save_training(state, ckpt, elapsed_s=1.5)

    back = pt._start_training(cfg, modules())
    pt._resume_training(cfg, back, ckpt)
    assert (back.step, back.hist, back.ema.optimization_step) == (2, state.hist, 2)
    for a, b in zip(back.params, state.params, strict=True):
        assert a.equal(b)
    for a, b in zip(back.ema.shadow_params, state.ema.shadow_params, strict=True):
        assert a.equal(b)
    want = torch.Generator().manual_seed(cfg.seed + 1 + 2)
    assert torch.rand(3, generator=back.gen).equal(torch.rand(3, generator=want))


def test_hard_world_pretraining_config_and_smoke(tmp_path):
    """``toy pretrain --world hard``: 12 frames of 16x16 from the hard world and its split,
    the toy transformer with a 2x2x2 patch (6x4x4 tokens), the architecture overrides, and
    a loadable model that samples clips of that shape."""
    from spatialalign.core.errors import SpatialAlignError
    from spatialalign.toy import pretrain as pt
    from spatialalign.toy.pretrain import pretrain_config, render_dataset, train_prompts

    cfg = pretrain_config("hard")
    video = (cfg.video.num_frames, cfg.video.height, cfg.video.width)
    assert (cfg.world, video, cfg.n_train_prompts) == ("hard", (12, 16, 16), 600)
    toy_arch = PretrainConfig().transformer
    assert cfg.transformer == replace(toy_arch, patch_size=(2, 2, 2))
    assert pt.transformer_config(cfg).pos_grid == (6, 4, 4)
    assert pretrain_config("toy") == PretrainConfig()  # the toy world's defaults unchanged
    arch = pretrain_config("hard", patch_size=(2, 2, 2), num_layers=6, batch_size=16)
    assert (arch.transformer.patch_size, arch.transformer.num_layers) == ((2, 2, 2), 6)
    assert (arch.batch_size, pt.transformer_config(arch).pos_grid) == (16, (6, 4, 4))
    for patch in ((5, 2, 2), (1, 3, 2), (0, 2, 2)):
        with pytest.raises(SpatialAlignError, match="does not tile"):
            pt.pretrain(tmp_path / "bad", pretrain_config("hard", patch_size=patch))
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    with pytest.raises(SpatialAlignError, match="unknown toy world"):
        pretrain_config("medium")
    tiny = _tiny_cfg(world="hard", video=cfg.video, n_train_prompts=12)
    prompts = train_prompts(tiny)
    assert {p.final for p in prompts} | {p.initial for p in prompts} == set("LRTB")
    clips, captions, _ = render_dataset(tiny, prompts)
    assert clips.shape == (24, 12, 16, 16, 3) and len(captions) == 24
    pipe = pretrain(tmp_path / "hard", tiny)
    assert pipe.metadata["pretrain"]["world"] == "hard"
    assert tuple(pipe.transformer.config.patch_size) == (1, 4, 4)
    v = pipe([prompts[0].text], [0], num_inference_steps=2)
    assert v.shape == (1, 12, 16, 16, 3)
