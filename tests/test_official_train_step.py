"""The trainer's step against the official release's training step (a golden fixture).

``shared/data/official_train_step/`` holds the inputs and outputs of one DPO+ZO step of the
official SpatialAlign ``train.py`` (``training_step``) on a tiny Wan transformer, with its
random draws (timestep index, noise) fixed and stored. Here the same diffusers
``WanTransformer3DModel`` gets the project's own LoRA (``prepare_transformer``), the
fixture's LoRA weights, and each case goes through the trainer's own per-batch step
(:func:`spatialalign.training.trainer.pair_step`, the one ``_optimizer_step`` calls), with
its one random source, ``trainer.draw_noise``, replaced by the fixture's sigma and noise.

Tolerances (float32 on the CPU; tests/README.md): the official step ran winner and loser in
two forwards of DiffSynth's ``WanModel``, ours runs them in one batched diffusers forward: the
same sums in another order. The loss, DPO and regulariser terms agree to 1e-6 absolute; the
scores to 2e-6 (each is a difference of two mse of ~2.7, whose float32 ulp is 2.4e-7); every
LoRA gradient to 1e-5 relative to its norm, float32's floor here being ~1e-6: the fixture's
own gradients are 1.2e-6 (per tensor) from the same step in float64, because the DPO gradient
is a difference of the winner's and loser's mse gradients, each larger than it. A doubled β,
a doubled ZO weight, the target ``x0 - noise`` or a reference with the adapter on fails every
case; the clip, which never binds on the fixture's small margins, is checked with a β large
enough that it binds on every case (``test_margin_clip_binds_as_official``).

Not covered: the official run feeds the model its timestep cast to bf16 (``train.py:218``);
the fixture, made in float32, feeds ``1000 * sigma`` in float32, as our step does.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("peft")
pytest.importorskip("diffusers")

from safetensors.torch import load_file  # noqa: E402
from shared_data import OFFICIAL_STEP_CASES, OFFICIAL_STEP_TENSORS  # noqa: E402
from spatialalign.lora.adapter import lora_target_names  # noqa: E402
from spatialalign.training import trainer  # noqa: E402
from spatialalign.training.config import TrainConfig  # noqa: E402
from spatialalign.trainlib.flow import timesteps  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = json.loads(OFFICIAL_STEP_CASES.read_text())
CASES = SPEC["cases"]

LOSS_ATOL = 1e-6
"""loss, dpo, reg_official: values ~0.01-0.75 (float32 ulp <= 6e-8) whose errors are those
of the scores times sigma(-margin) ~ 0.5, plus the regulariser's; observed <= 3e-7."""
SCORE_ATOL = 2e-6
"""score_w, score_l: mse_ref - mse_theta of two mse ~2.7 (ulp 2.4e-7), each a 512-term mean of
squared network outputs the two paths round differently; observed <= 5e-7 (2 ulp)."""
GRAD_RTOL = 1e-5
"""LoRA gradients, relative to each tensor's norm (||g - g_ref|| <= rtol ||g_ref|| + atol):
float32's floor is ~1e-6 (the official float32 gradients are up to 1.2e-6 from float64's),
observed <= 1.3e-6; 1e-6 itself would fail on rounding alone."""
GRAD_ATOL = 1e-12
"""Only for an all-zero reference gradient (none is: the adapter's weights are non-zero)."""


class _CpuFloat32:
    """The accelerator the step sees: what ``pair_step`` uses of ``accelerate.Accelerator``
    (its device and autocast) for one CPU process in float32 without autocast, as the
    fixture was made (the official run itself autocasts to bf16 on GPUs)."""

    device = torch.device("cpu")

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@pytest.fixture(scope="module")
def fixture_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(OFFICIAL_STEP_TENSORS))


def official_cfg() -> TrainConfig:
    """The project's defaults, float32: they must be the official loss settings."""
    return TrainConfig(mixed_precision="no")


@pytest.fixture(scope="module")
def step_state(fixture_tensors) -> trainer.TrainState:
    """The fixture's tiny Wan with the project's LoRA holding the fixture's weights."""
    from diffusers import WanTransformer3DModel
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    conf = {
        k: tuple(v) if isinstance(v, list) else v for k, v in SPEC["transformer_config"].items()
    }
    model = WanTransformer3DModel(**conf)
    base = {k.removeprefix("base."): v for k, v in fixture_tensors.items() if k.startswith("base.")}
    model.load_state_dict(base, strict=True)
    model = model.float()

    cfg = official_cfg()
    params = trainer.prepare_transformer(model, cfg)  # the project's attach: targets, r, alpha
    lora = {k.removeprefix("lora."): v for k, v in fixture_tensors.items() if k.startswith("lora.")}
    fixture_modules = sorted({k.rsplit(".lora_", 1)[0] for k in lora})
    assert sorted(lora_target_names(model)) == fixture_modules, "LoRA targets differ"
    result = set_peft_model_state_dict(model, lora)
    assert not getattr(result, "unexpected_keys", None), result
    loaded = get_peft_model_state_dict(model)
    assert sorted(loaded) == sorted(lora)
    for k, v in lora.items():  # a copy, no arithmetic: bit equality
        assert torch.equal(loaded[k], v), k
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)
    assert len(params) == len(lora)
    return trainer.TrainState(model, model, cfg, _CpuFloat32(), params, None, None)


def test_defaults_are_the_official_settings():
    """DESIGN.md's defaults are the official run's loss and adapter settings."""
    cfg, loss, lora = official_cfg(), SPEC["loss"], SPEC["lora"]
    assert cfg.loss == "dpo+zo"
    assert cfg.beta == loss["beta"]
    assert cfg.margin_clip == loss["margin_clip"]
    # official: lambda_reg 0.5 on reg = (zo_w + zo_l) / 2, i.e. lambda_ZO 0.25 on the sum
    assert cfg.lambda_zo == loss["official_lambda_reg"] / 2
    assert (cfg.lora_rank, cfg.lora_alpha) == (lora["rank"], lora["alpha"])


def _run_case(ctx, tensors, case, monkeypatch) -> dict[str, torch.Tensor]:
    """``pair_step`` on the case's tensors, with its draw of levels and noise replaced by the
    case's (``trainer.draw_noise``, the only random source of the step); returns its terms
    with the loss backpropagated into the (zeroed) LoRA gradients."""
    name, b = case["name"], case["batch"]
    x_w, x_l = tensors[f"{name}.latents_w"], tensors[f"{name}.latents_l"]
    noise_w, noise_l = tensors[f"{name}.noise_w"], tensors[f"{name}.noise_l"]
    text = tensors[f"{name}.text"]
    assert x_w.shape[0] == x_l.shape[0] == text.shape[0] == b
    sig = torch.full((b,), case["sigma"], dtype=torch.float32)
    # the model timestep our step derives from sigma is the official one
    assert torch.equal(timesteps(sig), torch.full((b,), case["timestep"], dtype=torch.float32))
    positions = list(range(b))

    def fixed_draw(cfg, pos, shape, pairs):
        assert pairs and pos == positions and shape == tuple(x_w.shape[1:])
        return sig.clone(), noise_w.clone(), noise_l.clone()

    # pair_step looks draw_noise up in trainer's globals at each call: patched where defined
    monkeypatch.setattr(trainer, "draw_noise", fixed_draw)
    for p in ctx.params:
        p.grad = None
    out = trainer.pair_step(ctx, x_w, x_l, text, positions)
    out["loss"].backward()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_pair_step_reproduces_the_official_step(step_state, fixture_tensors, case, monkeypatch):
    ctx, name = step_state, case["name"]
    out = _run_case(ctx, fixture_tensors, case, monkeypatch)

    got = {
        "loss": float(out["loss"].detach()),
        "dpo": float(out["loss_dpo"]),
        "reg_official": 0.5 * float(out["loss_zo"]),  # reg = (zo_w + zo_l) / 2
        "score_w": float(out["score_w"]),
        "score_l": float(out["score_l"]),
    }
    diffs = {k: abs(v - case[k]) for k, v in got.items()}

    grad_err = {}
    for pname, p in ctx.model.named_parameters():
        if not p.requires_grad:
            continue
        key = f"{name}.grad.{pname.replace('.default.', '.')}"
        ref = fixture_tensors[key]
        assert p.grad is not None and p.grad.shape == ref.shape, key
        grad_err[key] = (float((p.grad - ref).norm()), float(ref.norm()))
    assert (
        len(grad_err)
        == len(ctx.params)
        == sum(k.startswith(f"{name}.grad.") for k in fixture_tensors)
    )
    worst_rel = max(err / max(norm, 1e-30) for err, norm in grad_err.values())
    print(
        f"{name}: max |term - official| {max(diffs.values()):.2e} "
        f"({', '.join(f'{k} {v:.1e}' for k, v in diffs.items())}); "
        f"max ||g - g_ref|| / ||g_ref|| {worst_rel:.2e}"
    )
    for k, d in diffs.items():
        tol = SCORE_ATOL if k.startswith("score") else LOSS_ATOL
        assert d <= tol, f"{name} {k}: {got[k]!r} vs official {case[k]!r} (|diff| {d:.2e})"
    for key, (err, norm) in grad_err.items():
        assert err <= GRAD_RTOL * norm + GRAD_ATOL, (
            f"{key}: ||g - g_ref|| {err:.3e} > {GRAD_RTOL} x ||g_ref|| {norm:.3e}"
        )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_margin_clip_binds_as_official(step_state, fixture_tensors, case, monkeypatch):
    """The fixture's margins are small (|score_w - score_l| < 0.07), so the clip at
    ``margin_clip`` never binds there; with β = 1e5 every case's logit is far beyond it and
    the official ``L_DPO = -log σ(clip(β Δ, -5, 5))`` is ``softplus(∓5)``, whatever β, while
    the scores and the regulariser stay the fixture's."""
    beta = 1e5
    clip = SPEC["loss"]["margin_clip"]  # the official 5, not our default (tested against it)
    margin = case["score_w"] - case["score_l"]
    assert abs(beta * margin) > 10 * clip  # far from the clip: the sign is certain
    ctx = replace(step_state, cfg=replace(step_state.cfg, beta=beta))
    out = _run_case(ctx, fixture_tensors, case, monkeypatch)
    want_dpo = float(
        -F.logsigmoid(torch.tensor(clip if margin > 0 else -clip, dtype=torch.float64))
    )
    want_loss = want_dpo + SPEC["loss"]["official_lambda_reg"] * case["reg_official"]
    assert abs(float(out["loss_dpo"]) - want_dpo) <= LOSS_ATOL
    assert abs(float(out["loss"].detach()) - want_loss) <= LOSS_ATOL
    assert abs(0.5 * float(out["loss_zo"]) - case["reg_official"]) <= LOSS_ATOL
    assert abs(float(out["score_w"]) - case["score_w"]) <= SCORE_ATOL
    assert abs(float(out["score_l"]) - case["score_l"]) <= SCORE_ATOL
