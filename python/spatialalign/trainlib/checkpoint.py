"""Training checkpoints as one safetensors file: weights, optimizer, scheduler, RNG, step.

Tensors (model or LoRA weights, optimizer state, RNG states) are safetensors tensors; the
rest (step, optimizer param groups, scheduler state, Python/NumPy RNG) is JSON in the
file's metadata. No pickle anywhere: accelerate's ``save_state`` pickles optimizer state,
which is why we keep our own. Writes are atomic, so a kill mid-save keeps the old file.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.parallel.sharding import full, like

OPT_PREFIX = "opt."
RNG_PREFIX = "rng."
META_KEY = "meta"


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with ``prefix`` put before every key."""
    return {prefix + k: v for k, v in state.items()}


# ------------------------------------------------------------------------- optimizer
def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The optimizer's per-parameter state as tensors (``"{param}.{name}"``) and its param
    groups (lr, betas, ...) as JSON-able data. FSDP-sharded state is gathered whole (a
    collective: every process calls this)."""
    sd = opt.state_dict()
    tensors = {
        f"{i}.{k}": full(torch.as_tensor(v)).detach().clone().cpu()
        for i, st in sd["state"].items()
        for k, v in st.items()
    }
    return tensors, json.loads(json.dumps(sd["param_groups"]))


def load_optimizer_state(
    opt: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    param_groups: list[dict] | None = None,
) -> None:
    """Inverse of :func:`optimizer_state`; without ``param_groups`` the optimizer keeps its
    own (lr, betas, ...). Per-parameter state is laid out like its parameter (this
    process's shard under FSDP)."""
    sd = opt.state_dict()
    params = [p for group in opt.param_groups for p in group["params"]]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        if v.dim() and int(i) < len(params) and v.shape == params[int(i)].shape:
            v = like(v, params[int(i)])
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    if param_groups is not None:
        if len(param_groups) != len(sd["param_groups"]):
            raise SpatialAlignError("checkpoint optimizer has a different number of groups")
        for group in param_groups:
            if "betas" in group:
                group["betas"] = tuple(group["betas"])
        sd["param_groups"] = param_groups
    opt.load_state_dict(sd)


# ------------------------------------------------------------------------------- RNG
def rng_state(
    generators: dict[str, torch.Generator] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every random state a training step can touch: torch (CPU and each CUDA device) and
    the named ``generators`` as tensors; Python's and NumPy's global RNG as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    for name, g in (generators or {}).items():
        tensors[f"gen.{name}"] = g.get_state()
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, meta


def set_rng_state(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    generators: dict[str, torch.Generator] | None = None,
) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["torch"])
    cuda = sorted(k for k in tensors if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    for name, g in (generators or {}).items():
        if f"gen.{name}" not in tensors:
            raise SpatialAlignError(f"checkpoint has no state for generator {name!r}")
        g.set_state(tensors[f"gen.{name}"])
    v, keys, gauss = meta["python"]
    random.setstate((v, tuple(keys), gauss))
    kind, nkeys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(nkeys, dtype=np.uint32), pos, has_gauss, cached))


# ------------------------------------------------------------------------------ file
def save_checkpoint(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Writes ``tensors`` with ``meta`` (JSON) in the header, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={META_KEY: json.dumps(meta)},
        )
    return path


def checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (without reading its tensors)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return json.loads((f.metadata() or {})[META_KEY])
    except (OSError, KeyError, json.JSONDecodeError, SafetensorError) as e:
        raise SpatialAlignError(f"cannot read checkpoint {path}: {e}") from e


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and JSON metadata of a checkpoint."""
    from safetensors.torch import load_file

    meta = checkpoint_meta(path)
    return load_file(str(path)), meta


def save_training_state(
    path: str | os.PathLike[str],
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    *,
    scheduler: Any = None,
    generators: dict[str, torch.Generator] | None = None,
    save_rng: bool = True,
) -> Path:
    """One checkpoint of a training run: ``weights`` (keys as given), the optimizer under
    ``opt.``, the scheduler's state and the RNG states, with ``meta`` (step, ...)."""
    opt_t, groups = optimizer_state(optimizer)
    tensors = {**weights, **add_prefix(opt_t, OPT_PREFIX)}
    full = {**meta, "optimizer_param_groups": groups}
    if scheduler is not None:
        full["scheduler"] = json.loads(json.dumps(scheduler.state_dict()))
    if save_rng:
        rng_t, rng_meta = rng_state(generators)
        tensors.update(add_prefix(rng_t, RNG_PREFIX))
        full["rng"] = rng_meta
    return save_checkpoint(path, tensors, full)


def load_training_state(
    path: str | os.PathLike[str],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: Any = None,
    generators: dict[str, torch.Generator] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restores optimizer, scheduler and RNG from a :func:`save_training_state` file (the
    RNG only when it was saved); returns the remaining tensors (the weights) and the meta."""
    tensors, meta = load_checkpoint(path)
    load_optimizer_state(
        optimizer, strip_prefix(tensors, OPT_PREFIX), meta.get("optimizer_param_groups")
    )
    if scheduler is not None and "scheduler" in meta:
        scheduler.load_state_dict(meta["scheduler"])
    if "rng" in meta:
        set_rng_state(strip_prefix(tensors, RNG_PREFIX), meta["rng"], generators)
    weights = {k: v for k, v in tensors.items() if not k.startswith((OPT_PREFIX, RNG_PREFIX))}
    return weights, meta
