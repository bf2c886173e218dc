"""``spatialalign toy …``: pretrain and evaluate the embedded toy T2V model."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from spatialalign.prompts.splits import TOY_SPLIT, WORLD_SPLITS


@click.group("toy")
def toy() -> None:
    """The toy world and its toy T2V model."""


@toy.command("pretrain")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--world",
    type=click.Choice(["toy", "hard"]),
    default="toy",
    show_default=True,
    help="The world to render and its defaults (hard: the toy-hard model's, docs/TOY_MODEL.md).",
)
@click.option("--minutes", type=float, default=None, help="Total wall-clock budget.")
@click.option("--max-steps", type=int, default=None, help="Transformer steps (else: by time).")
@click.option("--codec-minutes", type=float, default=None)
@click.option("--codec-steps", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--mismatch-frac",
    type=float,
    default=None,
    help="Fraction of clips whose final relation differs from their caption.",
)
@click.option(
    "--mismatch-kind",
    type=click.Choice(["third", "opposite"]),
    default=None,
    help="What a mismatched clip shows at the end (see PretrainConfig).",
)
@click.option(
    "--mismatch-keys-frac",
    type=float,
    default=None,
    help="Fraction of (animal, final relation) combinations with unreliable captions.",
)
@click.option("--clips-per-prompt", type=int, default=None)
@click.option("--train-prompts", "n_train", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option(
    "--patch-size",
    type=(int, int, int),
    default=None,
    help="The transformer's patch (frames rows columns of the latent), e.g. 2 2 2.",
)
@click.option("--num-layers", type=int, default=None, help="The transformer's blocks.")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
def pretrain_cmd(
    out_dir: Path,
    world: str,
    minutes: float | None,
    max_steps: int | None,
    codec_minutes: float | None,
    codec_steps: int | None,
    seed: int,
    mismatch_frac: float | None,
    mismatch_kind: str | None,
    mismatch_keys_frac: float | None,
    clips_per_prompt: int | None,
    n_train: int | None,
    batch_size: int | None,
    patch_size: tuple[int, int, int] | None,
    num_layers: int | None,
    threads: int | None,
) -> None:
    """Train the toy codec and transformer from scratch into OUT_DIR (resumable).

    The model lands in OUT_DIR/model (config.json + model.safetensors).
    """
    from spatialalign.toy.pretrain import pretrain, pretrain_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = {
        "seed": seed,
        "minutes": minutes,
        "max_steps": max_steps,
        "codec_minutes": codec_minutes,
        "codec_steps": codec_steps,
        "mismatch_frac": mismatch_frac,
        "mismatch_kind": mismatch_kind,
        "mismatch_keys_frac": mismatch_keys_frac,
        "clips_per_prompt": clips_per_prompt,
        "n_train_prompts": n_train,
        "batch_size": batch_size,
        "threads": threads,
    }
    cfg = pretrain_config(world, patch_size=patch_size, num_layers=num_layers, **overrides)
    pipe = pretrain(out_dir, cfg)
    meta = pipe.metadata
    click.echo(
        f"pretrained toy model: {meta['steps']} transformer steps in "
        f"{meta['train_minutes']:.1f} min -> {out_dir / 'model'}"
    )


@toy.command("evaluate")
@click.option(
    "--world",
    type=click.Choice(list(WORLD_SPLITS)),
    default="toy",
    show_default=True,
    help="The toy world: its model (toy; hard: toy-hard), its split's TEST prompts, its "
    "validity preset and its renderer for --rendered.",
)
@click.option(
    "--model",
    "--model-dir",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Toy model directory (default: the world's model's weights shipped in the package).",
)
@click.option(
    "--adapter",
    type=click.Path(path_type=Path),
    default=None,
    help="A LoRA (diffusers format: file or directory) to load into the model first.",
)
@click.option("--seeds", type=int, default=5, show_default=True, help="Seeds 0..N-1 per prompt.")
@click.option("--test-prompts", "n_test", type=int, default=None,
              help=f"TEST prompts of the world's split.  [default: {TOY_SPLIT.n_test}]")  # fmt: skip
@click.option("--steps", type=int, default=None,
              help="Denoising steps [the world's model's: toy 20, hard 10].")  # fmt: skip
@click.option("--guidance", type=float, default=3.0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the summary (JSON, score-batch's summary.json keys + the toy extras) here.",
)
@click.option("--rendered", is_flag=True, help="Judge rendered clips instead (the ceiling).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option(
    "--figure",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw one generated clip beside its rendered counterpart per DSR type (PNG).",
)
def evaluate_cmd(
    world: str,
    model_dir: Path | None,
    adapter: Path | None,
    seeds: int,
    n_test: int | None,
    steps: int | None,
    guidance: float,
    out: Path | None,
    rendered: bool,
    threads: int | None,
    figure: Path | None,
) -> None:
    """Sample generated TEST prompts x seeds and measure DSR prompt following (--world hard:
    the toy-hard model on the hard split's TEST prompts, preset toy-hard)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from spatialalign.core.fileio import write_json
    from spatialalign.toy.evaluate import (
        ToyEvalConfig,
        eval_prompts,
        evaluate_pipeline,
        evaluate_rendered,
        summary_line,
    )

    cfg = ToyEvalConfig(
        world=world,
        n_test=n_test,
        seeds=tuple(range(seeds)),
        num_inference_steps=steps,
        guidance_scale=guidance,
    )
    prompts = eval_prompts(cfg)
    if rendered and adapter is not None:
        raise click.BadParameter("--rendered judges rendered clips: no model to adapt")
    if rendered:
        summary, _ = evaluate_rendered(prompts, cfg)
    else:
        from spatialalign.models.registry import world_model
        from spatialalign.models.toy.pipeline import ToyPipeline
        from spatialalign.models.toy.shipped import toy_model_dir

        pipe = ToyPipeline.from_pretrained(toy_model_dir(world_model(world), model_dir))
        if adapter is not None:
            pipe.load_lora_weights(adapter)
        summary, _ = evaluate_pipeline(pipe, prompts, cfg)
        if figure is not None:
            from spatialalign.toy.evaluate import comparison_figure

            comparison_figure(pipe, prompts, figure, cfg)
    if out is not None:
        # score-batch's summary.json ("config" is the scoring preset) + what was sampled
        write_json({**summary, "eval_config": {**cfg.__dict__, "seeds": list(cfg.seeds)}}, out)
    click.echo(summary_line(summary))
