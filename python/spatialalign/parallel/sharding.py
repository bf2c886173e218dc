"""How several training processes share the transformer: DDP or FSDP (``--distributed``).

* ``ddp``: every process holds the whole model; ``accelerate`` wraps it and all-reduces the
  LoRA gradients. Right for Wan2.1-1.3B, whose bf16 weights (2.6 GB) fit any training GPU.
* ``fsdp``: PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``) on every transformer
  block and the root, so the frozen weights, the LoRA weights, their gradients and the
  optimizer state are sharded over the processes and a block's weights are gathered only
  while it runs (for the larger Wan checkpoints). ``accelerate``'s own FSDP plugin is
  GPU-only; FSDP2 also runs on CPU processes (gloo), which is how it is tested here.

With one process both are the plain model. The helpers below hide the difference from the
trainer: the gradient-sync switch of gradient accumulation, and gathering sharded tensors
into whole ones for checkpoints and the adapter file (and back when resuming), so a
checkpoint does not depend on the strategy or the number of processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch

STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")
Strategy = Literal["ddp", "fsdp"]


def is_sharded(model: torch.nn.Module) -> bool:
    """True for a module wrapped with FSDP2's ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def wrap_model(transformer: torch.nn.Module, acc: Any, strategy: Strategy) -> torch.nn.Module:
    """The model the training step runs: ``acc.prepare`` (DDP with several processes), or
    ``transformer`` itself sharded in place per block with FSDP2. Call it after the adapter
    is added and before the optimizer is made (FSDP replaces the parameters)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown distributed strategy {strategy!r}")
    if strategy == "ddp" or acc.num_processes == 1:
        return acc.prepare(transformer)
    from torch.distributed.fsdp import fully_shard

    transformer.to(acc.device)
    for block in getattr(transformer, "blocks", ()):
        fully_shard(block)
    fully_shard(transformer)
    return transformer


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, acc: Any, enabled: bool) -> Iterator[None]:
    """Micro-batches of one optimizer step: gradients are reduced over the processes only
    when ``enabled`` (the last micro-batch), under DDP as under FSDP."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)  # type: ignore[operator]
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)  # type: ignore[operator]
    elif enabled:
        yield
    else:
        with acc.no_sync(model):
            yield


def full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor from a sharded one (a collective: every process must call it)."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def full_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every sharded tensor gathered (a collective under FSDP)."""
    return {k: full(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def like(whole: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """``whole`` laid out as ``current``: this process's shard when ``current`` is sharded,
    else ``whole`` itself."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(current, DTensor):
        return whole
    whole = whole.detach().to(device=current.device, dtype=current.dtype)
    return distribute_tensor(whole, current.device_mesh, current.placements)
