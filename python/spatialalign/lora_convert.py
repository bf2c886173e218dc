"""LoRA interchange for Wan transformers: diffusers/peft, DiffSynth (official) and ComfyUI names.

The three formats hold the same low-rank factors under different names:

* ``diffusers`` — what ``WanPipeline.save_lora_weights`` writes:
  ``transformer.blocks.0.attn2.to_k.lora_A.weight``; alpha in the safetensors header
  (``lora_adapter_metadata``: the peft ``LoraConfig``, keys prefixed ``transformer.``).
* ``diffsynth`` — DiffSynth-Studio and the official SpatialAlign release, the original Wan
  module names: ``blocks.0.cross_attn.k.lora_A.weight``, ``text_embedding.0...``; the released
  Lightning checkpoint carries peft's ``.default`` infix, which is accepted on reading.
* ``comfyui`` — the original names under ``diffusion_model.``, never a ``.default`` infix
  (what ComfyUI loads, and the only non-diffusers Wan layout ``WanPipeline.load_lora_weights``
  converts: it skips bare DiffSynth names with a warning, and rejects ``.alpha`` on
  ``text_embedding``, so for that route use ``fold_alpha`` when alpha differs from the rank).

Alpha (the LoRA scale is ``alpha / rank``) travels as diffusers metadata or as kohya-style
``<module>.alpha`` scalar tensors in the other two, written only where it differs from the
rank: a file without alpha means unit scale in all three. Tensors are copied, never
recomputed, unless ``fold_alpha`` bakes the scale into ``lora_B`` for tools that ignore alpha.
Reading uses safetensors, or ``torch.load(weights_only=True)`` for ``.ckpt``/``.pt`` files;
nothing is ever unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spatialalign.errors import SpatialAlignError
from spatialalign.io import atomic_path
from spatialalign.lora import LORA_WEIGHT_NAME

if TYPE_CHECKING:
    import torch

FORMATS = ("diffusers", "diffsynth", "comfyui")
"""The LoRA key layouts :func:`convert_lora` reads and writes."""

METADATA_KEY = "lora_adapter_metadata"
"""diffusers' ``LORA_ADAPTER_METADATA_KEY``: the JSON peft config in the safetensors header."""

DIFFUSERS_PREFIX = "transformer."
COMFYUI_PREFIX = "diffusion_model."
CONTAINER_PREFIXES = ("pipe.dit.", "pipe.denoising_model.", "dit.", "model.", "lora.")
"""Prefixes a training framework puts in front of every key (Lightning's ``pipe.dit.``)."""
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# (original Wan name, diffusers name) of every linear layer a Wan LoRA may adapt; the block
# ones sit under ``blocks.N.`` in both. Same table as diffusers' non-diffusers Wan converter.
_BLOCK_MODULES = (
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.k_img", "attn2.add_k_proj"),
    ("cross_attn.v_img", "attn2.add_v_proj"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
)
_TOP_MODULES = (
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
)
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_KEY = re.compile(
    r"(?P<module>.+?)\.(?:(?P<factor>lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight"
    r"|(?P<alpha>alpha))"
)
_FACTOR = {"lora_A": "down", "lora_down": "down", "lora_B": "up", "lora_up": "up"}


def _lookup(name: str, table: tuple[tuple[str, str], ...], src: int) -> str | None:
    """``name`` translated through ``table`` from column ``src`` to the other; None if absent."""
    block = _BLOCK.fullmatch(name)
    pairs = _BLOCK_MODULES if block else table
    inner = block.group(2) if block else name
    for pair in pairs:
        if pair[src] == inner:
            out = pair[1 - src]
            return f"blocks.{block.group(1)}.{out}" if block else out
    return None


def wan_to_diffusers_name(name: str) -> str | None:
    """The diffusers module name of an original Wan module name (None when not a LoRA target)."""
    return _lookup(name, _TOP_MODULES, 0)


def diffusers_to_wan_name(name: str) -> str | None:
    """The original Wan module name of a diffusers module name (None when not a LoRA target)."""
    return _lookup(name, _TOP_MODULES, 1)


# --------------------------------------------------------------------------- the adapter
@dataclass(frozen=True)
class LoraLayer:
    """One adapted linear layer: ``delta W = (alpha / rank) · up @ down``."""

    down: torch.Tensor  # lora_A, [rank, in_features]
    up: torch.Tensor  # lora_B, [out_features, rank]
    alpha: float

    @property
    def rank(self) -> int:
        """The LoRA rank (rows of ``lora_A``)."""
        return int(self.down.shape[0])


@dataclass(frozen=True)
class WanLora:
    """A Wan transformer LoRA independent of its file format, keyed by diffusers module name."""

    layers: dict[str, LoraLayer]
    source_format: str

    def alphas(self) -> Counter[float]:
        """How many layers have each alpha."""
        return Counter(layer.alpha for layer in self.layers.values())

    def ranks(self) -> Counter[int]:
        """How many layers have each rank."""
        return Counter(layer.rank for layer in self.layers.values())


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_lora` did, for the CLI's one-line summary."""

    source_format: str
    target_format: str
    n_layers: int
    n_tensors: int
    ranks: tuple[int, ...]
    alphas: tuple[float, ...]
    path: Path

    def summary(self) -> str:
        """The CLI's one line: formats, counts, rank(s), alpha(s), output file."""
        rank = "/".join(str(r) for r in self.ranks)
        alpha = "/".join(f"{a:g}" for a in self.alphas)
        return (
            f"converted {self.source_format} -> {self.target_format}: {self.n_layers} layers, "
            f"{self.n_tensors} tensors, rank {rank}, alpha {alpha} -> {self.path}"
        )


# --------------------------------------------------------------------------- reading
def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and safetensors header metadata of a LoRA file (a ``.safetensors`` file, or
    a torch checkpoint read with ``weights_only=True``; a directory means diffusers' file name)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / LORA_WEIGHT_NAME
    if not path.is_file():
        raise SpatialAlignError(f"LoRA file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in CHECKPOINT_SUFFIXES:
        return _read_checkpoint(path), {}
    raise SpatialAlignError(
        f"{path}: unknown LoRA file type {path.suffix!r} "
        f"(expected .safetensors or one of {', '.join(CHECKPOINT_SUFFIXES)})"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise SpatialAlignError(f"cannot read {path} as safetensors: {e}") from e


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a torch checkpoint (its ``state_dict`` if it has one), loaded with
    ``weights_only=True``: a file holding other Python objects is refused, never unpickled."""
    import pickle

    import torch

    try:
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"WeightsUnpickler error: ([^.\n]*)", str(e))
        reason = found.group(1) if found else type(e).__name__
        raise SpatialAlignError(
            f"refusing to read {path}: it holds Python objects other than tensors ({reason}); "
            f"it was read with torch.load(weights_only=True) and is never unpickled: export "
            f"its tensors to .safetensors with the tool that wrote it"
        ) from e
    except Exception as e:
        raise SpatialAlignError(f"cannot read {path} as a torch checkpoint: {e}") from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise SpatialAlignError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SpatialAlignError(f"{path}: entries that are not tensors: {_some(bad)}")
    return {str(k): v for k, v in state.items()}


def strip_container_prefix(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` without a prefix every key shares (Lightning's ``pipe.dit.``, ``model.``)."""
    changed = True
    while changed and tensors:
        changed = False
        for prefix in CONTAINER_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
                changed = True
    return tensors


def detect_format(keys: list[str]) -> str:
    """``"diffusers"``, ``"diffsynth"`` or ``"comfyui"`` from a LoRA's key names."""
    formats = {_key_format(k) for k in keys}
    formats.discard(None)
    if len(formats) == 1:
        return formats.pop()
    if not formats:
        raise SpatialAlignError(f"not a Wan transformer LoRA in a known format: {_some(keys)}")
    raise SpatialAlignError(f"LoRA keys mix formats ({', '.join(sorted(formats))})")


def _key_format(key: str) -> str | None:
    """The format one key belongs to, or None when it names no known module."""
    if key.startswith(COMFYUI_PREFIX):
        return "comfyui"
    if key.startswith(DIFFUSERS_PREFIX):
        return "diffusers"
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    module = match.group("module")
    if wan_to_diffusers_name(module):
        return "diffsynth"
    return "diffusers" if diffusers_to_wan_name(module) else None


def parse_lora(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    *,
    alpha: float | None = None,
    what: str = "LoRA",
) -> WanLora:
    """The layers of a LoRA state dict in any of :data:`FORMATS`.

    ``alpha`` overrides the file's alpha on every layer (needed for DiffSynth checkpoints,
    which do not record the ``lora_alpha`` they were trained with). Keys that name no Wan
    LoRA target, unpaired factors and bad shapes raise :class:`SpatialAlignError`."""
    tensors = strip_container_prefix(dict(tensors))
    if not tensors:
        raise SpatialAlignError(f"{what} holds no tensors")
    fmt = detect_format(list(tensors))
    factors, file_alphas, unknown = _group_keys(tensors, fmt)
    if unknown:
        raise SpatialAlignError(
            f"{what} ({fmt} format) has {len(unknown)} keys that are not Wan transformer LoRA "
            f"factors: {_some(unknown)}"
        )
    default_alpha = _metadata_alpha(metadata or {}, what)
    layers = {}
    for module, pair in sorted(factors.items()):
        down, up = _checked_pair(module, pair, what)
        a = alpha if alpha is not None else file_alphas.get(module)
        if a is None:
            a = default_alpha(module, int(down.shape[0]))
        layers[module] = LoraLayer(down=down, up=up, alpha=float(a))
    stray = sorted(set(file_alphas) - set(layers))
    if stray:
        raise SpatialAlignError(f"{what}: alpha without LoRA factors for {_some(stray)}")
    return WanLora(layers=layers, source_format=fmt)


def _group_keys(
    tensors: dict[str, torch.Tensor], fmt: str
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, float], list[str]]:
    """Factors per diffusers module name, ``.alpha`` values, and the keys that fit nothing."""
    prefix = {"diffusers": DIFFUSERS_PREFIX, "comfyui": COMFYUI_PREFIX}.get(fmt, "")
    factors: dict[str, dict[str, torch.Tensor]] = {}
    alphas: dict[str, float] = {}
    unknown = []
    for key, value in tensors.items():
        match = _KEY.fullmatch(key.removeprefix(prefix))
        module = _module_name(match.group("module"), fmt) if match else None
        if module is None:
            unknown.append(key)
        elif match.group("alpha"):
            if value.numel() != 1:
                raise SpatialAlignError(f"alpha {key} is not a scalar: shape {tuple(value.shape)}")
            alphas[module] = float(value.item())
        else:
            side = _FACTOR[match.group("factor")]
            if side in factors.setdefault(module, {}):
                raise SpatialAlignError(f"two {side} factors for {module} (e.g. {key})")
            factors[module][side] = value
    return factors, alphas, unknown


def _module_name(module: str, fmt: str) -> str | None:
    """The diffusers module name of a key's module part in format ``fmt``."""
    if fmt == "diffusers":
        return module if diffusers_to_wan_name(module) else None
    return wan_to_diffusers_name(module)


def _checked_pair(
    module: str, pair: dict[str, torch.Tensor], what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(down, up)`` of one layer after checking both exist and their shapes fit."""
    if set(pair) != {"down", "up"}:
        missing = "lora_A" if "down" not in pair else "lora_B"
        raise SpatialAlignError(f"{what}: {module} has no {missing} factor")
    down, up = pair["down"], pair["up"]
    if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
        raise SpatialAlignError(
            f"{what}: {module} factors do not fit: lora_A {tuple(down.shape)}, "
            f"lora_B {tuple(up.shape)}"
        )
    if not (down.is_floating_point() and up.is_floating_point()):
        raise SpatialAlignError(f"{what}: {module} factors are not floating point")
    return down, up


def _metadata_alpha(metadata: dict[str, str], what: str) -> Callable[[str, int], float]:
    """A function ``(module, rank) -> alpha`` from diffusers' adapter metadata (peft's
    ``lora_alpha`` and ``alpha_pattern``); without metadata alpha equals the rank (scale 1)."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return lambda module, rank: float(rank)
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SpatialAlignError(f"{what}: unreadable {METADATA_KEY}: {e}") from e
    config = {k.removeprefix(DIFFUSERS_PREFIX): v for k, v in config.items()}
    for flag in ("use_rslora", "use_dora", "lora_bias"):
        if config.get(flag):
            raise SpatialAlignError(f"{what}: {flag} adapters cannot be converted")
    base = config.get("lora_alpha")
    pattern = config.get("alpha_pattern") or {}

    def alpha_of(module: str, rank: int) -> float:
        for key, value in pattern.items():
            if re.match(rf"(.*\.)?({key})$", module):
                return float(value)
        return float(base) if base is not None else float(rank)

    return alpha_of


def read_lora(path: str | os.PathLike[str], *, alpha: float | None = None) -> WanLora:
    """The Wan LoRA in ``path`` (any of :data:`FORMATS`, safetensors or weights-only torch)."""
    tensors, metadata = read_tensors(path)
    return parse_lora(tensors, metadata, alpha=alpha, what=str(path))


# --------------------------------------------------------------------------- writing
def lora_state_dict(
    lora: WanLora, fmt: str, *, fold_alpha: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and safetensors metadata of ``lora`` in format ``fmt``.

    ``fold_alpha`` multiplies each ``lora_B`` by ``alpha / rank`` and records alpha = rank,
    for loaders that ignore alpha (DiffSynth's own applies unit scale)."""
    if fmt not in FORMATS:
        raise SpatialAlignError(f"unknown LoRA format {fmt!r} (one of {', '.join(FORMATS)})")
    layers = {m: _folded(layer) if fold_alpha else layer for m, layer in lora.layers.items()}
    tensors: dict[str, torch.Tensor] = {}
    for module, layer in layers.items():
        name = _target_name(module, fmt)
        tensors[f"{name}.lora_A.weight"] = layer.down.contiguous()
        tensors[f"{name}.lora_B.weight"] = layer.up.contiguous()
        if fmt != "diffusers" and layer.alpha != layer.rank:
            tensors[f"{name}.alpha"] = _alpha_tensor(layer.alpha)
    metadata = {"format": "pt"}
    if fmt == "diffusers":
        metadata[METADATA_KEY] = json.dumps(_peft_metadata(layers), indent=2, sort_keys=True)
    return tensors, metadata


def _target_name(module: str, fmt: str) -> str:
    """A diffusers module name as the key stem of format ``fmt``."""
    if fmt == "diffusers":
        return DIFFUSERS_PREFIX + module
    wan = diffusers_to_wan_name(module)
    assert wan is not None, module  # parse_lora admits only mapped modules
    return COMFYUI_PREFIX + wan if fmt == "comfyui" else wan


def _folded(layer: LoraLayer) -> LoraLayer:
    """``layer`` with ``alpha / rank`` multiplied into ``lora_B`` (computed in float32)."""
    if layer.alpha == layer.rank:
        return layer
    scale = layer.alpha / layer.rank
    up = (layer.up.float() * scale).to(layer.up.dtype)
    return LoraLayer(down=layer.down, up=up, alpha=float(layer.rank))


def _alpha_tensor(alpha: float) -> torch.Tensor:
    """A kohya/ComfyUI ``.alpha`` entry: a float32 scalar tensor."""
    import torch

    return torch.tensor(alpha, dtype=torch.float32)


def _peft_metadata(layers: dict[str, LoraLayer]) -> dict[str, object]:
    """The peft ``LoraConfig`` fields diffusers reads back (``transformer.``-prefixed, as
    ``WanPipeline.save_lora_weights`` writes them): the most common rank and alpha, and
    per-module patterns for the others."""
    rank = Counter(x.rank for x in layers.values()).most_common(1)[0][0]
    alpha = Counter(x.alpha for x in layers.values()).most_common(1)[0][0]
    config = {
        "r": rank,
        "lora_alpha": _json_number(alpha),
        "target_modules": sorted(layers),
        "rank_pattern": {_pattern(m): x.rank for m, x in layers.items() if x.rank != rank},
        "alpha_pattern": {
            _pattern(m): _json_number(x.alpha) for m, x in layers.items() if x.alpha != alpha
        },
    }
    return {DIFFUSERS_PREFIX + k: v for k, v in config.items()}


def _pattern(module: str) -> str:
    """A peft rank/alpha pattern that matches exactly ``module`` (anchored, dots escaped)."""
    return "^" + re.escape(module)


def _json_number(x: float) -> int | float:
    """``x`` as an int when it is integral, so the JSON reads ``16`` rather than ``16.0``."""
    return int(x) if math.isfinite(x) and x == int(x) else x


def write_lora(
    lora: WanLora, path: str | os.PathLike[str], fmt: str, *, fold_alpha: bool = False
) -> tuple[Path, int]:
    """Writes ``lora`` in format ``fmt`` as safetensors, atomically; returns (path, tensors).

    A directory gets diffusers' ``pytorch_lora_weights.safetensors`` (``lora_<fmt>`` for the
    other formats)."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    if path.is_dir():
        path = path / (LORA_WEIGHT_NAME if fmt == "diffusers" else f"lora_{fmt}.safetensors")
    if path.suffix != ".safetensors":
        raise SpatialAlignError(f"LoRA output must be a .safetensors file, got {path}")
    tensors, metadata = lora_state_dict(lora, fmt, fold_alpha=fold_alpha)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path, len(tensors)


def convert_lora(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    to: str,
    *,
    alpha: float | None = None,
    fold_alpha: bool = False,
) -> ConvertResult:
    """Reads the LoRA ``src`` (format detected from its keys), writes it to ``dst`` in ``to``."""
    if to not in FORMATS:
        raise SpatialAlignError(f"unknown LoRA format {to!r} (one of {', '.join(FORMATS)})")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise SpatialAlignError(f"--alpha must be a positive number, got {alpha}")
    lora = read_lora(src, alpha=alpha)
    path, n_tensors = write_lora(lora, dst, to, fold_alpha=fold_alpha)
    alphas = lora.ranks() if fold_alpha else lora.alphas()  # folding leaves alpha = rank
    return ConvertResult(
        source_format=lora.source_format,
        target_format=to,
        n_layers=len(lora.layers),
        n_tensors=n_tensors,
        ranks=tuple(sorted(lora.ranks())),
        alphas=tuple(sorted(float(a) for a in alphas)),
        path=path,
    )


def _some(keys: list[str], n: int = 3) -> str:
    """The first ``n`` keys, and how many more."""
    shown = ", ".join(sorted(keys)[:n])
    return shown + (f" (and {len(keys) - n} more)" if len(keys) > n else "")
