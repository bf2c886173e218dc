"""Which Wan checkpoint layout a directory holds, and what it lacks (one-line errors).

Two layouts are read, both from local files only:

* ``diffusers`` — a ``WanPipeline`` directory (``model_index.json`` + ``transformer/``,
  ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), e.g.
  ``Wan2.1-T2V-1.3B-Diffusers``.
* ``original`` — the Wan2.1 release as Wan's own code and DiffSynth-Studio read it:
  ``diffusion_pytorch_model*.safetensors`` (+ ``config.json``), ``Wan2.1_VAE.pth`` and
  ``models_t5_umt5-xxl-enc-bf16.pth`` with the tokenizer in ``google/umt5-xxl/``.
  diffusers converts the transformer and the VAE; it has no conversion for Wan's own T5
  file (its conversion script takes ``google/umt5-xxl`` instead), so the text encoder
  comes from a transformers UMT5 directory: ``text_encoder/`` beside the files or
  ``--text-encoder-dir``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from spatialalign.core.errors import SpatialAlignError

DIFFUSERS = "diffusers"
ORIGINAL = "original"
PIPELINE_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder")
TRANSFORMER_GLOB = "diffusion_pytorch_model*.safetensors"
ORIGINAL_VAE = ("Wan2.1_VAE.safetensors", "Wan2.1_VAE.pth")
ORIGINAL_T5 = "models_t5_umt5-xxl-enc-bf16.pth"
ORIGINAL_TOKENIZER = ("google/umt5-xxl", "tokenizer")
TEXT_ENCODER_HINT = (
    "a transformers UMT5 encoder directory, e.g. the text_encoder/ folder of "
    "Wan2.1-T2V-1.3B-Diffusers or a local google/umt5-xxl"
)


@dataclass
class WanLayout:
    """A checked checkpoint directory: its kind and the files each component comes from."""

    kind: str
    """``diffusers`` or ``original``."""
    root: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    """original: ``transformer`` (shards), ``config`` ([] or [config.json]), ``vae``,
    ``tokenizer`` (a directory), ``text_encoder`` (a directory, maybe a diffusers one)."""

    def encoder_paths(self) -> list[Path]:
        """What the cached latents and text embeddings depend on (VAE, text encoder,
        tokenizer), for a cache's identity fingerprint in either layout."""
        if self.kind == DIFFUSERS:
            return [self.root / name for name in ("vae", "text_encoder", "tokenizer")]
        return [*self.files["vae"], *self.files["text_encoder"], *self.files["tokenizer"]]

    def describe(self) -> str:
        """``original Wan2.1 layout in DIR`` / ``diffusers WanPipeline directory DIR``."""
        if self.kind == DIFFUSERS:
            return f"diffusers WanPipeline directory {self.root}"
        return f"original Wan2.1 layout in {self.root}"


def detect_layout(
    path: str | os.PathLike[str] | None, text_encoder_dir: str | os.PathLike[str] | None = None
) -> WanLayout:
    """Checks ``path`` holds a complete Wan checkpoint in a known layout; else one
    :class:`SpatialAlignError` naming the missing file and the layout it detected."""
    if path is None:
        raise SpatialAlignError(
            "--model wan needs --model-path DIR (a local Wan directory: diffusers format, "
            "e.g. Wan2.1-T2V-1.3B-Diffusers, or the original Wan2.1 files)"
        )
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SpatialAlignError(f"Wan model directory not found: {root}")
    if (root / "model_index.json").is_file():
        return _diffusers_layout(root)
    if sorted(root.glob(TRANSFORMER_GLOB)):
        return _original_layout(root, text_encoder_dir)
    raise SpatialAlignError(
        f"{root} is not a diffusers pipeline directory (no model_index.json) and not the "
        f"original Wan2.1 layout (no {TRANSFORMER_GLOB})"
    )


def _diffusers_layout(root: Path) -> WanLayout:
    layout = WanLayout(DIFFUSERS, root)
    try:
        index = json.loads((root / "model_index.json").read_text())
    except (OSError, ValueError) as e:
        raise SpatialAlignError(f"{root}/model_index.json is not readable JSON: {e}") from e
    if not isinstance(index, dict):
        raise SpatialAlignError(f"{root}/model_index.json is not a JSON object")
    cls = index.get("_class_name", "")
    if cls and cls != "WanPipeline":
        raise SpatialAlignError(
            f"{layout.describe()}: model_index.json names {cls}, not WanPipeline (a T2V model)"
        )
    for name in PIPELINE_COMPONENTS:
        entry = index.get(name)
        if not isinstance(entry, list) or entry[0] is None:
            raise SpatialAlignError(f"{layout.describe()}: model_index.json lists no {name}")
        folder = root / name
        if not folder.is_dir():
            raise SpatialAlignError(f"{layout.describe()} lacks {name}/")
        if name in WEIGHT_COMPONENTS:
            layout.files[name] = _safetensors_in(folder, layout)
    return layout


def _safetensors_in(folder: Path, layout: WanLayout) -> list[Path]:
    """The safetensors weights of a component folder (pickled .bin/.pt files are refused)."""
    weights = sorted(folder.glob("*.safetensors"))
    if weights:
        return weights
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
    if pickled:
        raise SpatialAlignError(
            f"{layout.describe()}: {folder.name}/ holds only pickled weights ({pickled[0]}); "
            "convert them to safetensors (pickles are never loaded)"
        )
    raise SpatialAlignError(f"{layout.describe()}: {folder.name}/ holds no *.safetensors weights")


def _original_layout(root: Path, text_encoder_dir: str | os.PathLike[str] | None) -> WanLayout:
    layout = WanLayout(ORIGINAL, root)
    layout.files["transformer"] = sorted(root.glob(TRANSFORMER_GLOB))
    layout.files["config"] = [root / "config.json"] if (root / "config.json").is_file() else []
    vae = [root / name for name in ORIGINAL_VAE if (root / name).is_file()]
    if not vae:
        raise SpatialAlignError(f"{layout.describe()} lacks the VAE {ORIGINAL_VAE[1]}")
    layout.files["vae"] = vae[:1]
    te = _text_encoder_dir(root, text_encoder_dir, layout)
    layout.files["text_encoder"] = [te]
    layout.files["tokenizer"] = [_tokenizer_dir(root, te, layout)]
    return layout


def _text_encoder_dir(root: Path, given: str | os.PathLike[str] | None, layout: WanLayout) -> Path:
    if given is not None:
        te = Path(given).expanduser()
        if not te.is_dir():
            raise SpatialAlignError(f"--text-encoder-dir not found: {te}")
        if (te / "text_encoder").is_dir():  # a diffusers Wan directory
            te = te / "text_encoder"
        if not (te / "config.json").is_file():
            raise SpatialAlignError(
                f"--text-encoder-dir {te} has no config.json ({TEXT_ENCODER_HINT})"
            )
        return te
    if (root / "text_encoder" / "config.json").is_file():
        return root / "text_encoder"
    if (root / ORIGINAL_T5).is_file():
        raise SpatialAlignError(
            f"{layout.describe()}: {ORIGINAL_T5} is Wan's own T5 format, which diffusers does "
            f"not convert; pass --text-encoder-dir with {TEXT_ENCODER_HINT}"
        )
    raise SpatialAlignError(
        f"{layout.describe()} lacks a text encoder: put {TEXT_ENCODER_HINT} in text_encoder/ "
        "or pass --text-encoder-dir"
    )


def _tokenizer_dir(root: Path, text_encoder: Path, layout: WanLayout) -> Path:
    candidates = [root / name for name in ORIGINAL_TOKENIZER]
    candidates += [text_encoder.parent / "tokenizer", text_encoder]
    for c in candidates:
        if c.is_dir() and any((c / f).is_file() for f in ("tokenizer.json", "spiece.model")):
            return c
    raise SpatialAlignError(
        f"{layout.describe()} lacks the UMT5 tokenizer ({ORIGINAL_TOKENIZER[0]}/ with "
        "tokenizer.json or spiece.model)"
    )
