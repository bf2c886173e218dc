"""convert-lora: Wan LoRA between diffusers, DiffSynth (official), ComfyUI and kohya/musubi
names, on a tiny randomly initialised ``WanTransformer3DModel`` (nothing downloaded).

Renamed or copied tensors are compared bit for bit; forwards through another loader or a
folded scale (another code path) within ``FLOAT32_NET`` (tests/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from spatialalign.cli import main  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.lora.convert import (  # noqa: E402
    METADATA_KEY,
    convert_lora,
    detect_format,
    diffusers_to_wan_name,
    kohya_to_wan_name,
    read_lora,
    read_tensors,
    wan_to_diffusers_name,
)
from tiny_models import tiny_wan_transformer
from tolerance import FLOAT32_NET

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RANK, ALPHA, LAYERS = 4, 8.0, 2


def _tiny_wan() -> torch.nn.Module:
    torch.manual_seed(0)
    return tiny_wan_transformer(LAYERS).eval()


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 2, 4, 4, generator=g)
    text = torch.randn(1, 5, 16, generator=g)
    return latents, torch.tensor([500]), text


@torch.no_grad()
def _forward(transformer: torch.nn.Module) -> torch.Tensor:
    latents, t, text = _inputs()
    return transformer(latents, t, text, return_dict=False)[0]


def _tiny_pipe():
    from diffusers import WanPipeline

    return WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, transformer=_tiny_wan(), scheduler=None
    )


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """A SpatialAlign LoRA (rank 4, alpha 8, random nonzero B) saved the way ``train`` saves
    it, with the transformer's output with and without it."""
    from diffusers import WanPipeline
    from peft.utils import get_peft_model_state_dict
    from spatialalign.lora.adapter import lora_config

    transformer = _tiny_wan()
    base = _forward(transformer)
    transformer.add_adapter(lora_config(rank=RANK, alpha=ALPHA))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    out = tmp_path_factory.mktemp("adapter")
    WanPipeline.save_lora_weights(
        out,
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
        safe_serialization=True,
    )
    adapted = _forward(transformer)
    assert not torch.allclose(adapted, base)  # the adapter changes the output
    return out / "pytorch_lora_weights.safetensors", base, adapted


def _alpha_in_metadata(path: Path) -> float:
    meta = json.loads(read_tensors(path)[1][METADATA_KEY])
    return float(meta["transformer.lora_alpha"])


def _assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = read_tensors(a)[0], read_tensors(b)[0]
    assert sorted(ta) == sorted(tb)
    for key in ta:
        assert ta[key].dtype == tb[key].dtype
        assert torch.equal(ta[key], tb[key]), key


# ------------------------------------------------------------------------ names
def test_module_names_map_both_ways():
    pairs = {
        "blocks.0.cross_attn.k": "blocks.0.attn2.to_k",
        "blocks.29.cross_attn.v": "blocks.29.attn2.to_v",
        "blocks.3.self_attn.o": "blocks.3.attn1.to_out.0",
        "blocks.1.ffn.0": "blocks.1.ffn.net.0.proj",
        "text_embedding.0": "condition_embedder.text_embedder.linear_1",
        "text_embedding.2": "condition_embedder.text_embedder.linear_2",
        "head.head": "proj_out",
    }
    for wan, diffusers in pairs.items():
        assert wan_to_diffusers_name(wan) == diffusers
        assert diffusers_to_wan_name(diffusers) == wan
    assert wan_to_diffusers_name("blocks.0.norm3") is None
    assert wan_to_diffusers_name("text_embedding.1") is None  # the GELU between the linears


def test_kohya_names_resolve_underscores_against_the_targets():
    pairs = {
        "blocks_0_cross_attn_k": "blocks.0.cross_attn.k",
        "blocks_12_cross_attn_k_img": "blocks.12.cross_attn.k_img",  # not cross_attn.k + "_img"
        "blocks_3_self_attn_o": "blocks.3.self_attn.o",
        "blocks_1_ffn_2": "blocks.1.ffn.2",
        "text_embedding_0": "text_embedding.0",
        "time_projection_1": "time_projection.1",
        "head_head": "head.head",
        "img_emb_proj_3": "img_emb.proj.3",
    }
    for kohya, wan in pairs.items():
        assert kohya_to_wan_name(kohya) == wan
    for other in ["blocks_0_norm3", "text_embedding_1", "blocks_x_ffn_0", "lora_unet_ffn_0"]:
        assert kohya_to_wan_name(other) is None


def test_detects_each_format():
    assert detect_format(["transformer.blocks.0.attn2.to_k.lora_A.weight"]) == "diffusers"
    assert detect_format(["blocks.0.attn2.to_k.lora_A.weight"]) == "diffusers"
    assert detect_format(["blocks.0.cross_attn.k.lora_A.default.weight"]) == "diffsynth"
    assert detect_format(["diffusion_model.text_embedding.0.lora_B.weight"]) == "comfyui"
    assert detect_format(["lora_unet_blocks_0_cross_attn_k.lora_down.weight"]) == "kohya"
    with pytest.raises(SpatialAlignError, match="mix formats"):
        detect_format(["blocks.0.cross_attn.k.lora_A.weight", "blocks.0.attn2.to_k.lora_A.weight"])


# ------------------------------------------------------------------------ round trips
def test_diffsynth_names_and_kept_alpha(adapter, tmp_path):
    src = adapter[0]
    result = convert_lora(src, tmp_path / "ds.safetensors", "diffsynth", fold_alpha=False)
    assert result.source_format == "diffusers" and result.n_layers == 2 + 2 * LAYERS
    tensors, _ = read_tensors(tmp_path / "ds.safetensors")
    expected = {"text_embedding.0", "text_embedding.2"} | {
        f"blocks.{i}.cross_attn.{kv}" for i in range(LAYERS) for kv in "kv"
    }
    for module in expected:
        assert tensors[f"{module}.lora_A.weight"].shape[0] == RANK
        assert tensors[f"{module}.lora_B.weight"].shape[1] == RANK
        assert tensors[f"{module}.alpha"].item() == ALPHA  # alpha != rank: written as a tensor
    assert len(tensors) == 3 * len(expected)
    assert not any(".default" in k or k.startswith("transformer.") for k in tensors)


def test_round_trip_through_diffsynth_is_bit_identical(adapter, tmp_path):
    src = adapter[0]
    convert_lora(src, tmp_path / "ds.safetensors", "diffsynth", fold_alpha=False)
    back = convert_lora(tmp_path / "ds.safetensors", tmp_path / "back.safetensors", "diffusers")
    assert back.source_format == "diffsynth" and back.alphas == (ALPHA,)
    _assert_same_tensors(src, tmp_path / "back.safetensors")
    assert _alpha_in_metadata(tmp_path / "back.safetensors") == ALPHA


def test_round_trip_through_comfyui_is_bit_identical(adapter, tmp_path):
    src = adapter[0]
    convert_lora(src, tmp_path / "cf.safetensors", "comfyui")
    tensors, _ = read_tensors(tmp_path / "cf.safetensors")
    assert all(k.startswith("diffusion_model.") and ".default" not in k for k in tensors)
    assert "diffusion_model.blocks.1.cross_attn.v.lora_B.weight" in tensors
    back = convert_lora(tmp_path / "cf.safetensors", tmp_path / "back.safetensors", "diffusers")
    assert back.source_format == "comfyui"
    _assert_same_tensors(src, tmp_path / "back.safetensors")
    assert _alpha_in_metadata(tmp_path / "back.safetensors") == ALPHA


def test_comfyui_to_diffsynth_drops_only_the_prefix(adapter, tmp_path):
    convert_lora(adapter[0], tmp_path / "cf.safetensors", "comfyui")
    convert_lora(
        tmp_path / "cf.safetensors", tmp_path / "ds.safetensors", "diffsynth", fold_alpha=False
    )
    comfy = read_tensors(tmp_path / "cf.safetensors")[0]
    ds = read_tensors(tmp_path / "ds.safetensors")[0]
    assert sorted(ds) == sorted(k.removeprefix("diffusion_model.") for k in comfy)
    assert all(torch.equal(ds[k.removeprefix("diffusion_model.")], v) for k, v in comfy.items())


def test_alpha_equal_to_rank_writes_no_alpha_tensors(adapter, tmp_path, capsys):
    out = tmp_path / "ds.safetensors"
    main(["convert-lora", str(adapter[0]), str(out), "--to", "diffsynth", "--alpha", str(RANK)])
    assert f"alpha {RANK}" in capsys.readouterr().out
    tensors = read_tensors(out)[0]
    assert len(tensors) == 2 * (2 + 2 * LAYERS)
    assert not any(k.endswith(".alpha") for k in tensors)  # no alpha: unit scale everywhere


def test_bf16_tensors_keep_their_dtype(adapter, tmp_path):
    from safetensors.torch import save_file

    layer = read_lora(adapter[0]).layers["blocks.0.attn2.to_k"]
    down, up = layer.down.to(torch.bfloat16), layer.up.to(torch.bfloat16)
    save_file(
        {"blocks.0.cross_attn.k.lora_A.weight": down, "blocks.0.cross_attn.k.lora_B.weight": up},
        tmp_path / "bf16.safetensors",
    )
    convert_lora(tmp_path / "bf16.safetensors", tmp_path / "out.safetensors", "diffusers")
    got = read_tensors(tmp_path / "out.safetensors")[0][
        "transformer.blocks.0.attn2.to_k.lora_B.weight"
    ]
    assert got.dtype == torch.bfloat16 and torch.equal(got, up)


# ------------------------------------------------------------------------ loading into diffusers
@pytest.mark.parametrize("fold", [False, True], ids=["alpha-kept", "alpha-folded"])
def test_converted_back_adapter_gives_the_same_output(adapter, tmp_path, fold):
    """official naming (alpha kept as tensors, or folded into lora_B) -> diffusers, loaded by
    WanPipeline.load_lora_weights with its alpha: the adapter's output within FLOAT32_NET (a
    folded scale and diffusers' own loading are another code path; a dropped alpha moves the
    output by ~1e-1)."""
    src, base, adapted = adapter
    convert_lora(src, tmp_path / "ds.safetensors", "diffsynth", fold_alpha=fold)
    back = tmp_path / "pytorch_lora_weights.safetensors"
    result = convert_lora(tmp_path / "ds.safetensors", back, "diffusers")
    assert result.alphas == ((float(RANK),) if fold else (ALPHA,))
    pipe = _tiny_pipe()
    pipe.load_lora_weights(tmp_path, adapter_name="x", local_files_only=True)
    out = _forward(pipe.transformer)
    assert not torch.allclose(out, base)
    torch.testing.assert_close(out, adapted, **FLOAT32_NET)


def test_comfyui_file_loads_through_diffusers_own_converter(adapter, tmp_path):
    """diffusers converts non-diffusers Wan LoRAs only under ``diffusion_model.``; its
    converter ignores alpha on text_embedding, so the scale is folded into lora_B here."""
    src, base, adapted = adapter
    convert_lora(src, tmp_path / "cf.safetensors", "comfyui", fold_alpha=True)
    tensors = read_tensors(tmp_path / "cf.safetensors")[0]
    assert not any(k.endswith(".alpha") for k in tensors)
    pipe = _tiny_pipe()
    pipe.load_lora_weights(
        tmp_path, weight_name="cf.safetensors", adapter_name="x", local_files_only=True
    )
    out = _forward(pipe.transformer)
    assert not torch.allclose(out, base)
    torch.testing.assert_close(out, adapted, **FLOAT32_NET)


def test_diffsynth_names_are_diffusers_converter_names_without_prefix(adapter, tmp_path):
    """diffusers' own non-diffusers Wan converter maps our DiffSynth names to our diffusers
    names (an oracle independent of our table)."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_wan_lora_to_diffusers,
    )

    src = adapter[0]
    convert_lora(src, tmp_path / "ds.safetensors", "diffsynth", fold_alpha=True)
    ours = read_tensors(tmp_path / "ds.safetensors")[0]
    theirs = _convert_non_diffusers_wan_lora_to_diffusers(
        {f"diffusion_model.{k}": v for k, v in ours.items()}
    )
    assert sorted(theirs) == sorted(read_tensors(src)[0])


@torch.no_grad()
def _merged_as_diffsynth_does(path: Path) -> torch.Tensor:
    """The tiny transformer's output with the DiffSynth-named LoRA ``path`` merged the way
    DiffSynth's ``GeneralLoRAFromPeft.load`` merges it at the release's commit (what the
    official inference.py calls with ``lora_alpha=1.0``): ``W += 1.0 * B @ A`` for every
    ``.lora_B.`` key; ``.alpha`` keys are never read."""
    tensors = read_tensors(path)[0]
    transformer = _tiny_wan()
    for key, up in tensors.items():
        if ".lora_B." not in key:
            continue
        down = tensors[key.replace(".lora_B.", ".lora_A.")]
        wan = key.split(".lora_B.")[0]
        linear = transformer.get_submodule(wan_to_diffusers_name(wan))
        linear.weight += 1.0 * (up.float() @ down.float())
    return _forward(transformer)


def test_diffsynth_target_folds_alpha_so_diffsynth_loads_the_right_scale(adapter, tmp_path):
    """alpha 8 != rank 4: DiffSynth's loader would apply scale 1 instead of 2, so the default
    folds alpha/rank into lora_B; --keep-alpha keeps the raw tensors and .alpha (and the
    summary says DiffSynth ignores them)."""
    src, base, adapted = adapter
    folded = convert_lora(src, tmp_path / "ds.safetensors", "diffsynth")
    assert folded.folded and "folded into lora_B" in folded.summary()
    tensors = read_tensors(tmp_path / "ds.safetensors")[0]
    assert not any(k.endswith(".alpha") for k in tensors)
    out = _merged_as_diffsynth_does(tmp_path / "ds.safetensors")
    assert not torch.allclose(out, base)
    torch.testing.assert_close(out, adapted, **FLOAT32_NET)  # merged vs unmerged: a tolerance

    kept = convert_lora(src, tmp_path / "kept.safetensors", "diffsynth", fold_alpha=False)
    assert "kept as .alpha tensors, which DiffSynth ignores (load with lora_alpha=2)" in (
        kept.summary()
    )
    wrong = _merged_as_diffsynth_does(tmp_path / "kept.safetensors")
    assert not torch.allclose(wrong, adapted, **FLOAT32_NET)  # what folding is there for


def test_cli_keep_alpha(adapter, tmp_path, capsys):
    out = tmp_path / "ds.safetensors"
    main(["convert-lora", str(adapter[0]), str(out), "--to", "diffsynth", "--keep-alpha"])
    line = capsys.readouterr().out.strip()
    assert "alpha 8 kept as .alpha tensors" in line and "\n" not in line
    assert read_tensors(out)[0]["blocks.0.cross_attn.k.alpha"].item() == ALPHA
    with pytest.raises(SystemExit):
        main(["convert-lora", str(adapter[0]), str(out), "--to", "diffsynth", "--keep-alpha",
              "--fold-alpha"])  # fmt: skip
    assert "exclude each other" in capsys.readouterr().err


# ------------------------------------------------------------------------ peft names
def _wan_layout_model(lora_path: Path) -> torch.nn.Module:
    """A module tree with the original Wan names of the adapted layers (what DiffSynth's
    WanModel holds there), sized from the LoRA, for loading the way the official train.py
    does: peft's ``inject_adapter_in_model`` then ``load_state_dict(strict=False)``."""
    from peft import LoraConfig, inject_adapter_in_model

    root = torch.nn.Module()
    for module, layer in read_lora(lora_path).layers.items():
        parent, name = root, diffusers_to_wan_name(module)
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, torch.nn.Linear(layer.down.shape[1], layer.up.shape[0]))
    targets = ["cross_attn.k", "cross_attn.v", "text_embedding.0", "text_embedding.2"]
    return inject_adapter_in_model(
        LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets), root
    )


def _official_pretrained_lora_load(model: torch.nn.Module, path: Path) -> tuple[int, list[str]]:
    """How many LoRA parameters ``load_state_dict(strict=False)`` filled; unexpected keys."""
    result = model.load_state_dict(read_tensors(path)[0], strict=False)
    lora = [n for n, _ in model.named_parameters() if ".lora_" in n]
    return len(set(lora) - set(result.missing_keys)), list(result.unexpected_keys)


def test_peft_names_are_what_the_official_trainer_loads(adapter, tmp_path, capsys):
    src = adapter[0]
    plain = convert_lora(src, tmp_path / "plain.safetensors", "diffsynth")
    main(["convert-lora", str(src), str(tmp_path / "peft.safetensors"), "--to", "diffsynth",
          "--peft-names"])  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert "-> diffsynth (peft names)" in line
    assert f"train.py --pretrained_lora_path: --lora_rank {RANK} --lora_alpha {RANK}" in line
    tensors = read_tensors(tmp_path / "peft.safetensors")[0]
    assert "blocks.1.cross_attn.v.lora_B.default.weight" in tensors
    assert "text_embedding.0.lora_A.default.weight" in tensors
    assert all(".lora_A.default.weight" in k or ".lora_B.default.weight" in k for k in tensors)

    model = _wan_layout_model(src)
    n_lora = sum(".lora_" in n for n, _ in model.named_parameters())
    assert n_lora == 2 * plain.n_layers
    assert _official_pretrained_lora_load(model, tmp_path / "peft.safetensors") == (n_lora, [])
    # plain DiffSynth names: the trainer loads none of them, and says only "unexpected"
    assert (
        _official_pretrained_lora_load(_wan_layout_model(src), tmp_path / "plain.safetensors")[0]
        == 0
    )


def test_peft_names_round_trip(adapter, tmp_path):
    src = adapter[0]
    convert_lora(src, tmp_path / "peft.safetensors", "diffsynth", fold_alpha=False, peft_names=True)
    assert read_tensors(tmp_path / "peft.safetensors")[0]["blocks.0.cross_attn.k.alpha"] == ALPHA
    back = convert_lora(tmp_path / "peft.safetensors", tmp_path / "back.safetensors", "diffusers")
    assert back.source_format == "diffsynth" and back.alphas == (ALPHA,)
    _assert_same_tensors(src, tmp_path / "back.safetensors")
    assert _alpha_in_metadata(tmp_path / "back.safetensors") == ALPHA
    with pytest.raises(SpatialAlignError, match="--peft-names .* --to diffsynth"):
        convert_lora(src, tmp_path / "cf.safetensors", "comfyui", peft_names=True)


# ------------------------------------------------------------------------ kohya / musubi
def _kohya_state(adapter_path: Path) -> dict[str, torch.Tensor]:
    """Our adapter named as kohya/musubi save it (ComfyUI's rule: ``lora_unet_`` + the
    original Wan name with ``_`` for ``.``), with an ``.alpha`` per layer."""
    out = {}
    for module, layer in read_lora(adapter_path).layers.items():
        stem = "lora_unet_" + diffusers_to_wan_name(module).replace(".", "_")
        out[f"{stem}.lora_down.weight"] = layer.down
        out[f"{stem}.lora_up.weight"] = layer.up
        out[f"{stem}.alpha"] = torch.tensor(layer.alpha)
    return out


def test_kohya_file_is_read(adapter, tmp_path):
    from safetensors.torch import save_file

    src = adapter[0]
    save_file(_kohya_state(src), tmp_path / "kohya.safetensors")
    assert "lora_unet_text_embedding_0.lora_up.weight" in _kohya_state(src)
    result = convert_lora(tmp_path / "kohya.safetensors", tmp_path / "out.safetensors", "diffusers")
    assert result.source_format == "kohya" and result.n_layers == 2 + 2 * LAYERS
    _assert_same_tensors(src, tmp_path / "out.safetensors")
    assert _alpha_in_metadata(tmp_path / "out.safetensors") == ALPHA


def test_round_trip_through_kohya_is_bit_identical(adapter, tmp_path):
    src = adapter[0]
    convert_lora(src, tmp_path / "k.safetensors", "kohya")
    tensors = read_tensors(tmp_path / "k.safetensors")[0]
    assert sorted(tensors) == sorted(_kohya_state(src))
    assert all(tensors[k].item() == ALPHA for k in tensors if k.endswith(".alpha"))
    back = convert_lora(tmp_path / "k.safetensors", tmp_path / "back.safetensors", "diffusers")
    assert back.source_format == "kohya"
    _assert_same_tensors(src, tmp_path / "back.safetensors")
    assert _alpha_in_metadata(tmp_path / "back.safetensors") == ALPHA


def test_kohya_output_loads_through_diffusers_musubi_converter(tmp_path):
    """An oracle independent of our table: diffusers' musubi converter (which wants every
    block linear of every block, with an alpha each) loads our kohya file with the adapter's
    output (another loader: FLOAT32_NET)."""
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = _tiny_wan()
    base = _forward(transformer)
    targets = (
        r"blocks\.\d+\.(attn1\.to_(q|k|v|out\.0)|attn2\.to_(q|k|v|out\.0)|ffn\.net\.(0\.proj|2))"
    )
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets)
    transformer.add_adapter(config)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    adapted = _forward(transformer)
    WanPipeline.save_lora_weights(
        tmp_path / "full",
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=config.to_dict(),
    )
    result = convert_lora(tmp_path / "full", tmp_path / "musubi.safetensors", "kohya")
    assert result.n_layers == 10 * LAYERS
    pipe = _tiny_pipe()
    pipe.load_lora_weights(
        tmp_path, weight_name="musubi.safetensors", adapter_name="x", local_files_only=True
    )
    out = _forward(pipe.transformer)
    assert not torch.allclose(out, base)
    torch.testing.assert_close(out, adapted, **FLOAT32_NET)


# ------------------------------------------------------------------------ checkpoints
def _official_like_state(adapter_path: Path) -> dict[str, torch.Tensor]:
    """Our adapter named as DiffSynth's Lightning training saves it (peft ``.default``)."""
    out = {}
    for module, layer in read_lora(adapter_path).layers.items():
        wan = diffusers_to_wan_name(module)
        out[f"pipe.dit.{wan}.lora_A.default.weight"] = layer.down
        out[f"pipe.dit.{wan}.lora_B.default.weight"] = layer.up
    return out


def test_lightning_checkpoint_is_read_weights_only(adapter, tmp_path):
    src = adapter[0]
    ckpt = tmp_path / "spatialalign.ckpt"
    torch.save({"state_dict": _official_like_state(src)}, ckpt)
    result = convert_lora(ckpt, tmp_path / "out.safetensors", "diffusers", alpha=ALPHA)
    assert result.source_format == "diffsynth" and result.n_layers == 2 + 2 * LAYERS
    _assert_same_tensors(src, tmp_path / "out.safetensors")
    assert _alpha_in_metadata(tmp_path / "out.safetensors") == ALPHA


def test_checkpoint_without_alpha_means_unit_scale(adapter, tmp_path):
    ckpt = tmp_path / "flat.pt"
    torch.save(_official_like_state(adapter[0]), ckpt)  # a flat dict, as DiffSynth's hook saves
    result = convert_lora(ckpt, tmp_path / "out.safetensors", "diffusers")
    assert result.alphas == (float(RANK),)
    assert _alpha_in_metadata(tmp_path / "out.safetensors") == RANK


def _full_lightning_checkpoint(adapter_path: Path) -> dict:
    """What the official train.py's ``trainer.save_checkpoint`` writes (``step=NNNNN.ckpt``),
    in plain tensors and containers: Lightning's ``state_dict`` of the whole module (the DiT
    weights with peft's wrapped layers, the LoRA under ``pipe.dit.``, the frozen
    ``ref_model.*`` copy), Lightning's training state, and the LoRA at the top level where
    ``on_save_checkpoint`` puts it (``checkpoint.update(lora_state_dict)``)."""
    lora = {k.removeprefix("pipe.dit."): v for k, v in _official_like_state(adapter_path).items()}
    g = torch.Generator().manual_seed(4)
    state = {f"pipe.dit.{k}": v for k, v in lora.items()}
    for module in ["blocks.0.cross_attn.k", "blocks.0.self_attn.q", "text_embedding.0"]:
        state[f"pipe.dit.{module}.base_layer.weight"] = torch.randn(16, 16, generator=g)
        state[f"ref_model.{module}.weight"] = torch.randn(16, 16, generator=g)
    return {
        "epoch": 0,
        "global_step": 2400,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1}}}},
        "callbacks": {
            "ModelCheckpoint{'every_n_train_steps': 100}": {
                "kth_value": torch.tensor(float("inf")),
                "best_model_path": "",
            }
        },
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(2400.0)}},
                "param_groups": [{"lr": 1e-4, "params": [0]}],
            }
        ],
        "lr_schedulers": [{"base_lrs": [1e-4], "last_epoch": 2400, "lr_lambdas": [None]}],
        **lora,
    }


def test_full_lightning_checkpoint_takes_the_lora_and_says_what_it_ignored(
    adapter, tmp_path, capsys
):
    src = adapter[0]
    ckpt = tmp_path / "step=02400.ckpt"
    torch.save(_full_lightning_checkpoint(src), ckpt)
    out = tmp_path / "out.safetensors"
    main(["convert-lora", str(ckpt), str(out), "--to", "diffusers", "--alpha", str(ALPHA)])
    captured = capsys.readouterr()
    assert "diffsynth -> diffusers: 6 layers" in captured.out
    note = captured.err.strip()
    assert "\n" not in note and note.startswith("note: step=02400.ckpt: read the 12 LoRA tensors")
    assert "ignored its state_dict (18 tensors under pipe.*, ref_model.*)" in note
    assert "7 training-state entries (callbacks, epoch, global_step, loops, lr_schedulers, " in note
    _assert_same_tensors(src, out)
    assert _alpha_in_metadata(out) == ALPHA


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("ran")
    return "payload"


class _Payload:
    """An object whose unpickling would run code (it calls ``_record_unpickling``)."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_checkpoint_with_objects_is_refused_without_running_them(adapter, tmp_path):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _official_like_state(adapter[0]), "hparams": _Payload()}, ckpt)
    with pytest.raises(
        SpatialAlignError, match="refusing to read .*Unsupported global.*never unpickled"
    ):
        convert_lora(ckpt, tmp_path / "out.safetensors", "diffusers")
    assert UNPICKLED == []
    assert not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------------ bad input + CLI
def test_unknown_keys_are_refused_with_their_names(adapter, tmp_path):
    from safetensors.torch import save_file

    tensors = read_tensors(adapter[0])[0]
    tensors["transformer.blocks.0.norm2.lora_A.weight"] = torch.zeros(4, 16)
    tensors["transformer.blocks.0.attn1.norm_q.weight"] = torch.zeros(16)
    save_file(tensors, tmp_path / "odd.safetensors")
    with pytest.raises(SpatialAlignError, match=r"2 keys .*attn1\.norm_q.*norm2\.lora_A"):
        convert_lora(tmp_path / "odd.safetensors", tmp_path / "out.safetensors", "diffsynth")


def test_unpaired_factor_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"blocks.0.cross_attn.k.lora_A.weight": torch.ones(4, 16)}, tmp_path / "a.safetensors"
    )
    with pytest.raises(SpatialAlignError, match="blocks.0.attn2.to_k has no lora_B"):
        read_lora(tmp_path / "a.safetensors")


def test_cli_prints_one_summary_line(adapter, tmp_path, capsys):
    out = tmp_path / "ds.safetensors"
    main(["convert-lora", str(adapter[0]), str(out), "--to", "diffsynth"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and not captured.err
    assert "diffusers -> diffsynth" in lines[0] and "6 layers" in lines[0]
    assert f"rank {RANK}" in lines[0] and f"alpha {ALPHA:g} folded into lora_B" in lines[0]
    assert "DiffSynth applies no alpha" in lines[0]
    assert out.is_file()


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert-lora", str(tmp_path / "notes.txt"), str(tmp_path / "o.safetensors"),
              "--to", "comfyui"])  # fmt: skip
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown LoRA file type" in err and "\n" not in err


@pytest.mark.parametrize("how", ["same", "dot-slash", "symlink", "directory"])
def test_output_over_its_input_is_refused(adapter, tmp_path, monkeypatch, how):
    import shutil

    src = tmp_path / "pytorch_lora_weights.safetensors"
    shutil.copy(adapter[0], src)
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    if how == "symlink":
        (tmp_path / "link.safetensors").symlink_to(src)
    ins = {"same": src, "dot-slash": src, "symlink": src, "directory": tmp_path}[how]
    outs = {
        "same": src,
        "dot-slash": Path("./pytorch_lora_weights.safetensors"),
        "symlink": tmp_path / "link.safetensors",
        "directory": tmp_path,  # a directory means pytorch_lora_weights.safetensors there
    }
    with pytest.raises(SpatialAlignError, match="same file as its input") as info:
        convert_lora(ins, outs[how], "diffusers")
    assert "\n" not in str(info.value)
    assert src.read_bytes() == before
