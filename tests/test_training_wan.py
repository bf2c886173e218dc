"""``train --model wan``'s trainer hooks on a tiny random WanPipeline (CPU, nothing
downloaded): gradient checkpointing on by default (off for toy), the loader options
``--text-encoder-dir``/``--vae-tiling``, the cache identity in either checkpoint layout,
and the 24 GB layout (encoders used and freed before the transformer moves)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch

pytest.importorskip("peft")

from shared_data import OFFICIAL_CSV  # noqa: E402
from spatialalign.cli import main  # noqa: E402
from spatialalign.core.fileio import read_json, write_parquet  # noqa: E402
from spatialalign.core.provenance import fingerprint  # noqa: E402
from spatialalign.core.schemas import PAIRS  # noqa: E402
from spatialalign.prompts import read_prompts, write_prompts  # noqa: E402
from spatialalign.rundir.layout import RunDir  # noqa: E402
from spatialalign.training import run as run_mod  # noqa: E402
from spatialalign.training import trainer  # noqa: E402
from spatialalign.training.cache import WanCacheBackend, read_index  # noqa: E402
from spatialalign.training.config import TrainConfig  # noqa: E402
from test_sampling_wan import build_tiny_wan  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--max-steps", "1", "--train-batch-size", "2", "--lr-warmup-steps", "0",
        "--checkpoint-every", "0", "-q"]  # fmt: skip
CFG = TrainConfig(max_steps=1, train_batch_size=2, lr_warmup_steps=0, checkpoint_every=0)


def _pair_seed0_over_seed1(run: RunDir) -> None:
    by_prompt: dict[str, dict[int, str]] = {}
    for r in run.read_manifest().select(["sample_id", "prompt_id", "seed"]).to_pylist():
        by_prompt.setdefault(r["prompt_id"], {})[r["seed"]] = r["sample_id"]
    pids = sorted(by_prompt)
    table = {
        "prompt_id": pids,
        "winner": [by_prompt[p][0] for p in pids],
        "loser": [by_prompt[p][1] for p in pids],
    }
    write_parquet(pa.Table.from_pydict(table, schema=PAIRS), run.pairs_path)


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory) -> Path:
    prompts = read_prompts(OFFICIAL_CSV)[:2]
    return build_tiny_wan(tmp_path_factory.mktemp("wan") / "tiny-wan", prompts)


@pytest.fixture(scope="module")
def wan_run(tmp_path_factory, wan_dir) -> Path:
    """2 prompts x 2 seeds sampled with the tiny Wan (5x16x16, 2 steps); seed 0 wins."""
    root = tmp_path_factory.mktemp("wanrun") / "run"
    write_prompts(read_prompts(OFFICIAL_CSV)[:2], root / "prompts.parquet")
    main(["sample", str(root), "--model", "wan", "--model-path", str(wan_dir), "--num-frames",
          "5", "--height", "16", "--width", "16", "--steps", "2", "--seeds", "2",
          "--device", "cpu"])  # fmt: skip
    _pair_seed0_over_seed1(RunDir(root))
    return root


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toyrun") / "run"
    main(["prompts", str(root), "--train", "2", "--test", "0"])
    main(["sample", str(root), "--model", "toy", "--seeds", "2", "--steps", "2"])
    _pair_seed0_over_seed1(RunDir(root))
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def checkpointing_spy(monkeypatch) -> list[bool]:
    """The transformer's gradient_checkpointing flag at every optimizer step."""
    seen: list[bool] = []
    real = trainer._optimizer_step

    def spy(ctx, *args, **kwargs):
        seen.append(bool(ctx.base.gradient_checkpointing))
        return real(ctx, *args, **kwargs)

    monkeypatch.setattr(trainer, "_optimizer_step", spy)
    return seen


# ------------------------------------------------------------------ gradient checkpointing
def test_gradient_checkpointing_is_on_for_wan_by_default(wan_run, wan_dir, tmp_path,
                                                         checkpointing_spy):  # fmt: skip
    root = _copy(wan_run, tmp_path / "run")
    main(["train", str(root), "--model", "wan", "--model-path", str(wan_dir), *FAST])
    assert checkpointing_spy == [True]
    run = RunDir(root)
    assert read_json(run.train_dir / "train_config.json")["gradient_checkpointing"] is True
    # told off: off
    shutil.rmtree(run.train_dir)
    main(["train", str(root), "--model", "wan", "--model-path", str(wan_dir), *FAST,
          "--no-gradient-checkpointing"])  # fmt: skip
    assert checkpointing_spy == [True, False]
    assert read_json(run.train_dir / "train_config.json")["gradient_checkpointing"] is False


def test_gradient_checkpointing_stays_off_for_toy_unless_asked(toy_run, tmp_path,
                                                               checkpointing_spy):  # fmt: skip
    root = _copy(toy_run, tmp_path / "run")
    main(["train", str(root), *FAST])
    assert checkpointing_spy == [False]
    run = RunDir(root)
    assert read_json(run.train_dir / "train_config.json")["gradient_checkpointing"] is False
    shutil.rmtree(run.train_dir)
    main(["train", str(root), *FAST, "--gradient-checkpointing"])
    assert checkpointing_spy == [False, True]


def test_resolve_checkpointing():
    resolve = run_mod.resolve_checkpointing
    assert resolve("toy", TrainConfig()) is False
    assert resolve("toy", TrainConfig(gradient_checkpointing=True)) is True
    assert resolve("wan", TrainConfig()) is True  # the loop's configs say False: still on
    assert resolve("wan", TrainConfig(), requested=False) is False
    assert resolve("toy", TrainConfig(), requested=True) is True


def test_toy_refuses_the_wan_loader_options(toy_run, tmp_path, capsys):
    root = _copy(toy_run, tmp_path / "run")
    for extra in (["--vae-tiling"], ["--text-encoder-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            main(["train", str(root), *FAST, *extra])
        assert e.value.code != 0
        err = capsys.readouterr().err
        assert "apply to --model wan only" in err and "Traceback" not in err


# ------------------------------------------------------------------------ cache identity
def test_vae_tiling_is_part_of_the_cache_identity(wan_run, wan_dir, tmp_path):
    root = _copy(wan_run, tmp_path / "run")
    run = RunDir(root)
    kw = {"model": "wan", "model_path": wan_dir, "progress": False}
    first = run_mod.train_run(root, CFG, **kw)
    assert (first.cache.latents_encoded, first.cache.text_encoded) == (4, 2)
    plain = read_index(run.cache_dir)["backend"]
    # the diffusers layout keeps the identity caches were made with before either layout
    old = ",".join(fingerprint(wan_dir / d) for d in ("vae", "text_encoder", "tokenizer"))
    assert plain == f"wan:{old}:512"
    shutil.rmtree(run.train_dir)
    again = run_mod.train_run(root, CFG, **kw)
    assert (again.cache.latents_encoded, again.cache.latents_reused) == (0, 4)
    shutil.rmtree(run.train_dir)
    tiled = run_mod.train_run(root, CFG, vae_tiling=True, **kw)
    assert (tiled.cache.latents_encoded, tiled.cache.text_encoded) == (4, 2)
    assert tiled.cache.reasons == {"model changed": 6}
    backend = read_index(run.cache_dir)["backend"]
    assert backend == plain + ":tiling=256x256/192x192"  # the loader enabled the VAE's tiling


def _original_layout(wan_dir: Path, out: Path, monkeypatch) -> Path:
    """The tiny transformer in the original Wan2.1 files (test_wan_loading's converter), a
    stand-in ``Wan2.1_VAE.pth`` whose loading is stubbed with the tiny diffusers VAE
    (diffusers' Wan VAE conversion handles the full-size VAE only)."""
    from diffusers import AutoencoderKLWan
    from test_wan_loading import _original_dir

    _, root = _original_dir(wan_dir, out)
    torch.save({"stand_in": torch.zeros(1)}, root / "Wan2.1_VAE.pth")
    shutil.copytree(wan_dir / "scheduler", root / "scheduler")
    monkeypatch.setattr("spatialalign.models.wan.original.load_original_vae",
                        lambda path: AutoencoderKLWan.from_pretrained(wan_dir, subfolder="vae"))  # fmt: skip
    return root


def test_original_layout_cache_identity_covers_the_vae_file(wan_run, wan_dir, tmp_path,
                                                            monkeypatch, capsys):  # fmt: skip
    orig = _original_layout(wan_dir, tmp_path / "orig", monkeypatch)
    root = _copy(wan_run, tmp_path / "run")
    run = RunDir(root)
    train = ["train", str(root), "--model", "wan", "--model-path", str(orig),
             "--text-encoder-dir", str(wan_dir), *FAST]  # fmt: skip
    main(train)
    assert "trained dpo+zo LoRA on 2 pairs of 2 prompts: 1 steps" in capsys.readouterr().out
    index = read_index(run.cache_dir)
    parts = [orig / "Wan2.1_VAE.pth", wan_dir / "text_encoder", wan_dir / "tokenizer"]
    assert index["backend"] == "wan:" + ",".join(fingerprint(p) for p in parts) + ":512"
    assert run_mod.wan_encoder_identity(orig, wan_dir) in index["backend"]
    shutil.rmtree(run.train_dir)
    again = run_mod.train_run(root, CFG, model="wan", model_path=orig, text_encoder_dir=wan_dir,
                              progress=False)  # fmt: skip
    assert again.cache.latents_reused == 4 and again.cache.latents_encoded == 0
    # other VAE bytes: everything re-encodes (the stub loads the same VAE: the identity, not
    # the latents, is what changed)
    torch.save({"stand_in": torch.ones(1)}, orig / "Wan2.1_VAE.pth")
    shutil.rmtree(run.train_dir)
    changed = run_mod.train_run(root, CFG, model="wan", model_path=orig,
                                text_encoder_dir=wan_dir, progress=False)  # fmt: skip
    assert (changed.cache.latents_encoded, changed.cache.text_encoded) == (4, 2)
    assert changed.cache.reasons == {"model changed": 6}
    assert read_index(run.cache_dir)["backend"] != index["backend"]


# --------------------------------------------------------------------- the 24 GB layout
def test_encoders_run_and_are_freed_before_the_transformer_moves(wan_run, wan_dir, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    """On the CPU every device is the CPU, so this checks the order of the calls: the
    pipeline loads on the CPU, the text encoder and the VAE are moved and used, then
    dropped, and only then is the transformer moved (to the training device)."""
    import spatialalign.models.backends as backends

    events: list[str] = []
    loads: list[dict] = []
    state: dict = {}
    real_load = backends.load_wan_pipeline

    def spy_load(path, **kwargs):
        loads.append(kwargs)
        pipe = real_load(path, **kwargs)
        state["pipe"] = pipe
        for name in ("transformer", "text_encoder", "vae"):
            module = getattr(pipe, name)

            def to(*args, _real=module.to, _name=name, **kw):
                dev = args[0] if args else kw.get("device")
                events.append(f"{_name}.to({dev})")
                if _name == "transformer":  # what is still around when it moves
                    events.append(f"vae={pipe.vae is not None} te={pipe.text_encoder is not None}")
                return _real(*args, **kw)

            module.to = to
        return pipe

    monkeypatch.setattr(backends, "load_wan_pipeline", spy_load)
    for method in ("encode_prompts", "encode_videos"):
        real = getattr(WanCacheBackend, method)

        def spy(self, items, _real=real, _m=method):
            out = _real(self, items)
            events.append(_m)
            return out

        monkeypatch.setattr(WanCacheBackend, method, spy)
    root = _copy(wan_run, tmp_path / "run")
    run_mod.train_run(root, CFG, model="wan", model_path=wan_dir, text_encoder_dir=None,
                      vae_tiling=True, progress=False)  # fmt: skip
    assert loads == [{"device": "cpu", "dtype": None, "text_encoder_dir": None,
                      "vae_tiling": True}]  # fmt: skip
    first_move = next(i for i, e in enumerate(events) if e.startswith("transformer.to"))
    assert events[:first_move] == [
        "text_encoder.to(cpu)", "encode_prompts", "vae.to(cpu)", "encode_videos"
    ]  # fmt: skip
    # train_run's move, then accelerate's prepare (device placement) moving it again
    assert events[first_move:] == ["transformer.to(cpu)", "vae=False te=False"] * 2
    assert state["pipe"].vae is None and state["pipe"].text_encoder is None
    # everything cached: no encoder is moved at all
    events.clear()
    shutil.rmtree(RunDir(root).train_dir)
    run_mod.train_run(root, CFG, model="wan", model_path=wan_dir, vae_tiling=True,
                      progress=False)  # fmt: skip
    assert events == ["transformer.to(cpu)", "vae=False te=False"] * 2


def test_train_dtype():
    assert run_mod.train_dtype("cpu") is None
    assert run_mod.train_dtype(torch.device("cuda", 1)) == "bfloat16"
