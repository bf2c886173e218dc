"""LoRA interchange for Wan transformers: diffusers/peft, DiffSynth (official), ComfyUI and
kohya/musubi names.

The four formats hold the same low-rank factors under different names:

* ``diffusers`` — what ``WanPipeline.save_lora_weights`` writes:
  ``transformer.blocks.0.attn2.to_k.lora_A.weight``; alpha in the safetensors header
  (``lora_adapter_metadata``: the peft ``LoraConfig``, keys prefixed ``transformer.``).
* ``diffsynth`` — DiffSynth-Studio and the official SpatialAlign release, the original Wan
  module names: ``blocks.0.cross_attn.k.lora_A.weight``, ``text_embedding.0...``; the released
  Lightning checkpoint carries peft's ``.default`` infix, which is accepted on reading and
  written with ``peft_names`` (the names the official ``train.py --pretrained_lora_path``
  loads with ``load_state_dict(strict=False)``: without the infix it loads nothing, silently).
  DiffSynth's loader applies no alpha (``B @ A`` times its own ``lora_alpha`` argument), so
  this target folds ``alpha / rank`` into ``lora_B`` unless ``fold_alpha=False``.
* ``comfyui`` — the original names under ``diffusion_model.``, never a ``.default`` infix
  (what ComfyUI loads, and the only non-diffusers Wan layout ``WanPipeline.load_lora_weights``
  converts: it skips bare DiffSynth names with a warning, and rejects ``.alpha`` on
  ``text_embedding``, so for that route use ``fold_alpha`` when alpha differs from the rank).
* ``kohya`` — kohya-ss / musubi-tuner: ``lora_unet_blocks_0_cross_attn_k.lora_down.weight``,
  ``.lora_up.weight`` and ``.alpha`` (the original name with ``_`` for ``.``, as ComfyUI maps
  ``lora_unet_*`` keys; also ``lora_unet_text_embedding_0``). Written with an ``.alpha`` on
  every layer, as musubi does (diffusers' musubi converter requires one per layer). ComfyUI
  loads any such file; diffusers only one that adapts every block linear of every block and
  no ``text_embedding`` (not the SpatialAlign targets: use ``diffusers`` for those).

Alpha (the LoRA scale is ``alpha / rank``) travels as diffusers metadata or as kohya-style
``<module>.alpha`` scalar tensors in the other two, written only where it differs from the
rank: a file without alpha means unit scale in all three. Tensors are copied, never
recomputed, unless ``fold_alpha`` bakes the scale into ``lora_B`` for tools that ignore alpha.
Reading uses safetensors, or ``torch.load(weights_only=True)`` for ``.ckpt``/``.pt`` files;
nothing is ever unpickled beyond tensors and plain containers. A checkpoint may be the LoRA
itself, ``{"state_dict": LoRA, ...}``, or a full Lightning checkpoint of the official trainer
(``step=NNNNN.ckpt``: its ``on_save_checkpoint`` puts the LoRA at the top level, beside
Lightning's ``state_dict`` with the whole model and ``ref_model.*``): the LoRA is taken, the
rest ignored, and what was ignored is reported (:attr:`WanLora.ignored`).
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path
from spatialalign.lora.adapter import LORA_WEIGHT_NAME

if TYPE_CHECKING:
    import torch

FORMATS = ("diffusers", "diffsynth", "comfyui", "kohya")
"""The LoRA key layouts :func:`convert_lora` reads and writes."""

METADATA_KEY = "lora_adapter_metadata"
"""diffusers' ``LORA_ADAPTER_METADATA_KEY``: the JSON peft config in the safetensors header."""

DIFFUSERS_PREFIX = "transformer."
COMFYUI_PREFIX = "diffusion_model."
KOHYA_PREFIX = "lora_unet_"
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
_KOHYA_BLOCK = re.compile(r"blocks_(\d+)_(.+)")
_KOHYA_BLOCK_NAMES = {wan.replace(".", "_"): wan for wan, _ in _BLOCK_MODULES}
_KOHYA_TOP_NAMES = {wan.replace(".", "_"): wan for wan, _ in _TOP_MODULES}
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


def kohya_to_wan_name(name: str) -> str | None:
    """The original Wan module name of a kohya module name without ``lora_unet_``
    (``blocks_0_cross_attn_k`` -> ``blocks.0.cross_attn.k``); None when not a LoRA target.
    The ``_`` are resolved against the table of targets, never guessed."""
    block = _KOHYA_BLOCK.fullmatch(name)
    if block:
        inner = _KOHYA_BLOCK_NAMES.get(block.group(2))
        return f"blocks.{block.group(1)}.{inner}" if inner else None
    return _KOHYA_TOP_NAMES.get(name)


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
    ignored: str | None = None
    """What reading left out of the file (a Lightning checkpoint's training state), one line."""

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
    """The adapter's alphas, as read (before any folding)."""
    path: Path
    folded: bool = False
    """``alpha / rank`` was multiplied into ``lora_B`` (on layers where alpha != rank)."""
    peft_names: bool = False
    scales: tuple[float, ...] = ()
    """The distinct ``alpha / rank`` of the layers."""
    ignored: str | None = None
    """What reading left out of the input (a Lightning checkpoint's training state)."""

    def summary(self) -> str:
        """The CLI's one line: formats, counts, rank(s), alpha(s) and what became of alpha,
        output file."""
        rank = "/".join(str(r) for r in self.ranks)
        alpha = "/".join(f"{a:g}" for a in self.alphas)
        target = self.target_format + (" (peft names)" if self.peft_names else "")
        return (
            f"converted {self.source_format} -> {target}: {self.n_layers} layers, "
            f"{self.n_tensors} tensors, rank {rank}, alpha {alpha}{self._alpha_note()} "
            f"-> {self.path}"
        )

    def _alpha_note(self) -> str:
        """What became of alpha where it matters: folded into ``lora_B``, or kept for a
        loader that ignores it; and the rank/alpha the official ``train.py`` must be given."""
        scaled = any(s != 1 for s in self.scales)
        note = ""
        if scaled and self.folded:
            note = " folded into lora_B"
            if self.target_format == "diffsynth":
                note += " (DiffSynth applies no alpha; --keep-alpha keeps it)"
        elif scaled and self.target_format == "diffsynth":
            scale = f"{self.scales[0]:g}" if len(self.scales) == 1 else "alpha/rank"
            note = (
                f" kept as .alpha tensors, which DiffSynth ignores (load with lora_alpha={scale})"
            )
        if self.peft_names:
            rank = "/".join(str(r) for r in self.ranks)
            alpha = rank if self.folded or not scaled else "/".join(f"{a:g}" for a in self.alphas)
            note += "; official train.py --pretrained_lora_path: "
            note += f"--lora_rank {rank} --lora_alpha {alpha}"
        return note


# --------------------------------------------------------------------------- reading
def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and safetensors header metadata of a LoRA file (a ``.safetensors`` file, or
    a torch checkpoint read with ``weights_only=True``; a directory means diffusers' file name)."""
    tensors, metadata, _ = _read_file(path)
    return tensors, metadata


def lora_input_file(path: str | os.PathLike[str]) -> Path:
    """The file :func:`read_tensors` reads for ``path`` (a directory means diffusers' name)."""
    path = Path(path).expanduser()
    return path / LORA_WEIGHT_NAME if path.is_dir() else path


def _read_file(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str], str | None]:
    """:func:`read_tensors`, and a line on what was ignored (None when nothing was)."""
    path = lora_input_file(path)
    if not path.is_file():
        raise SpatialAlignError(f"LoRA file not found: {path}")
    if path.suffix == ".safetensors":
        return (*_read_safetensors(path), None)
    if path.suffix in CHECKPOINT_SUFFIXES:
        tensors, ignored = _read_checkpoint(path)
        return tensors, {}, ignored
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


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The LoRA tensors of a torch checkpoint, loaded with ``weights_only=True`` (a file
    holding other Python objects is refused, never unpickled), and a line on what was
    ignored. The LoRA is the top-level tensors of a full Lightning checkpoint (beside its
    ``state_dict``), else the ``state_dict``, else the whole (flat) dict. A zip checkpoint is
    memory-mapped, so the full weights of an ignored ``state_dict`` are never read."""
    import pickle

    import torch

    try:
        ckpt = torch.load(
            path, weights_only=True, map_location="cpu", mmap=zipfile.is_zipfile(path)
        )
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
    if not isinstance(ckpt, dict):
        raise SpatialAlignError(f"{path}: expected a dict of tensors, got {type(ckpt).__name__}")
    inner = ckpt.get("state_dict")
    top = {str(k): v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    ignored = None
    if isinstance(inner, dict) and top:
        # the official trainer's on_save_checkpoint: checkpoint.update(lora_state_dict)
        others = sorted(str(k) for k in ckpt if str(k) not in top and k != "state_dict")
        ignored = (
            f"{path.name}: read the {len(top)} LoRA tensors at the top level of this Lightning "
            f"checkpoint; ignored its state_dict ({_tensor_groups(inner)})"
            + (f" and {_entries(others)}" if others else "")
        )
        state = top
    elif isinstance(inner, dict):
        others = sorted(str(k) for k in ckpt if k != "state_dict")
        if others:
            ignored = f"{path.name}: read its state_dict; ignored {_entries(others)}"
        state = inner
    else:
        state = ckpt
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise SpatialAlignError(f"{path}: entries that are not tensors: {_some(bad)}")
    return {str(k): v for k, v in state.items()}, ignored


def _tensor_groups(state: dict) -> str:
    """``N tensors under pipe.*, ref_model.*`` for an ignored state dict."""
    groups = sorted({str(k).split(".", 1)[0] for k in state})
    shown = ", ".join(f"{g}.*" for g in groups[:4]) + (", ..." if len(groups) > 4 else "")
    return f"{len(state)} tensors under {shown}" if state else "empty"


def _entries(names: list[str]) -> str:
    """``N training-state entries (a, b, c and M more)``."""
    n = len(names)
    return f"{n} training-state entr{'y' if n == 1 else 'ies'} ({_some(names, 8)})"


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
    """One of :data:`FORMATS` from a LoRA's key names."""
    formats = {_key_format(k) for k in keys}
    formats.discard(None)
    if len(formats) == 1:
        return formats.pop()
    if not formats:
        raise SpatialAlignError(f"not a Wan transformer LoRA in a known format: {_some(keys)}")
    raise SpatialAlignError(f"LoRA keys mix formats ({', '.join(sorted(formats))})")


def _key_format(key: str) -> str | None:
    """The format one key belongs to, or None when it names no known module."""
    if key.startswith(KOHYA_PREFIX):
        return "kohya"
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
    prefix = {"diffusers": DIFFUSERS_PREFIX, "comfyui": COMFYUI_PREFIX, "kohya": KOHYA_PREFIX}
    prefix = prefix.get(fmt, "")
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
    if fmt == "kohya":
        wan = kohya_to_wan_name(module)
        return wan_to_diffusers_name(wan) if wan else None
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
    """The Wan LoRA in ``path`` (any of :data:`FORMATS`, safetensors or weights-only torch);
    its ``ignored`` says what of the file was not the LoRA (a Lightning checkpoint's rest)."""
    tensors, metadata, ignored = _read_file(path)
    return replace(parse_lora(tensors, metadata, alpha=alpha, what=str(path)), ignored=ignored)


# --------------------------------------------------------------------------- writing
def lora_state_dict(
    lora: WanLora, fmt: str, *, fold_alpha: bool = False, peft_names: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and safetensors metadata of ``lora`` in format ``fmt``.

    ``fold_alpha`` multiplies each ``lora_B`` by ``alpha / rank`` and records alpha = rank,
    for loaders that ignore alpha (DiffSynth's own applies unit scale). ``peft_names`` (DiffSynth
    only) writes peft's ``.lora_A.default.weight``, the names of the official trainer."""
    if fmt not in FORMATS:
        raise SpatialAlignError(f"unknown LoRA format {fmt!r} (one of {', '.join(FORMATS)})")
    if peft_names and fmt != "diffsynth":
        raise SpatialAlignError(f"peft names (.lora_A.default) are for diffsynth, not {fmt}")
    layers = {m: _folded(layer) if fold_alpha else layer for m, layer in lora.layers.items()}
    down, up = ("lora_down", "lora_up") if fmt == "kohya" else ("lora_A", "lora_B")
    infix = ".default" if peft_names else ""
    tensors: dict[str, torch.Tensor] = {}
    for module, layer in layers.items():
        name = _target_name(module, fmt)
        tensors[f"{name}.{down}{infix}.weight"] = layer.down.contiguous()
        tensors[f"{name}.{up}{infix}.weight"] = layer.up.contiguous()
        if fmt == "kohya" or (fmt != "diffusers" and layer.alpha != layer.rank):
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
    if fmt == "kohya":
        return KOHYA_PREFIX + wan.replace(".", "_")
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


def lora_output_file(path: str | os.PathLike[str], fmt: str) -> Path:
    """The file :func:`write_lora` writes for ``path``: a directory gets diffusers'
    ``pytorch_lora_weights.safetensors`` (``lora_<fmt>.safetensors`` for the other formats)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / (LORA_WEIGHT_NAME if fmt == "diffusers" else f"lora_{fmt}.safetensors")
    if path.suffix != ".safetensors":
        raise SpatialAlignError(f"LoRA output must be a .safetensors file, got {path}")
    return path


def write_lora(
    lora: WanLora,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    fold_alpha: bool = False,
    peft_names: bool = False,
) -> tuple[Path, int]:
    """Writes ``lora`` in format ``fmt`` as safetensors, atomically, to
    :func:`lora_output_file` of ``path``; returns (path, tensors)."""
    from safetensors.torch import save_file

    path = lora_output_file(path, fmt)
    tensors, metadata = lora_state_dict(lora, fmt, fold_alpha=fold_alpha, peft_names=peft_names)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path, len(tensors)


def convert_lora(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    to: str,
    *,
    alpha: float | None = None,
    fold_alpha: bool | None = None,
    peft_names: bool = False,
) -> ConvertResult:
    """Reads the LoRA ``src`` (format detected from its keys), writes it to ``dst`` in ``to``.

    ``fold_alpha`` None folds ``alpha / rank`` into ``lora_B`` for ``diffsynth`` (whose loader
    ignores alpha) and nowhere else; True or False forces it. ``dst`` may not be ``src``
    (through a symlink, ``./`` or a directory either)."""
    if to not in FORMATS:
        raise SpatialAlignError(f"unknown LoRA format {to!r} (one of {', '.join(FORMATS)})")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise SpatialAlignError(f"--alpha must be a positive number, got {alpha}")
    if peft_names and to != "diffsynth":
        raise SpatialAlignError(
            f"--peft-names writes DiffSynth names: use it with --to diffsynth, not {to}"
        )
    src_file, out_file = lora_input_file(src), lora_output_file(dst, to)
    if _same_file(src_file, out_file):
        raise SpatialAlignError(
            f"refusing to write {dst}: it is the same file as its input {src_file} "
            f"(convert-lora never overwrites its input; choose another OUT)"
        )
    fold = to == "diffsynth" if fold_alpha is None else fold_alpha
    lora = read_lora(src_file, alpha=alpha)
    path, n_tensors = write_lora(lora, out_file, to, fold_alpha=fold, peft_names=peft_names)
    return ConvertResult(
        source_format=lora.source_format,
        target_format=to,
        n_layers=len(lora.layers),
        n_tensors=n_tensors,
        ranks=tuple(sorted(lora.ranks())),
        alphas=tuple(sorted(float(a) for a in lora.alphas())),
        path=path,
        folded=fold,
        peft_names=peft_names,
        scales=tuple(sorted({x.alpha / x.rank for x in lora.layers.values()})),
        ignored=lora.ignored,
    )


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file (the same path after resolving symlinks and ``.``, or
    two names of one inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _some(keys: list[str], n: int = 3) -> str:
    """The first ``n`` keys, and how many more."""
    shown = ", ".join(sorted(keys)[:n])
    return shown + (f" (and {len(keys) - n} more)" if len(keys) > n else "")
