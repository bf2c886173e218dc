"""``train`` on a run directory: pairs (+ scores) -> cache -> LoRA in ``RUN/run/``.

Reads ``pairs.parquet`` (which prompts and which winner/loser samples), for ``sft``/``rwr``
the valid scored samples of those prompts from ``scores.parquet``, the manifest (sample ->
video) and the prompts (prompt -> text) through :class:`spatialalign.rundir.layout.RunDir`;
encodes what the cache lacks (main process only) and trains.

``--model wan`` is laid out for a 24 GB GPU: the pipeline loads on the CPU (in the dtype
the device gets: bf16 on CUDA); the text encoder, then the VAE, move to the device only
while they encode (one at a time); both are freed before the transformer moves to the
device for training. Gradient checkpointing is on by default for Wan (off for the toy
model): :func:`resolve_checkpointing`.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_parquet
from spatialalign.core.ids import MAX_SAMPLE_ID_LENGTH, check_id
from spatialalign.core.schemas import validate_table
from spatialalign.models.registry import MODELS, is_toy
from spatialalign.parallel.ranks import env_rank_world
from spatialalign.rundir.layout import RunDir
from spatialalign.training.cache import CacheReport, build_cache, load_cache
from spatialalign.training.config import TrainConfig
from spatialalign.training.data import Pair, Sample, TrainData, top_k_samples
from spatialalign.training.losses import is_pair_variant
from spatialalign.training.trainer import TrainResult, check_rank, make_accelerator, train


@dataclass
class TrainRun:
    """What :func:`train_run` did: the cache report and the training result."""

    cache: CacheReport
    result: TrainResult
    n_items: int
    n_prompts: int
    warnings: list[str] = field(default_factory=list)
    reused: bool = False
    """The run directory already held this run, finished: nothing was trained."""


def stale_pairs(run: RunDir) -> str | None:
    """Why ``pairs.parquet`` does not come from the run's current ``scores.parquet`` (None
    when it does, or when there are no scores to compare with): its provenance record names
    the fingerprint of the scores it was built from; a file without a record (made by hand)
    is stale when it is older than the scores."""
    from spatialalign.core.provenance import fingerprint, record_of

    if not run.scores_path.is_file() or not run.pairs_path.is_file():
        return None
    record = record_of(run.pairs_path) or {}
    if "scores" in record:
        if record["scores"] == fingerprint(run.scores_path):
            return None
        why = "was built from other scores than"
    elif run.pairs_path.stat().st_mtime_ns < run.scores_path.stat().st_mtime_ns:
        why = "is older than"
    else:
        return None
    return f"{run.pairs_path} {why} {run.scores_path}: rerun `spatialalign pairs {run.root}` first"


def stale_scores(run: RunDir) -> str | None:
    """Why the run's ``scores.parquet`` (which its pairs come from) is older than its tracks
    or manifest (``pairs``' own check, :func:`spatialalign.pairs.run.stale_scores`), as the
    one-line error naming the stages to rerun; None when current or not judged."""
    from spatialalign.pairs.run import stale_scores as pairs_check

    if not run.scores_path.is_file():
        return None
    why = pairs_check(run, run.read_scores())
    return None if why is None else f"{why}, then `spatialalign pairs {run.root}`"


def record_inputs(run: RunDir, inputs: dict[str, str], resume: bool) -> None:
    """Writes ``inputs.json`` for a new run; a resumed run must train on the same inputs
    (else the data stream, and so the result, would silently change)."""
    from spatialalign.core.fileio import read_json, write_json

    path = run.train.inputs_path
    if run.train.checkpoint_paths():
        if not resume:
            return  # the trainer refuses to overwrite a run
        old = read_json(path) if path.is_file() else None
        changed = sorted(k for k in inputs if old and k in old and old[k] != inputs[k])
        if changed:
            raise SpatialAlignError(
                f"cannot resume {run.train_dir}: {', '.join(changed)} changed since the run "
                "started (train into a new run directory)"
            )
        if old is not None:
            return
    write_json(inputs, path)


def finished_same_run(run: RunDir, cfg: TrainConfig, inputs: dict[str, str]) -> bool:
    """True when ``run/`` holds a finished run of exactly ``cfg`` on ``inputs`` with its
    adapter, so that a plain rerun reuses it as every other stage reuses finished work
    (another configuration or changed inputs still refuse: a new directory, or --resume)."""
    from spatialalign.core.fileio import read_json
    from spatialalign.training.trainer import GLOBAL_BATCH, RECIPE_KEY, read_config
    from spatialalign.trainlib.checkpoint import checkpoint_meta

    d = run.train
    paths = d.checkpoint_paths()
    files = (d.adapter_path, d.config_path, d.inputs_path)
    if cfg.resume or not paths or not all(f.is_file() for f in files):
        return False
    label = ("resume", GLOBAL_BATCH, RECIPE_KEY)
    old = {k: v for k, v in read_config(d.config_path).items() if k not in label}
    new = {k: v for k, v in cfg.to_dict().items() if k != "resume"}
    if old != new or read_json(d.inputs_path) != inputs:
        return False
    return int(checkpoint_meta(paths[-1]).get("step", -1)) >= cfg.max_steps


def read_pairs(run: RunDir) -> list[Pair]:
    """``pairs.parquet`` as :class:`Pair` rows (ids checked); a clear error without pairs."""
    path = run.pairs_path
    if not path.is_file():
        raise SpatialAlignError(f"no pairs in {run.root} (run `spatialalign pairs {run.root}`)")
    table = validate_table(read_parquet(path, "pairs"), "pairs", path)
    pairs = []
    for r in table.select(["prompt_id", "winner", "loser"]).to_pylist():
        check_id(r["prompt_id"], "prompt_id", str(path))
        for key in ("winner", "loser"):
            check_id(r[key], key, str(path), max_length=MAX_SAMPLE_ID_LENGTH)
        pairs.append(Pair(r["prompt_id"], r["winner"], r["loser"]))
    if not pairs:
        raise SpatialAlignError(f"{path} holds no pairs (no prompt had a winner and a loser)")
    return pairs


def read_samples(run: RunDir, prompt_ids: set[str]) -> list[Sample]:
    """The valid scored samples of ``prompt_ids`` with their DSR as reward."""
    if not run.scores_path.is_file():
        raise SpatialAlignError(f"no scores in {run.root} (run `spatialalign score-batch`)")
    rows = run.read_scores().select(["sample_id", "prompt_id", "valid", "dsr"]).to_pylist()
    out = [
        Sample(r["prompt_id"], r["sample_id"], float(r["dsr"]))
        for r in rows
        if r["valid"] and r["dsr"] is not None and not math.isnan(r["dsr"])
        if r["prompt_id"] in prompt_ids
    ]
    if not out:
        raise SpatialAlignError(f"no valid scored samples of the paired prompts in {run.root}")
    return out


def load_model(
    model: str,
    model_path: str | os.PathLike[str] | None,
    device: Any,
    *,
    dtype: str | None = None,
    text_encoder_dir: str | os.PathLike[str] | None = None,
    vae_tiling: bool = False,
) -> Any:
    """The pipeline to train (its transformer) and to encode the cache with; a wrong or
    missing model directory is a :class:`SpatialAlignError`. ``dtype``,
    ``text_encoder_dir`` (original Wan2.1 layout) and ``vae_tiling`` are Wan loader
    options (:class:`spatialalign.models.wan.WanLoadOptions`); the toy model refuses them."""
    if is_toy(model):
        if dtype is not None or text_encoder_dir is not None or vae_tiling:
            raise SpatialAlignError("--text-encoder-dir and --vae-tiling apply to --model wan only")
        from spatialalign.models.toy.pipeline import ToyPipeline
        from spatialalign.models.toy.shipped import toy_model_dir

        return ToyPipeline.from_pretrained(toy_model_dir(model, model_path), device=str(device))
    if model == "wan":
        from spatialalign.models.backends import load_wan_pipeline

        return load_wan_pipeline(
            model_path,
            device=str(device),
            dtype=dtype,
            text_encoder_dir=None if text_encoder_dir is None else str(text_encoder_dir),
            vae_tiling=vae_tiling,
        )
    raise SpatialAlignError(f"unknown model {model!r} ({', '.join(MODELS)})")


def wan_encoder_identity(
    model_path: str | os.PathLike[str] | None,
    text_encoder_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The content fingerprints of what a Wan cache is encoded with (VAE, text encoder,
    tokenizer), in either checkpoint layout: a diffusers directory's ``vae/``,
    ``text_encoder/``, ``tokenizer/`` (the identity existing caches were made with), or
    the original layout's ``Wan2.1_VAE.*`` file and its UMT5 encoder and tokenizer
    directories (``text_encoder_dir`` or beside the files)."""
    from spatialalign.core.provenance import fingerprint
    from spatialalign.models.wan import detect_layout

    paths = detect_layout(model_path, text_encoder_dir).encoder_paths()
    return ",".join(fingerprint(p) for p in paths)


def cache_backend(
    model: str,
    pipe: Any,
    model_path: str | os.PathLike[str] | None,
    text_encoder_dir: str | os.PathLike[str] | None = None,
    *,
    device: Any = None,
) -> Any:
    """The cache back end of ``pipe``, identified by its encoders' content fingerprints
    (Wan: plus ``--vae-tiling``'s tile geometry when on); a Wan back end with ``device``
    moves each encoder there only while it encodes."""
    from spatialalign.training.cache import ToyCacheBackend, WanCacheBackend

    if is_toy(model):
        from spatialalign.core.provenance import fingerprint
        from spatialalign.models.toy.shipped import toy_model_dir

        return ToyCacheBackend(pipe, fingerprint(toy_model_dir(model, model_path or None)))
    identity = wan_encoder_identity(model_path, text_encoder_dir)
    return WanCacheBackend(pipe, identity, device=device)


def resolve_checkpointing(model: str, cfg: TrainConfig, requested: bool | None = None) -> bool:
    """Whether training recomputes activations: ``requested`` when given (``train
    --gradient-checkpointing/--no-gradient-checkpointing``); else on when the config says
    so or the model is Wan (the default: a full-size pair step needs it to fit in 24 GB),
    off for the toy model."""
    if requested is not None:
        return bool(requested)
    return bool(cfg.gradient_checkpointing) or model == "wan"


def train_dtype(device: Any) -> str | None:
    """The Wan weights' dtype for training on ``device`` (what loading there would pick:
    bf16 on CUDA, the loader's default elsewhere), given while loading on the CPU."""
    import torch

    return "bfloat16" if torch.device(device).type == "cuda" else None


def train_run(
    run_dir: str | os.PathLike[str],
    cfg: TrainConfig,
    *,
    model: str = "toy",
    model_path: str | os.PathLike[str] | None = None,
    encode: bool = True,
    progress: bool = True,
    text_encoder_dir: str | os.PathLike[str] | None = None,
    vae_tiling: bool = False,
    gradient_checkpointing: bool | None = None,
    recipe: str | None = None,
) -> TrainRun:
    """Caches what the run's pairs need and trains ``cfg`` into ``RUN_DIR/run``.

    ``text_encoder_dir`` and ``vae_tiling`` go to the Wan loader (the tiling is part of the
    cache identity: it changes the latents). ``gradient_checkpointing`` None means the
    model's default (:func:`resolve_checkpointing`: on for Wan, the config's for toy);
    ``train_config.json`` records what was used, and the name of the ``recipe`` ``cfg`` was
    resolved from (:func:`spatialalign.training.config.resolve_recipe`) when given."""
    cfg.validate()
    ckpt = resolve_checkpointing(model, cfg, gradient_checkpointing)
    if ckpt != cfg.gradient_checkpointing:
        cfg = replace(cfg, gradient_checkpointing=ckpt)
    run = RunDir(run_dir).require()
    rank, _ = env_rank_world()
    # one train per run directory: the main process holds the run's lock (torchrun's other
    # ranks are its own; a second train fails at once)
    with run.lock("train") if rank == 0 else contextlib.nullcontext():
        return _train_locked(
            run,
            cfg,
            model=model,
            model_path=model_path,
            encode=encode,
            progress=progress,
            text_encoder_dir=text_encoder_dir,
            vae_tiling=vae_tiling,
            recipe=recipe,
        )


def _train_locked(
    run: RunDir,
    cfg: TrainConfig,
    *,
    model: str,
    model_path: str | os.PathLike[str] | None,
    encode: bool,
    progress: bool,
    text_encoder_dir: str | os.PathLike[str] | None,
    vae_tiling: bool,
    recipe: str | None = None,
) -> TrainRun:
    stale = stale_pairs(run) or stale_scores(run)
    if stale:
        raise SpatialAlignError(stale)
    pairs = read_pairs(run)
    prompt_ids = {p.prompt_id for p in pairs}
    samples: list[Sample] = []
    if not is_pair_variant(cfg.loss):
        samples = read_samples(run, prompt_ids)
        if cfg.loss == "sft":
            samples = top_k_samples(samples, cfg.sft_top_k)
    sample_ids = sorted({s for p in pairs for s in (p.winner, p.loser)} | {
        s.sample_id for s in samples
    })  # fmt: skip
    warnings: list[str] = []
    acc = make_accelerator(cfg)
    wan = model == "wan"
    if wan:  # on the CPU first: the GPU never holds the encoders and the transformer at once
        pipe = load_model(model, model_path, "cpu", dtype=train_dtype(acc.device),
                          text_encoder_dir=text_encoder_dir, vae_tiling=vae_tiling)  # fmt: skip
    else:
        pipe = load_model(model, model_path, acc.device, text_encoder_dir=text_encoder_dir,
                          vae_tiling=vae_tiling)  # fmt: skip
    check_rank(pipe.transformer, cfg.lora_rank)  # before encoding anything
    backend = cache_backend(model, pipe, model_path, text_encoder_dir,
                            device=acc.device if wan else None)  # fmt: skip
    report = CacheReport()
    inputs = _inputs(run, cfg, backend.identity)
    reused = finished_same_run(run, cfg, inputs)
    if reused:  # resuming a finished run trains no step and keeps its adapter file
        cfg = replace(cfg, resume=True)
    if acc.is_main_process:
        record_inputs(run, inputs, cfg.resume)
        if encode:
            report = build_cache(
                run.cache_dir,
                _videos(run, sample_ids),
                _prompt_texts(run, prompt_ids),
                backend,
                progress=progress,
            )
    _free_encoders(pipe, release=wan)
    acc.wait_for_everyone()
    latents, text = _load(run, sample_ids, sorted(prompt_ids), encode)
    if wan:
        pipe.transformer.to(acc.device)
    data = TrainData(latents, text, pairs, samples)
    result = train(pipe.transformer, data, cfg, run.train_dir, accelerator=acc, progress=progress,
                   recipe=recipe)  # fmt: skip
    n_items = len(pairs) if is_pair_variant(cfg.loss) else len(samples)
    return TrainRun(report, result, n_items, len(prompt_ids), warnings, reused=reused)


def _inputs(run: RunDir, cfg: TrainConfig, model_identity: str) -> dict[str, str]:
    from spatialalign.core.provenance import fingerprint

    inputs = {"pairs": fingerprint(run.pairs_path), "model": model_identity}
    if not is_pair_variant(cfg.loss):
        inputs["scores"] = fingerprint(run.scores_path)
    return inputs


def _videos(run: RunDir, sample_ids: list[str]) -> list[tuple[str, Path]]:
    manifest = run.read_manifest(["path"])
    where = dict(zip(manifest.column("sample_id").to_pylist(), manifest.column("path").to_pylist(),
                     strict=True))  # fmt: skip
    missing = [s for s in sample_ids if not where.get(s)]
    if missing:
        raise SpatialAlignError(
            f"{len(missing)} paired sample(s) not in {run.manifest_path}, e.g. {missing[0]!r}"
        )
    return [(s, Path(where[s])) for s in sample_ids]


def _prompt_texts(run: RunDir, prompt_ids: set[str]) -> list[tuple[str, str]]:
    texts = {p.prompt_id: p.text for p in run.read_prompts()}
    missing = sorted(prompt_ids - set(texts))
    if missing:
        raise SpatialAlignError(
            f"{len(missing)} paired prompt(s) not in {run.prompts_path}, e.g. {missing[0]!r}"
        )
    return [(pid, texts[pid]) for pid in sorted(prompt_ids)]


def _load(
    run: RunDir, sample_ids: list[str], prompt_ids: list[str], encoded: bool
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    try:
        return load_cache(run.cache_dir, sample_ids, prompt_ids)
    except SpatialAlignError as e:
        hint = "" if encoded else " (run without --no-encode to encode it)"
        raise SpatialAlignError(f"{e}{hint}") from e


def _free_encoders(pipe: Any, release: bool = False) -> None:
    """Training reads the cache only: drop the VAE and text encoder (Wan: gigabytes);
    ``release`` also collects them and returns CUDA's cached blocks, before the
    transformer moves to the GPU."""
    for name in ("vae", "text_encoder"):
        if hasattr(pipe, name):
            setattr(pipe, name, None)
    if release:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
