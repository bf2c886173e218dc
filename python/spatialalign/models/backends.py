"""Sampling back ends: turn (prompt, seed) batches into uint8 videos.

``toy`` and ``toy-hard`` wrap :class:`spatialalign.models.toy.pipeline.ToyPipeline` (the shipped
toy T2V models: the toy world's and the hard world's); ``wan`` wraps diffusers' ``WanPipeline`` loaded from a local directory. Both can carry a
LoRA adapter in diffusers format (``pytorch_lora_weights.safetensors``, what ``train``
writes). A back end is a small object with the video geometry and one method,
:meth:`Backend.generate`; the sampler does not care which model is behind it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import click
import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import NamedChoice, document_fields
from spatialalign.core.provenance import fingerprint
from spatialalign.lora.adapter import load_lora_into_pipeline, load_lora_into_transformer
from spatialalign.models.registry import DEFAULT_MODEL, MODELS, backend_class, default_steps
from spatialalign.models.wan.runtime import ATTENTION, OFFLOAD

# The negative prompt of the official SpatialAlign inference script (Wan's English one).
WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, "
    "images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, "
    "incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, "
    "misshapen limbs, fused fingers, still picture, messy background, three legs, many people "
    "in the background, walking backwards"
)


class Backend(Protocol):
    """What the sampler needs from a model."""

    model: str
    """Short model name recorded in the manifest (``toy``, ``wan``)."""
    num_frames: int
    height: int
    width: int
    fps: float
    lossless: bool
    """Write lossless RGB video (toy: colours are what its detector reads) or yuv420p."""

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """Videos for ``prompts[i]`` with seed ``seeds[i]``: uint8 ``[B, F, H, W, 3]``."""
        ...

    def settings(self) -> dict[str, Any]:
        """Every sampler setting that changes a video (recorded as its provenance)."""
        ...

    def identity(self) -> str:
        """A fingerprint of the model weights in use (recorded as its provenance)."""
        ...


def _f(default: Any, help_: str, doc: str = "", **meta: Any) -> Any:
    """A field whose ``help`` is its command-line help; ``doc`` says more for the reader."""
    return field(default=default, metadata={"help": help_, "doc": doc, **meta})


_DIR = click.Path(file_okay=False)


@document_fields
@dataclass
class BackendConfig:
    """How to build a back end: the model, its adapter and the sampler settings (``None``
    means the model's default). ``sample`` and ``eval`` derive their model options from
    these fields (:func:`spatialalign.sampling.model_options.model_options`)."""

    model: str = _f(
        DEFAULT_MODEL,
        "Back end: a shipped toy model (toy; toy-hard, the hard world's) or a diffusers "
        "WanPipeline.",
        type=NamedChoice(MODELS, "model"),
    )
    model_path: str | None = _f(
        None,
        "toy: weights directory (default: shipped); wan: a local Wan directory, "
        "diffusers format (model_index.json) or the original Wan2.1 files.",
        "toy, toy-hard: a directory of toy weights (default: the model's shipped ones); wan: "
        "the diffusers "
        "WanPipeline directory (required).",
        flags=("--model-path", "--model-dir"),
        type=click.Path(),
    )
    adapter: str | None = _f(
        None,
        "LoRA: a .safetensors file or a directory with pytorch_lora_weights.safetensors.",
        type=click.Path(),
    )
    steps: int | None = _f(
        None,
        "Denoising steps [toy 20, toy-hard 10, wan 50].",
        type=click.IntRange(min=1),
    )
    guidance: float | None = _f(
        None,
        "Guidance scale, finite and >= 0 [toy 3.0, wan diffusers' default 5.0].",
        "Classifier-free guidance scale.",
    )
    num_frames: int | None = _f(
        None,
        "wan only [81].",
        "Must be 4k+1.",
        type=click.IntRange(min=1),
    )
    height: int | None = _f(
        None,
        "wan only [480].",
        "A multiple of 16.",
        type=click.IntRange(min=16),
    )
    width: int | None = _f(
        None,
        "wan only [832].",
        "A multiple of 16.",
        type=click.IntRange(min=16),
    )
    fps: float | None = _f(
        None,
        "wan only [16].",
        "The toy model has its own.",
        type=click.FloatRange(min=0, min_open=True),
    )
    negative_prompt: str | None = _f(
        None,
        "wan only [the official SpatialAlign negative prompt].",
    )
    max_sequence_length: int = _f(512, "wan only: text tokens (Wan's default 512).")
    device: str | None = _f(
        None,
        "torch device [cuda:LOCAL_RANK if available, else cpu].",
    )
    dtype: str | None = _f(
        None,
        "wan only [bfloat16 on CUDA, float32 on CPU].",
        "The transformer's and text encoder's; the VAE always runs in float32.",
        type=click.Choice(["float32", "bfloat16", "float16"]),
    )
    text_encoder_dir: str | None = _f(
        None,
        "wan, original Wan2.1 layout: a transformers UMT5 encoder directory (diffusers "
        "cannot convert models_t5_umt5-xxl-enc-bf16.pth).",
        type=_DIR,
    )
    vae_tiling: bool = _f(
        False,
        "wan only: the VAE in tiles (bounded memory at any resolution): decoding when "
        "sampling, encoding when training (frames larger than a tile get other latents, so "
        "train's cache re-encodes when this changes).",
        "Recorded in each video's settings and in the cache's fingerprint.",
        flags=("--vae-tiling",),
    )
    vae_slicing: bool = _f(
        False,
        "wan only: decode a batch one video at a time.",
        flags=("--vae-slicing",),
    )
    offload: str = _f(
        "none",
        "wan only, CUDA only: CPU offload for small GPUs (model: one component on the "
        "GPU at a time; sequential: layer by layer, least memory, slowest).",
        type=click.Choice(OFFLOAD),
    )
    attention: str | None = _f(
        None,
        "wan only: attention backend via diffusers' dispatcher [diffusers' default: "
        "sdpa]; flash/flash3/sage/xformers need their package.",
        type=click.Choice(list(ATTENTION)),
    )
    compile: bool = _f(
        False,
        "wan only: torch.compile the transformer blocks (GPU-oriented; the first batch "
        "pays the compile time).",
        flags=("--compile",),
    )


MAX_STEPS = 10_000
WAN_ONLY = (
    "num_frames",
    "height",
    "width",
    "fps",
    "negative_prompt",
    "dtype",
    "text_encoder_dir",
    "vae_tiling",
    "vae_slicing",
    "offload",
    "attention",
    "compile",
)
"""BackendConfig fields the toy model refuses when set."""


def check_config(config: BackendConfig) -> None:
    """Refuses settings no model can use, before anything is loaded (one line each)."""
    if config.steps is not None and not 1 <= config.steps <= MAX_STEPS:
        raise SpatialAlignError(f"--steps must be in 1..{MAX_STEPS}, got {config.steps}")
    for name in ("guidance", "fps"):
        value = getattr(config, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise SpatialAlignError(f"--{name} must be a finite number >= 0, got {value}")
    if config.fps is not None and config.fps == 0:
        raise SpatialAlignError("--fps must be > 0")


def check_device(device: str) -> str:
    """Returns ``device`` when torch can use it here; else one clear error."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise SpatialAlignError(
            f"unknown device {device!r} (use cpu, cuda or cuda:N): {str(e).splitlines()[0]}"
        ) from e
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise SpatialAlignError(f"device {device!r}: CUDA is not available on this machine")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise SpatialAlignError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise SpatialAlignError(f"device {device!r}: MPS is not available on this machine")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise SpatialAlignError(f"unsupported device {device!r} (use cpu, cuda or cuda:N)")
    return device


def default_device(local_rank: int = 0) -> str:
    """``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


class ToyBackend:
    """The toy T2V model (see :mod:`spatialalign.toy`)."""

    model = "toy"
    """The model name (recorded in the manifest; it also picks the shipped weights)."""
    lossless = True

    def __init__(self, pipeline: Any, *, steps: int | None = None, guidance: float = 3.0) -> None:
        self.pipeline = pipeline
        self.steps = default_steps(self.model) if steps is None else steps
        """Denoising steps (None: the model's registry default, toy 20, toy-hard 10)."""
        self.guidance = guidance
        self.num_frames = int(pipeline.num_frames)
        self.height = int(pipeline.height)
        self.width = int(pipeline.width)
        self.fps = float(pipeline.fps)
        self._identity: str | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "guidance": float(self.guidance),
            "num_frames": self.num_frames,
            "height": self.height,
            "width": self.width,
            "fps": self.fps,
        }

    def identity(self) -> str:
        """A hash of every weight (LoRA included): the toy model is small enough to hash."""
        if self._identity is None:
            import hashlib

            h = hashlib.blake2b(digest_size=16)
            for name, tensor in sorted(self.pipeline.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._identity = f"weights:{h.hexdigest()}"
        return self._identity

    @classmethod
    def from_config(cls, config: BackendConfig, *, device: str) -> ToyBackend:
        for name in WAN_ONLY:
            if getattr(config, name) not in (None, False, "none"):
                raise SpatialAlignError(
                    f"--{name.replace('_', '-')} applies to --model wan only "
                    "(the toy model has a fixed clip size and runs in float32)"
                )
        from spatialalign.models.toy.pipeline import ToyPipeline
        from spatialalign.models.toy.shipped import toy_model_dir

        if config.model_path is not None and not Path(config.model_path).exists():
            raise SpatialAlignError(f"toy model path not found: {config.model_path}")
        model_dir = toy_model_dir(cls.model, config.model_path)
        if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # the toy model's ops are tiny: one thread is as fast, and several stall on
            # a busy CPU (measured: 17 min vs 1 min 50 s for the same evaluation)
            import torch

            torch.set_num_threads(1)
        pipeline = ToyPipeline.from_pretrained(model_dir, device=device)
        if config.adapter:
            load_lora_into_transformer(pipeline.transformer, config.adapter)
        return cls(
            pipeline,
            steps=config.steps,
            guidance=3.0 if config.guidance is None else config.guidance,
        )

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        videos = self.pipeline(
            list(prompts),
            list(seeds),
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
        )
        return np.asarray(videos)


class ToyHardBackend(ToyBackend):
    """The hard toy world's model (``--model toy-hard``): the same pipeline class with its
    own shipped weights (12 frames of 16x16); its videos are scored with the ``toy-hard``
    preset."""

    model = "toy-hard"


class WanBackend:
    """diffusers ``WanPipeline`` (Wan2.1-T2V-1.3B or any checkpoint in that format)."""

    model = "wan"
    lossless = False

    def __init__(
        self,
        pipe: Any,
        *,
        num_frames: int = 81,
        height: int = 480,
        width: int = 832,
        steps: int = 50,
        guidance: float | None = None,
        fps: float = 16.0,
        negative_prompt: str = WAN_NEGATIVE_PROMPT,
        max_sequence_length: int = 512,
    ) -> None:
        if num_frames % 4 != 1:
            raise SpatialAlignError(
                f"Wan needs num_frames of the form 4k+1 (e.g. 81), got {num_frames}"
            )
        if height % 16 or width % 16:
            raise SpatialAlignError(
                f"Wan needs height and width divisible by 16, got {height}x{width}"
            )
        self.pipe = pipe
        self.num_frames, self.height, self.width = num_frames, height, width
        self.steps = steps
        self.guidance = guidance
        self.fps = float(fps)
        self.negative_prompt = negative_prompt
        self.max_sequence_length = max_sequence_length
        self.model_path: str | None = None
        """The weights directory (from_config sets it; else the pipeline's own)."""
        self.text_encoder_dir: str | None = None
        """An original-layout run's separate text encoder (part of the identity)."""

    def settings(self) -> dict[str, Any]:
        dtype = getattr(getattr(self.pipe, "transformer", None), "dtype", None)
        return {
            "steps": self.steps,
            "guidance": None if self.guidance is None else float(self.guidance),
            "num_frames": self.num_frames,
            "height": self.height,
            "width": self.width,
            "fps": self.fps,
            "negative_prompt": self.negative_prompt,
            "max_sequence_length": self.max_sequence_length,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
            # tiled decoding changes the pixels; recorded only when on, so videos made
            # before the switch existed keep their records
            **({"vae_tiling": True} if getattr(self.pipe.vae, "use_tiling", False) else {}),
        }

    def identity(self) -> str:
        """The content fingerprint of the weights directory (weights are not rehashed)."""
        path = self.model_path or getattr(getattr(self.pipe, "config", None), "_name_or_path", "")
        ident = fingerprint(path) if path else ""
        if self.text_encoder_dir:  # appended only when used: old records stay current
            ident += f"+te:{fingerprint(self.text_encoder_dir)}"
        return ident

    @classmethod
    def from_config(cls, config: BackendConfig, *, device: str) -> WanBackend:
        from spatialalign.models.wan.runtime import compile_transformer

        pipe = load_wan_pipeline(
            config.model_path,
            device=device,
            dtype=config.dtype,
            text_encoder_dir=config.text_encoder_dir,
            vae_tiling=config.vae_tiling,
            vae_slicing=config.vae_slicing,
            offload=config.offload,
            attention=config.attention,
        )
        if config.adapter:
            load_lora_into_pipeline(pipe, config.adapter)
        if config.compile:
            compile_transformer(pipe.transformer)
        kwargs: dict[str, Any] = {
            "num_frames": config.num_frames,
            "height": config.height,
            "width": config.width,
            "steps": config.steps,
            "guidance": config.guidance,
            "fps": config.fps,
            "negative_prompt": config.negative_prompt,
        }
        backend = cls(
            pipe,
            max_sequence_length=config.max_sequence_length,
            **{k: v for k, v in kwargs.items() if v is not None},
        )
        backend.model_path = str(Path(config.model_path).expanduser().resolve())
        if config.text_encoder_dir:
            backend.text_encoder_dir = str(Path(config.text_encoder_dir).expanduser().resolve())
        return backend

    def generate(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        frames = self.generate_float(prompts, seeds)
        return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def generate_float(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """The decoded frames before quantisation, float32 ``[B, F, H, W, 3]`` in about
        [0, 1]: what ``generate`` rounds to uint8 (compare two code paths on these)."""
        import torch

        # one CPU generator per video: a sample depends on its own seed only
        generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        kwargs: dict[str, Any] = {}
        if self.guidance is not None:
            kwargs["guidance_scale"] = self.guidance
        with torch.inference_mode():
            out = self.pipe(
                prompt=list(prompts),
                negative_prompt=[self.negative_prompt] * len(prompts),
                height=self.height,
                width=self.width,
                num_frames=self.num_frames,
                num_inference_steps=self.steps,
                generator=generators,
                output_type="np",
                max_sequence_length=self.max_sequence_length,
                **kwargs,
            )
        return np.asarray(out.frames, dtype=np.float32)


def load_wan_pipeline(
    model_path: str | os.PathLike[str] | None,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    **options: Any,
) -> Any:
    """Loads a diffusers ``WanPipeline`` from a local directory (diffusers format or the
    original Wan2.1 files), never downloading; ``options`` are the other fields of
    :class:`spatialalign.models.wan.loading.WanLoadOptions` (VAE tiling, offload, attention, ...).

    Any missing directory, config or weight file becomes one :class:`SpatialAlignError`.
    """
    from spatialalign.models.wan.loading import WanLoadOptions
    from spatialalign.models.wan.loading import load_wan_pipeline as load

    return load(model_path, WanLoadOptions(device=device, dtype=dtype, **options))


def load_backend(config: BackendConfig, *, local_rank: int = 0) -> Backend:
    """Builds the back end ``config.model`` names."""
    cls = backend_class(config.model)
    check_config(config)
    device = check_device(config.device) if config.device else default_device(local_rank)
    return cls.from_config(config, device=device)
