"""Tiny random GroundingDINO / SAM builders and a local BERT tokenizer (tests, benchmarks).

No weights can be downloaded, so tests and benchmarks build models from configs with
random weights. GroundingDINO's text backbone is BERT and its modelling code hard-codes
the bert-base-uncased ids of ``[CLS]`` (101), ``[SEP]`` (102), ``.`` (1012) and ``?``
(1029) as phrase delimiters, so the tiny vocabulary puts those tokens at exactly those
ids (and ``[PAD]`` 0, ``[UNK]`` 100, ``[MASK]`` 103), like the real one.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

# bert-base-uncased ids GroundingDINO relies on (transformers' SPECIAL_TOKENS + padding/unknown)
BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
BERT_PUNCT_IDS = {".": 1012, "?": 1029}

DEFAULT_WORDS = (
    "a an the cat dog fox bear horse rabbit deer duck bird tiger lion wolf "
    "stump rock tree box ball car chair table house fence bush log barrel"
).split()


def build_bert_vocab(words: Iterable[str] = DEFAULT_WORDS) -> dict[str, int]:
    """A WordPiece vocabulary with the special tokens at bert-base-uncased's ids.

    Single letters and ``##``-letters are included so any lowercase word tokenizes
    (into pieces that decode back to the word); ``words`` become whole tokens.
    """
    fixed = {**BERT_SPECIAL_IDS, **BERT_PUNCT_IDS}
    size = max(fixed.values()) + 1
    vocab = {tok: i for tok, i in fixed.items()}
    taken = set(vocab.values())
    extra: list[str] = []
    for tok in list(string.ascii_lowercase) + [f"##{c}" for c in string.ascii_lowercase]:
        extra.append(tok)
    extra += [",", "!", "'", "-"]
    for w in words:
        w = w.strip().lower()
        if w and w not in vocab and w not in extra:
            extra.append(w)
    free = (i for i in range(size + len(extra)) if i not in taken)
    for tok in extra:
        vocab[tok] = next(free)
    # fill the remaining holes below the highest id with unused tokens
    used = set(vocab.values())
    for i in range(max(used) + 1):
        if i not in used:
            vocab[f"[unused{i}]"] = i
    return vocab


def build_bert_tokenizer(words: Iterable[str] = DEFAULT_WORDS):
    """A ``BertTokenizerFast`` (lower-casing, WordPiece) over :func:`build_bert_vocab`."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=build_bert_vocab(words), do_lower_case=True)


@torch.no_grad()
def reinit_weights(model: nn.Module, seed: int = 0, gain: float = 1.0) -> nn.Module:
    """Re-draws every linear/conv/embedding weight so random outputs are not trivial.

    transformers initialises GroundingDINO's box-head last layer and deformable
    attention weights to zero and its fusion layer scales to 1e-4, which makes a
    random model's boxes constant; here every weight is ``N(0, gain/sqrt(fan_in))``
    and biases ``N(0, 0.02)``, fusion scales 0.1, so an ONNX-vs-PyTorch comparison
    tests something.
    """
    g = torch.Generator().manual_seed(seed)

    def normal_(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std)

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d, nn.ConvTranspose2d)):
            w = module.weight
            fan_in = w[0].numel() if not isinstance(module, nn.ConvTranspose2d) else w.shape[0]
            normal_(w, gain / math.sqrt(max(fan_in, 1)))
            if module.bias is not None:
                normal_(module.bias, 0.02)
        elif isinstance(module, nn.Embedding):
            normal_(module.weight, 0.5)
        for name in ("vision_param", "text_param"):
            p = getattr(module, name, None)
            if isinstance(p, nn.Parameter):
                p.fill_(0.1)
        rpb = getattr(module, "relative_position_bias_table", None)
        if isinstance(rpb, nn.Parameter):
            normal_(rpb, 0.02)
    return model


def tiny_grounding_dino_config(vocab_size: int, *, image_size: int = 64, max_text_len: int = 32):
    """A GroundingDinoConfig with a 4-stage tiny Swin and a 1-layer BERT (~0.5M params)."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    swin = SwinConfig(
        image_size=image_size,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_indices=[2, 3, 4],
    )
    bert = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max(64, max_text_len),
    )
    return GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=30,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=max_text_len,
    )


def grounding_dino_tiny_real_config():
    """The published IDEA-Research/grounding-dino-tiny architecture (Swin-T + BERT-base).

    Values from its config.json; random weights, for timing only (nothing downloaded).
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    swin = SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        out_indices=[2, 3, 4],
    )
    bert = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    return GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=256,
        encoder_layers=6,
        decoder_layers=6,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        num_queries=900,
        max_text_len=256,
    )


def save_grounding_dino(
    out_dir: str | Path,
    *,
    real_size: bool = False,
    words: Iterable[str] = DEFAULT_WORDS,
    seed: int = 0,
    shortest_edge: int = 128,
    longest_edge: int = 224,
) -> Path:
    """Writes a random GroundingDINO (model + processor) that ``from_pretrained`` loads.

    ``real_size`` uses :func:`grounding_dino_tiny_real_config` (benchmarks); otherwise
    the tiny config with re-initialised weights and a small image processor size.
    """
    from transformers import (
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
    )

    out = Path(out_dir)
    torch.manual_seed(seed)
    tok = build_bert_tokenizer(words)
    if real_size:
        config = grounding_dino_tiny_real_config()
        size = {"shortest_edge": 800, "longest_edge": 1333}
    else:
        config = tiny_grounding_dino_config(len(tok))
        size = {"shortest_edge": shortest_edge, "longest_edge": longest_edge}
    model = GroundingDinoForObjectDetection(config).eval()
    if not real_size:
        reinit_weights(model, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size=size), tokenizer=tok
    )
    processor.save_pretrained(out)
    return out


def tiny_sam_config(image_size: int = 64):
    """A SamConfig with a 2-layer ViT on 8x8 patches and a 32-wide mask decoder."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    patch = 8
    hidden = 32
    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        image_size=image_size,
        patch_size=patch,
        window_size=4,
        global_attn_indexes=[1],
        num_pos_feats=hidden // 2,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=hidden, image_size=image_size, patch_size=patch, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    return SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )


def save_sam(out_dir: str | Path, *, seed: int = 0, image_size: int = 64) -> Path:
    """Writes a random tiny SAM (model + processor) that ``from_pretrained`` loads."""
    from transformers import SamImageProcessorPil, SamModel, SamProcessor

    out = Path(out_dir)
    torch.manual_seed(seed)
    model = SamModel(tiny_sam_config(image_size)).eval()
    reinit_weights(model, seed=seed)
    model.save_pretrained(out, safe_serialization=True)
    ip = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": image_size // 2},
        mask_pad_size={"height": image_size // 2, "width": image_size // 2},
    )
    SamProcessor(image_processor=ip).save_pretrained(out)
    return out


def tiny_wan_transformer(num_layers: int = 3) -> nn.Module:
    """A tiny random diffusers ``WanTransformer3DModel`` (4 latent channels, text dim 16)."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=16,
    )
