"""convert-lora: Wan LoRA between diffusers, DiffSynth (official) and ComfyUI names, on a tiny
randomly initialised ``WanTransformer3DModel`` (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from spatialalign.cli import main  # noqa: E402
from spatialalign.errors import SpatialAlignError  # noqa: E402
from spatialalign.lora_convert import (  # noqa: E402
    METADATA_KEY,
    convert_lora,
    detect_format,
    diffusers_to_wan_name,
    read_lora,
    read_tensors,
    wan_to_diffusers_name,
)
from tiny_models import tiny_wan_transformer

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
    from spatialalign.lora import lora_config

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


def test_detects_each_format():
    assert detect_format(["transformer.blocks.0.attn2.to_k.lora_A.weight"]) == "diffusers"
    assert detect_format(["blocks.0.attn2.to_k.lora_A.weight"]) == "diffusers"
    assert detect_format(["blocks.0.cross_attn.k.lora_A.default.weight"]) == "diffsynth"
    assert detect_format(["diffusion_model.text_embedding.0.lora_B.weight"]) == "comfyui"
    with pytest.raises(SpatialAlignError, match="mix formats"):
        detect_format(["blocks.0.cross_attn.k.lora_A.weight", "blocks.0.attn2.to_k.lora_A.weight"])


# ------------------------------------------------------------------------ round trips
def test_diffsynth_names_and_alpha(adapter, tmp_path):
    src = adapter[0]
    result = convert_lora(src, tmp_path / "ds.safetensors", "diffsynth")
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
    convert_lora(src, tmp_path / "ds.safetensors", "diffsynth")
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
    convert_lora(tmp_path / "cf.safetensors", tmp_path / "ds.safetensors", "diffsynth")
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
def test_converted_back_adapter_gives_the_same_output(adapter, tmp_path):
    """official naming -> diffusers, loaded by WanPipeline.load_lora_weights with its alpha."""
    src, _, adapted = adapter
    convert_lora(src, tmp_path / "ds.safetensors", "diffsynth")
    convert_lora(
        tmp_path / "ds.safetensors", tmp_path / "pytorch_lora_weights.safetensors", "diffusers"
    )
    pipe = _tiny_pipe()
    pipe.load_lora_weights(tmp_path, adapter_name="x", local_files_only=True)
    torch.testing.assert_close(_forward(pipe.transformer), adapted, rtol=0, atol=1e-6)


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
    torch.testing.assert_close(out, adapted, rtol=1e-5, atol=1e-5)


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
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert "diffusers -> diffsynth" in lines[0] and "6 layers" in lines[0]
    assert f"rank {RANK}" in lines[0] and f"alpha {ALPHA:g}" in lines[0]
    assert out.is_file()


def test_cli_bad_input_is_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert-lora", str(tmp_path / "notes.txt"), str(tmp_path / "o.safetensors"),
              "--to", "comfyui"])  # fmt: skip
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown LoRA file type" in err and "\n" not in err
