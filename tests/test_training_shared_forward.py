"""The step's reference and policy forwards share their common beginning (issue 21, item 5).

``trainer.reference_and_policy`` runs the reference forward (adapter disabled, ``no_grad``)
and the policy forward with the modules that run before the first LoRA layer computed once
(``trainer.shared_prefix``), and switches the adapter through the LoRA layers it found once
(``trainer.layers_disabled``) instead of diffusers' ``disable_adapters``.

Bit equality is the right check here (tests/README.md): the new path runs a subset of the
old path's operations, each on bit-identical inputs in the same process, and takes the other
outputs from the identical earlier call; nothing is reordered or fused. So the adapter after
N steps must equal the old path's bit for bit, and any difference is a bug.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("accelerate")

from safetensors.torch import load_file  # noqa: E402
from spatialalign.lora.adapter import adapter_disabled  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.training import trainer  # noqa: E402
from spatialalign.training.config import TrainConfig  # noqa: E402
from spatialalign.trainlib.flow import predict_velocity  # noqa: E402
from test_training_trainer import tiny_cfg, tiny_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Cpu:
    device = torch.device("cpu")

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def old_reference_and_policy(ctx, x_t, sigmas, context):
    """The step's two forwards before the sharing (two independent forwards, diffusers'
    ``disable_adapters``/``enable_adapters``)."""
    with torch.no_grad(), adapter_disabled(ctx.base), ctx.autocast():
        ref = predict_velocity(ctx.base, x_t, sigmas, context)
    with ctx.autocast():
        pred = predict_velocity(ctx.model, x_t, sigmas, context)
    return ref, pred


def _toy_state(gradient_checkpointing: bool = False) -> tuple[trainer.TrainState, ToyPipeline]:
    """The toy transformer with a LoRA whose B is non-zero (the policy differs from the
    reference from the first cross-attention on)."""
    pipe = ToyPipeline.random(0)
    cfg = TrainConfig(lora_rank=4, gradient_checkpointing=gradient_checkpointing)
    params = trainer.prepare_transformer(pipe.transformer, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    tr = pipe.transformer
    return trainer.TrainState(tr, tr, cfg, _Cpu(), params, None, None), pipe


def _inputs(pipe: ToyPipeline, n: int = 4):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, *pipe.latent_shape, generator=g)
    text = torch.randn(n, 16, pipe.transformer.config.text_dim, generator=g)
    sig = torch.rand(n, generator=g)
    return x, sig, text


def _forwards_and_grads(ctx, fn, x, sig, text):
    for p in ctx.params:
        p.grad = None
    ref, pred = fn(ctx, x, sig, text)
    ((pred - ref).pow(2).mean() + pred.pow(2).mean()).backward()
    return ref, pred, [p.grad.clone() for p in ctx.params]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_shared_forwards_equal_two_plain_forwards_bit_for_bit(checkpointing):
    ctx, pipe = _toy_state(checkpointing)
    x, sig, text = _inputs(pipe)
    ref0, pred0, g0 = _forwards_and_grads(ctx, old_reference_and_policy, x, sig, text)
    ref1, pred1, g1 = _forwards_and_grads(ctx, trainer.reference_and_policy, x, sig, text)
    assert not torch.equal(ref0, pred0)  # the adapter matters: a real comparison
    assert torch.equal(ref1, ref0)
    assert torch.equal(pred1, pred0)
    assert pred1.requires_grad and not ref1.requires_grad
    assert len(g0) == len(g1) == len(ctx.params)
    for a, b in zip(g0, g1, strict=True):
        assert torch.equal(a, b)
    # the adapter is on again, its weights trainable, nothing left patched
    assert all(p.requires_grad for p in ctx.params)
    assert all(not layer.disable_adapters for layer in ctx.lora_layers())
    assert not any("forward" in m.__dict__ for m in ctx.base.modules())


def test_training_gives_the_old_paths_adapter_bit_for_bit(tmp_path, monkeypatch):
    cfg = dict(max_steps=4, checkpoint_every=0)

    def run(out: Path):
        pipe = ToyPipeline.random(0)
        return trainer.train(
            pipe.transformer, tiny_data(pipe), tiny_cfg(**cfg), out, progress=False
        )

    new = run(tmp_path / "new")
    with monkeypatch.context() as m:
        m.setattr(trainer, "reference_and_policy", old_reference_and_policy)
        old = run(tmp_path / "old")
    a, b = load_file(str(new.adapter)), load_file(str(old.adapter))
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def log(out: Path) -> list[dict]:
        recs = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "step_time"} for r in recs]

    assert log(tmp_path / "new") == log(tmp_path / "old")
    assert len(log(tmp_path / "new")) == 4


def test_the_common_beginning_is_computed_once_a_step(monkeypatch):
    """Every module of SHARED_PREFIX exists in the toy transformer (a diffusers rename would
    silently drop the saving) and runs once for the two forwards; the LoRA-wrapped key
    projection and a later block run twice."""
    ctx, pipe = _toy_state()
    modules = dict(ctx.base.named_modules())
    assert all(name in modules for name in trainer.SHARED_PREFIX)
    watched = {*trainer.SHARED_PREFIX, "blocks.0.attn2.to_k.base_layer", "blocks.1.attn1"}
    by_module = {id(modules[name]): name for name in watched}
    calls: Counter[str] = Counter()
    for cls in {type(modules[name]) for name in watched}:
        real = cls.forward

        def counted(self, *args, __real=real, **kwargs):
            if id(self) in by_module:
                calls[by_module[id(self)]] += 1
            return __real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "forward", counted)
    x, sig, text = _inputs(pipe)
    trainer.reference_and_policy(ctx, x, sig, text)
    assert {name: calls[name] for name in trainer.SHARED_PREFIX} == dict.fromkeys(
        trainer.SHARED_PREFIX, 1
    )
    assert calls["blocks.0.attn2.to_k.base_layer"] == 2
    assert calls["blocks.1.attn1"] == 2


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.lin.requires_grad_(False)
        self.trained = torch.nn.Linear(4, 4)


def test_shared_prefix_reuses_only_bit_identical_unmodified_inputs(monkeypatch):
    net = _Net()
    calls = Counter()
    real = torch.nn.Linear.forward

    def counted(self, x):
        calls[id(self)] += 1
        return real(self, x)

    monkeypatch.setattr(torch.nn.Linear, "forward", counted)
    x = torch.tensor([[1.0, 0.0, -2.0, 3.0], [0.5, 1.0, 2.0, -1.0]])
    n = lambda: calls[id(net.lin)]  # noqa: E731
    with trainer.shared_prefix(net, ("lin",)):
        out = net.lin(x)
        assert net.lin(x) is out and n() == 1  # the same tensor
        assert net.lin(x.clone()) is out and n() == 1  # the same bits
        y = x.clone()
        y[0, 1] = -0.0  # equal as numbers, not as bits
        assert net.lin(y) is not out and n() == 2
        x2 = x.clone()
        out2 = net.lin(x2)
        assert n() == 3  # other bits than y: computed
        x2.add_(0.0)  # modified in place (same values): not trusted any more
        net.lin(x2)
        assert n() == 4
        out3 = net.lin(x2)
        out3.mul_(2.0)  # the kept output was modified: computed again
        net.lin(x2)
        assert n() == 5
        strided = x2.t().contiguous().t()
        kept = net.lin(strided)  # other strides
        assert n() == 6
        graph = net.lin(x2.clone().requires_grad_())  # a gradient to record: computed ...
        assert n() == 7 and graph.requires_grad
        assert net.lin(strided.clone()) is kept and n() == 7  # ... and not kept
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net.lin(strided).dtype == torch.bfloat16 and n() == 8  # another autocast
        assert net.lin(strided).dtype == torch.float32 and n() == 9
        assert torch.equal(out2, out)  # a fresh call on the same bits: what reuse returns
    assert "forward" not in net.lin.__dict__


def test_shared_prefix_leaves_trainable_lora_and_patched_modules_alone():
    from peft.tuners.lora import Linear as LoraLinear

    net = _Net()
    mine = lambda x: x  # noqa: E731
    net.trained.forward = mine
    with trainer.shared_prefix(net, ("lin", "trained", "missing")):
        assert "forward" in net.lin.__dict__
        assert net.trained.forward is mine  # someone else's patch: untouched
    assert "forward" not in net.lin.__dict__ and net.trained.forward is mine
    del net.trained.forward
    with trainer.shared_prefix(net, ("trained",)):
        assert "forward" not in net.trained.__dict__  # trainable weights: never reused
    # a module holding a LoRA layer is left alone even when its own weights are frozen
    ctx, _ = _toy_state()
    with trainer.shared_prefix(ctx.base, ("blocks.0.attn2", "condition_embedder")):
        assert not any("forward" in m.__dict__ for m in ctx.base.modules())
    assert isinstance(dict(ctx.base.named_modules())["blocks.0.attn2.to_k"], LoraLinear)


def test_shared_prefix_restores_the_forwards_on_error():
    net = _Net()
    with pytest.raises(RuntimeError, match="boom"), trainer.shared_prefix(net, ("lin",)):
        assert "forward" in net.lin.__dict__
        raise RuntimeError("boom")
    assert "forward" not in net.lin.__dict__


def test_layers_disabled_does_what_adapter_disabled_does():
    ctx, pipe = _toy_state()
    x, sig, text = _inputs(pipe)
    tr = ctx.base
    assert len(ctx.lora_layers()) == 2 + 2 * tr.config.num_layers
    with torch.no_grad():
        on = predict_velocity(tr, x, sig, text)
        with adapter_disabled(tr):
            want = predict_velocity(tr, x, sig, text)
            flags = [p.requires_grad for p in ctx.params]
        with trainer.layers_disabled(ctx.lora_layers()):
            got = predict_velocity(tr, x, sig, text)
            assert [p.requires_grad for p in ctx.params] == flags
        assert torch.equal(got, want) and not torch.equal(got, on)
        assert torch.equal(predict_velocity(tr, x, sig, text), on)
    assert all(p.requires_grad for p in ctx.params)
