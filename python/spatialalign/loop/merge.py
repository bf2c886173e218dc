"""Fusing a LoRA into a saved model: the ``--merge`` mode's round model.

Loads the model, loads the adapter through :func:`spatialalign.lora.adapter.load_lora_into_transformer`
(so its ``lora_alpha`` is honoured), fuses it into the transformer weights with diffusers'
``fuse_lora`` and drops the LoRA layers (``unload_lora``), then saves a full model
directory that ``sample --model-dir`` / ``train --model-path`` load like any other. The
model's metadata records what it was merged from, so a rerun with the same inputs skips.
(A generic helper for this belongs in :mod:`spatialalign.lora.adapter`.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.provenance import fingerprint
from spatialalign.lora.adapter import fuse_adapter, resolve_adapter
from spatialalign.models.registry import is_toy
from spatialalign.models.toy.shipped import toy_model_dir

MERGE_KEY = "merged_lora"
"""Key, in a merged toy model's metadata (``config.json``), of what it was merged from."""


def merge_record(
    base: str | os.PathLike[str] | None, adapter: str | os.PathLike[str], model: str = "toy"
) -> dict:
    """What a merged model is made from: the base weights (None: toy-family ``model``'s
    shipped ones) and the adapter (fingerprints)."""
    return {
        "base": fingerprint(toy_model_dir(model, base)),
        "adapter": fingerprint(resolve_adapter(adapter)),
    }


def merged_record(model_dir: str | os.PathLike[str]) -> dict | None:
    """The merge record of a saved toy model (None when absent or unreadable)."""
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text()).get("metadata", {}).get(MERGE_KEY)
    except (OSError, ValueError, AttributeError):
        return None


def merge_toy(
    base: str | os.PathLike[str] | None,
    adapter: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    model: str = "toy",
) -> tuple[Path, bool]:
    """Saves toy model ``base`` (None: toy-family ``model``'s shipped one) with ``adapter``
    fused in to ``out_dir``; returns (the directory, whether it was written: False when an
    equal merge is already there)."""
    from spatialalign.models.toy.pipeline import ToyPipeline

    record = merge_record(base, adapter, model)
    if merged_record(out_dir) == record:
        return Path(out_dir), False
    pipe = ToyPipeline.from_pretrained(toy_model_dir(model, base))
    fuse_adapter(pipe.transformer, adapter)
    pipe.metadata = {**pipe.metadata, MERGE_KEY: record}
    return pipe.save_pretrained(out_dir), True


def merge_model(
    model: str,
    base: str | os.PathLike[str] | None,
    adapter: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
) -> tuple[Path, bool]:
    """The merged model of ``model`` (only the toy-family models for now)."""
    if not is_toy(model):
        raise SpatialAlignError(
            f"--merge is implemented for the toy model only (toy, toy-hard; got {model!r}); "
            "use --continue-adapter"
        )
    return merge_toy(base, adapter, out_dir, model)
