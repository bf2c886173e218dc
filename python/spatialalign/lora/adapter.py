"""LoRA adapters in diffusers format: the SpatialAlign targets, and loading a weight file.

One loader for every model that takes an adapter (the toy pipeline, the toy and Wan
sampling back ends), so a saved ``lora_alpha`` (diffusers' adapter metadata in the
safetensors header) is honoured everywhere, not just where someone remembered it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spatialalign.core.errors import SpatialAlignError

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""The file name diffusers' ``save_lora_weights`` writes and ``train`` will write."""
ADAPTER_NAME = "spatialalign"
"""The peft adapter name the sampling back ends load an adapter under."""


def resolve_adapter(adapter: str | os.PathLike[str]) -> Path:
    """The LoRA weight file of ``adapter`` (a file, or a directory with the diffusers file)."""
    path = Path(adapter).expanduser()
    if path.is_dir():
        path = path / LORA_WEIGHT_NAME
    if not path.is_file():
        raise SpatialAlignError(f"LoRA adapter not found: {path}")
    if path.suffix != ".safetensors":
        raise SpatialAlignError(f"LoRA adapter must be a .safetensors file, got {path}")
    return path.resolve()


def lora_prefix(path: Path) -> str | None:
    """``"transformer"`` when the LoRA keys carry diffusers' pipeline prefix, else None.

    Refuses (:class:`SpatialAlignError`, one line naming the tensor) a file without LoRA
    keys, factors that are not floating point, and NaN or infinite values: torch would
    cast an int8 factor silently, and a NaN one spoils every video."""
    keys = check_adapter_tensors(path)
    return "transformer" if any(k.startswith("transformer.") for k in keys) else None


def check_adapter_tensors(path: Path) -> list[str]:
    """The keys of the LoRA file ``path`` after checking every tensor: floating point (an
    ``.alpha`` scalar may be an integer) and finite."""
    from safetensors import safe_open

    not_float, not_finite = [], []
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = sorted(f.keys())
            for key in keys:
                t = f.get_tensor(key)
                if not t.is_floating_point():
                    if not (key.endswith(".alpha") and t.numel() == 1 and not t.is_complex()):
                        not_float.append((key, t.dtype))
                elif not bool(t.isfinite().all()):
                    not_finite.append(key)
    except Exception as e:  # safetensors raises its own error types
        raise SpatialAlignError(f"cannot read LoRA adapter {path}: {_one_line(str(e))}") from e
    if not any("lora" in k for k in keys):
        raise SpatialAlignError(f"{path} holds no LoRA weights (no lora_A/lora_B keys)")
    if not_float:
        key, dtype = not_float[0]
        dtype_name = str(dtype).removeprefix("torch.")
        raise SpatialAlignError(
            f"LoRA adapter {path}: tensor {key} is {dtype_name}, not floating point"
            f"{_how_many(len(not_float), len(keys))}"
        )
    if not_finite:
        raise SpatialAlignError(
            f"LoRA adapter {path}: tensor {not_finite[0]} holds NaN or infinite values"
            f"{_how_many(len(not_finite), len(keys))}"
        )
    return keys


def _how_many(n: int, total: int) -> str:
    """`` (N of its TOTAL tensors are)`` when more than one tensor is affected."""
    return f" ({n} of its {total} tensors are)" if n > 1 else ""


def load_lora_into_transformer(
    transformer: Any, adapter: str | os.PathLike[str], *, adapter_name: str = ADAPTER_NAME
) -> Path:
    """Loads a diffusers-format LoRA into a diffusers transformer; returns the weight file.

    Loading from the file (not from a state dict) lets diffusers read the adapter metadata,
    so ``lora_alpha`` and the rank pattern come back as saved. Raises
    :class:`SpatialAlignError` when the file is missing, has no LoRA, or none of its layers
    match the transformer's modules.
    """
    path = resolve_adapter(adapter)
    prefix = lora_prefix(path)
    return _load_checked(
        lambda: transformer.load_lora_adapter(
            str(path.parent),
            weight_name=path.name,
            prefix=prefix,
            adapter_name=adapter_name,
            local_files_only=True,
        ),
        transformer,
        path,
        adapter_name,
    )


def load_lora_into_pipeline(
    pipe: Any, adapter: str | os.PathLike[str], *, adapter_name: str = ADAPTER_NAME
) -> Path:
    """Like :func:`load_lora_into_transformer`, through a diffusers pipeline's
    ``load_lora_weights`` (which also converts other trainers' Wan LoRA key formats; where its
    converter fails on such a file, the error points to ``convert-lora``)."""
    path = resolve_adapter(adapter)
    prefix = lora_prefix(path)  # a clear error for a file without LoRA weights
    hint = "" if prefix else CONVERT_HINT.format(path=path)
    return _load_checked(
        lambda: pipe.load_lora_weights(
            str(path.parent),
            weight_name=path.name,
            adapter_name=adapter_name,
            local_files_only=True,
        ),
        pipe.transformer,
        path,
        adapter_name,
        hint,
    )


def fuse_adapter(transformer: Any, adapter: str | os.PathLike[str]) -> None:
    """Loads ``adapter`` into ``transformer`` and fuses it into the weights in place (no
    LoRA layers remain): a merged model, e.g. the next reference of the loop."""
    load_lora_into_transformer(transformer, adapter, adapter_name="merge")
    transformer.fuse_lora(lora_scale=1.0, adapter_names=["merge"])
    transformer.unload_lora()


CONVERT_HINT = (
    "; if it is another trainer's Wan LoRA, `spatialalign convert-lora {path} OUT.safetensors "
    "--to diffusers` converts it"
)
"""Added to a failed load of a file without diffusers' ``transformer.`` names: diffusers'
converters of other trainers' names raise bare errors on files they do not expect (its
musubi converter wants every block linear and no ``text_embedding``)."""


def _load_checked(
    load: Callable[[], Any], transformer: Any, path: Path, name: str, hint: str = ""
) -> Path:
    """Runs ``load``; diffusers' errors and an adapter that matched nothing become one
    :class:`SpatialAlignError` of one line naming the file (diffusers' own multi-line log of
    the failure is dropped: the error says it), with ``hint`` appended to a failed load."""
    try:
        with _quiet_failed_load_log(name):
            load()
    except (ValueError, KeyError, IndexError, TypeError, RuntimeError, OSError) as e:
        reason = _load_error(e, name) or type(e).__name__
        raise SpatialAlignError(f"cannot load LoRA adapter {path}: {reason}{hint}") from e
    if name not in getattr(transformer, "peft_config", {}):
        raise SpatialAlignError(f"LoRA adapter {path} matches no layer of the transformer")
    return path


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) from "
    r"checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)"
)


def _load_error(error: BaseException, name: str) -> str:
    """One line for a failed load: torch's list of size mismatches (one line per tensor)
    becomes the count and the first tensor, named as in the file (without peft's adapter
    name), with its expected and actual shape; any other error its first line."""
    text = str(error)
    mismatches = _SIZE_MISMATCH.findall(text)
    if not mismatches:
        return _one_line(text)
    key, got, expected = mismatches[0]
    key = re.sub(rf"\.{re.escape(name)}(?=\.weight$)", "", key)
    n = len(mismatches)
    return (
        f"{n} tensor{'s' if n > 1 else ''} of the wrong shape for this transformer (an adapter "
        f"for another model?), the first {key}: expected ({expected}), got ({got})"
    )


def _one_line(text: str) -> str:
    """The first non-empty line of ``text``, and how many lines were left out."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else text
    return f"{lines[0]} (and {len(lines) - 1} more lines)"


@contextlib.contextmanager
def _quiet_failed_load_log(name: str) -> Iterator[None]:
    """Drops diffusers' ``Loading NAME was unsuccessful ...`` log record (the whole error,
    one line per tensor) while loading: the error is re-raised as one line instead."""
    logger = logging.getLogger("diffusers.loaders.peft")

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(f"Loading {name} was unsuccessful")

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


# --------------------------------------------------------------------------- training
LORA_TARGET_PATTERN = (
    r"(?:.*\.)?condition_embedder\.text_embedder\.linear_[12]"
    r"|(?:.*\.)?blocks\.\d+\.attn2\.to_[kv]"
)
"""The SpatialAlign LoRA targets (DESIGN.md), as the regex peft full-matches module names
against: the text projection ``condition_embedder.text_embedder.linear_1/2`` and every
cross-attention key/value ``blocks.N.attn2.to_k/to_v``. It cannot match the time embedder
(``condition_embedder.time_embedder.linear_*``) nor self-attention (``attn1``)."""


def lora_config(rank: int = 16, alpha: float = 16.0, dropout: float = 0.0) -> Any:
    """The peft ``LoraConfig`` of a SpatialAlign adapter (rank 16, alpha 16 by default)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=LORA_TARGET_PATTERN,
        init_lora_weights=True,
    )


def lora_target_names(model: Any) -> list[str]:
    """The names of ``model``'s modules the SpatialAlign LoRA wraps (``2 + 2·num_layers`` on
    a Wan transformer)."""
    pattern = re.compile(LORA_TARGET_PATTERN)
    return [n for n, _ in model.named_modules() if n and pattern.fullmatch(n)]


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[None]:
    """Runs the block with ``model``'s LoRA adapters switched off (the reference model of
    DPO: the same weights without the adapter, no second copy); re-enables them after."""
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()
