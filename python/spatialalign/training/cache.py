"""Encode every training video to latents and every prompt to text embeddings, once.

The trainer never runs the VAE or the text encoder: :func:`build_cache` stores each
sample's normalised latents ``[C, F, h, w]`` and each prompt's embedding ``[L, D]`` as
safetensors under the cache directory, with ``index.json`` recording what each came from
(the video's size, mtime and content hash; the prompt text's hash; the encoder's
identity). A rerun encodes exactly the items that are new or whose source changed, and
says how many and why. Back ends: :class:`ToyCacheBackend` (toy codec + text encoder) and
:class:`WanCacheBackend` (Wan VAE with its latent normalisation, ``encode_prompt``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_json, write_json
from spatialalign.core.ids import MAX_SAMPLE_ID_LENGTH, check_id
from spatialalign.core.provenance import MISSING, StampedFingerprint
from spatialalign.rundir.train import CacheDir

FORMAT = "spatialalign-cache/1"
LATENTS = "latents"
TEXT = "text"
"""The cache's two kinds of items: index sections, and directories (:class:`CacheDir`)."""


class CacheBackend(Protocol):
    """What the cache needs from a model: an identity and its two encoders."""

    identity: str
    """Changes whenever the encoders' weights or settings change (all items re-encode)."""

    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """uint8 ``[F, H, W, 3]`` clips -> normalised latents ``[C, F', h, w]`` each."""
        ...

    def encode_prompts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Prompt texts -> ``encoder_hidden_states`` ``[L, D]`` each."""
        ...


class ToyCacheBackend:
    """The toy model: its codec (normalised latents, as ``ToyPipeline`` decodes them) and
    its slot-token text encoder."""

    def __init__(self, pipe: Any, identity: str) -> None:
        self.pipe = pipe
        self.identity = f"toy:{identity}"

    @torch.no_grad()
    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
        want = (self.pipe.num_frames, self.pipe.height, self.pipe.width, 3)
        for v in videos:
            if tuple(v.shape) != want:
                raise SpatialAlignError(
                    f"video of shape {tuple(v.shape)} does not fit the toy model {want}"
                )
        z = self.pipe.vae.encode_frames(np.stack(videos))
        return [t.cpu().contiguous() for t in z]

    @torch.no_grad()
    def encode_prompts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return [t.cpu().contiguous() for t in self.pipe.encode_prompt(list(texts))]


class WanCacheBackend:
    """A diffusers ``WanPipeline``: text as ``encode_prompt`` gives it (UMT5, padding
    zeroed, ``max_sequence_length`` tokens), latents as ``AutoencoderKLWan`` encodes them
    (distribution mode), normalised with the VAE's ``latents_mean``/``latents_std`` exactly
    inverse to the pipeline's decoding.

    The identity is ``identity`` (the encoders' fingerprints) plus the sequence length and,
    when the VAE encodes in tiles (``--vae-tiling``: other latents for frames larger than a
    tile), the tile geometry; without tiling it is what it was before the switch existed,
    so existing caches stay current."""

    def __init__(
        self,
        pipe: Any,
        identity: str,
        max_sequence_length: int = 512,
        *,
        device: str | torch.device | None = None,
    ) -> None:
        self.pipe = pipe
        self.identity = f"wan:{identity}:{max_sequence_length}" + vae_tiling_tag(pipe.vae)
        self.max_sequence_length = max_sequence_length
        self.device = device
        """Where to encode (None: where the encoders are). Set, each encoder moves there
        when first needed and the other one back to the CPU, so the GPU holds one encoder
        at a time (UMT5-XXL alone is ~11 GB in bf16) and never the transformer."""

    def _use(self, name: str) -> Any:
        """The pipeline's ``name`` encoder on :attr:`device` (the other one moved off)."""
        module = getattr(self.pipe, name)
        if self.device is None:
            return module
        other = getattr(self.pipe, "vae" if name == "text_encoder" else "text_encoder", None)
        if other is not None and other.device != torch.device("cpu"):
            other.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return module.to(self.device)

    @torch.no_grad()
    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
        vae = self._use("vae")
        cfg = vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
        std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)
        out = []
        for v in videos:
            x = torch.from_numpy(np.ascontiguousarray(v)).permute(3, 0, 1, 2)[None]
            x = x.to(vae.device, vae.dtype).div(127.5).sub(1.0)
            z = vae.encode(x).latent_dist.mode().float().cpu()
            out.append(((z - mean) / std)[0].contiguous())
        return out

    @torch.no_grad()
    def encode_prompts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        text_encoder = self._use("text_encoder")
        emb, _ = self.pipe.encode_prompt(
            prompt=list(texts),
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
            device=text_encoder.device,
        )
        return [t.cpu().contiguous() for t in emb]


def vae_tiling_tag(vae: Any) -> str:
    """``:tiling=HxW/HxW`` (tile size / stride in pixels) when ``vae`` encodes in tiles, else
    ``""``: tiled encoding gives other latents than whole-frame encoding."""
    if vae is None or not getattr(vae, "use_tiling", False):
        return ""
    size = [getattr(vae, f"tile_sample_min_{d}", "?") for d in ("height", "width")]
    stride = [getattr(vae, f"tile_sample_stride_{d}", "?") for d in ("height", "width")]
    return f":tiling={size[0]}x{size[1]}/{stride[0]}x{stride[1]}"


@dataclass
class CacheReport:
    """What :func:`build_cache` did: counts per kind and why items were (re-)encoded."""

    latents_encoded: int = 0
    latents_reused: int = 0
    text_encoded: int = 0
    text_reused: int = 0
    reasons: Counter = field(default_factory=Counter)

    def line(self) -> str:
        why = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items()))
        return (
            f"cache: {self.latents_encoded} videos and {self.text_encoded} prompts encoded, "
            f"{self.latents_reused} and {self.text_reused} reused" + (f" ({why})" if why else "")
        )


def text_fingerprint(text: str) -> str:
    """What a prompt's cached embedding was made from."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _empty_index(identity: str) -> dict:
    return {"format": FORMAT, "backend": identity, LATENTS: {}, TEXT: {}}


def read_index(cache_dir: str | os.PathLike[str]) -> dict:
    """The cache's index (an empty one when there is no cache yet)."""
    path = CacheDir(cache_dir).index_path
    if not path.is_file():
        return _empty_index("")
    index = read_json(path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SpatialAlignError(f"{path} is not a SpatialAlign cache index")
    return index


def _save_tensor(path: Path, tensor: torch.Tensor) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({"data": tensor.contiguous()}, str(tmp))


def _stale(old_source: Any, new_source: Any, path: Path, identity_changed: bool) -> str | None:
    """Why an item must be (re-)encoded, or None when its cached tensor is current."""
    if old_source is None or not path.is_file():
        return "new"
    if identity_changed:
        return "model changed"
    if old_source != new_source:
        return "source changed"
    return None


def build_cache(
    cache_dir: str | os.PathLike[str],
    videos: Sequence[tuple[str, str | os.PathLike[str]]],
    prompts: Sequence[tuple[str, str]],
    backend: CacheBackend,
    *,
    batch_size: int = 16,
    read_video: Callable[[Path], np.ndarray] | None = None,
    progress: bool = True,
) -> CacheReport:
    """Encodes the (sample_id, video path) and (prompt_id, text) items that are new or
    changed into ``cache_dir``; the index is saved after every batch, so a killed run
    resumes. Raises :class:`SpatialAlignError` for a missing or unreadable video."""
    from tqdm import tqdm

    if read_video is None:
        from spatialalign.core.video import read_video as _read

        read_video = _read
    root = Path(cache_dir)
    cache = CacheDir(root)
    index = read_index(root)
    identity_changed = index["backend"] != backend.identity
    index["backend"] = backend.identity
    report = CacheReport()

    todo_v: list[tuple[str, Path, dict]] = []
    for sid, vpath in videos:
        check_id(sid, "sample_id", max_length=MAX_SAMPLE_ID_LENGTH)
        known = StampedFingerprint.from_dict(index[LATENTS].get(sid, {}).get("source"))
        stamp = StampedFingerprint.of(vpath, known)
        if stamp.fingerprint == MISSING:
            raise SpatialAlignError(f"video of sample {sid!r} not found: {vpath}")
        old = known.fingerprint if known is not None else None
        path = cache.item_path(LATENTS, sid)
        why = _stale(old, stamp.fingerprint, path, identity_changed)  # content, not mtime
        if why is None:
            report.latents_reused += 1
            index[LATENTS][sid]["source"] = stamp.to_dict()  # a touched file: new stat
        else:
            report.reasons[why] += 1
            todo_v.append((sid, Path(vpath), stamp.to_dict()))
    todo_t = []
    for pid, text in prompts:
        check_id(pid, "prompt_id")
        fp = text_fingerprint(text)
        old = index[TEXT].get(pid, {}).get("source")
        why = _stale(old, fp, cache.item_path(TEXT, pid), identity_changed)
        if why is None:
            report.text_reused += 1
        else:
            report.reasons[why] += 1
            todo_t.append((pid, text, fp))

    bar = tqdm(total=len(todo_v) + len(todo_t), desc="cache", disable=not progress)
    for i in range(0, len(todo_t), batch_size):
        chunk = todo_t[i : i + batch_size]
        for (pid, _, fp), emb in zip(chunk, backend.encode_prompts([t for _, t, _ in chunk]),
                                     strict=True):  # fmt: skip
            _save_tensor(cache.item_path(TEXT, pid), emb)
            index[TEXT][pid] = {"source": fp, "shape": list(emb.shape)}
        write_json(index, cache.index_path)
        report.text_encoded += len(chunk)
        bar.update(len(chunk))
    for i in range(0, len(todo_v), batch_size):
        chunk = todo_v[i : i + batch_size]
        clips = [read_video(p) for _, p, _ in chunk]
        for (sid, _, src), lat in zip(chunk, backend.encode_videos(clips), strict=True):
            _save_tensor(cache.item_path(LATENTS, sid), lat)
            index[LATENTS][sid] = {"source": src, "shape": list(lat.shape)}
        write_json(index, cache.index_path)
        report.latents_encoded += len(chunk)
        bar.update(len(chunk))
    bar.close()
    write_json(index, cache.index_path)
    return report


def load_cache(
    cache_dir: str | os.PathLike[str], sample_ids: Sequence[str], prompt_ids: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The cached latents of ``sample_ids`` and text embeddings of ``prompt_ids``; one
    :class:`SpatialAlignError` naming the first item that is not cached."""
    from safetensors.torch import load_file

    root = Path(cache_dir)
    cache = CacheDir(root)
    index = read_index(root)

    def load(kind: str, ids: Sequence[str], what: str) -> dict[str, torch.Tensor]:
        out = {}
        for item_id in dict.fromkeys(ids):
            path = cache.item_path(kind, item_id)
            if item_id not in index[kind] or not path.is_file():
                raise SpatialAlignError(f"{what} {item_id!r} is not in the cache {root}")
            out[item_id] = load_file(str(path))["data"]
        return out

    return load(LATENTS, sample_ids, "sample"), load(TEXT, prompt_ids, "prompt")
