"""Sampling back ends: turn (prompt, seed) batches into uint8 videos.

``toy`` wraps :class:`spatialalign.models.toy.pipeline.ToyPipeline` (the shipped toy T2V model);
``wan`` wraps diffusers' ``WanPipeline`` loaded from a local directory. Both can carry a
LoRA adapter in diffusers format (``pytorch_lora_weights.safetensors``, what ``train``
writes). A back end is a small object with the video geometry and one method,
:meth:`Backend.generate`; the sampler does not care which model is behind it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.provenance import fingerprint
from spatialalign.lora.adapter import load_lora_into_pipeline, load_lora_into_transformer

MODELS: tuple[str, ...] = ("toy", "wan")

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


@dataclass
class BackendConfig:
    """How to build a back end (the CLI's model options). ``None`` means the model's default."""

    model: str = "toy"
    model_path: str | None = None
    """toy: a directory of toy weights (default: the shipped ones); wan: the diffusers
    WanPipeline directory (required)."""
    adapter: str | None = None
    """A LoRA: a ``.safetensors`` file or a directory holding ``pytorch_lora_weights.safetensors``."""
    steps: int | None = None
    """Denoising steps (toy 20, wan 50)."""
    guidance: float | None = None
    """Classifier-free guidance scale (toy 3.0, wan diffusers' default 5.0)."""
    num_frames: int | None = None
    """wan only (default 81; must be 4k+1)."""
    height: int | None = None
    """wan only (default 480; a multiple of 16)."""
    width: int | None = None
    """wan only (default 832; a multiple of 16)."""
    fps: float | None = None
    """wan only (default 16); the toy model has its own."""
    negative_prompt: str | None = None
    """wan only (default: the official SpatialAlign negative prompt)."""
    max_sequence_length: int = 512
    """wan only: text tokens (Wan's default 512)."""
    device: str | None = None
    """Default: ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``."""
    dtype: str | None = None
    """wan transformer/text encoder dtype: float32, bfloat16, float16 (default bf16 on CUDA,
    fp32 on CPU); the VAE always runs in float32."""
    text_encoder_dir: str | None = None
    """wan, original Wan2.1 layout only: a transformers UMT5 encoder directory (diffusers
    cannot convert Wan's own ``models_t5_umt5-xxl-enc-bf16.pth``)."""
    vae_tiling: bool = False
    """wan only: tiled VAE decoding (bounded memory; recorded in each video's settings)."""
    vae_slicing: bool = False
    """wan only: decode the videos of a batch one at a time."""
    offload: str = "none"
    """wan only: none, model or sequential CPU offload (CUDA only; for 24 GB GPUs)."""
    attention: str | None = None
    """wan only: attention backend (sdpa, flash, sage, ...; default diffusers' native SDPA)."""
    compile: bool = False
    """wan only: ``torch.compile`` the transformer blocks (GPU-oriented; off by default)."""


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
    lossless = True

    def __init__(self, pipeline: Any, *, steps: int = 20, guidance: float = 3.0) -> None:
        self.pipeline = pipeline
        self.steps = steps
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

        if config.model_path is not None and not Path(config.model_path).exists():
            raise SpatialAlignError(f"toy model path not found: {config.model_path}")
        if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # the toy model's ops are tiny: one thread is as fast, and several stall on
            # a busy CPU (measured: 17 min vs 1 min 50 s for the same evaluation)
            import torch

            torch.set_num_threads(1)
        pipeline = ToyPipeline.from_pretrained(config.model_path, device=device)
        if config.adapter:
            load_lora_into_transformer(pipeline.transformer, config.adapter)
        return cls(
            pipeline,
            steps=20 if config.steps is None else config.steps,
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
    if config.model not in MODELS:
        raise SpatialAlignError(f"unknown model {config.model!r} (choose from {', '.join(MODELS)})")
    check_config(config)
    device = check_device(config.device) if config.device else default_device(local_rank)
    if config.model == "toy":
        return ToyBackend.from_config(config, device=device)
    return WanBackend.from_config(config, device=device)
