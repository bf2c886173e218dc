"""Neural metrics with tiny random DINOv2 / CLIP built from configs (nothing downloaded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torchmetrics")

from spatialalign.evaluation.neural import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    NATURAL_PROMPTS,
    ClipIqa,
    dinov2_features,
    dinov2_transform,
    id_consistency,
    load_clip,
    load_dinov2,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
S = 28  # DINOv2 input side in these tests (2 x 2 patches of 14)


@pytest.fixture(scope="module")
def dino():
    cfg = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=S,
        patch_size=14,
    )
    torch.manual_seed(0)
    return transformers.Dinov2Model(cfg).eval()


def clip_tokenizer():
    """A character-level CLIP BPE tokenizer (no merges) over lower-case letters and '.'."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz.":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def clip():
    tok = clip_tokenizer()
    cfg = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return model, transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tok)


def video(colours, h=20, w=24):
    frames = np.zeros((len(colours), h, w, 3), np.uint8)
    for i, c in enumerate(colours):
        frames[i] = c
    return frames


# ---------------------------------------------------------------------------- DINOv2


def test_dinov2_transform_geometry_and_normalisation():
    # a 10 x 20 crop: short side -> 28, long side -> 56, centre crop 28 x 28
    crop = np.full((10, 20, 3), (255, 0, 51), np.uint8)
    x = dinov2_transform([crop], S)
    assert x.shape == (1, 3, S, S)
    # a constant crop stays constant through resize and crop: (c/255 - mean) / std
    want = [
        (v / 255 - m) / s for v, m, s in zip((255, 0, 51), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    for ch in range(3):
        assert torch.allclose(x[0, ch], torch.full((S, S), want[ch]), atol=1e-5)
    # a left/right split crop keeps its middle: the centre crop of 28 x 56 is columns 14..41
    crop = np.zeros((10, 20, 3), np.uint8)
    crop[:, 10:] = 255
    x = dinov2_transform([crop], S)
    assert x[0, 0, :, :10].max() < x[0, 0, :, 18:].min()


def test_identical_crops_are_consistency_one(dino):
    frames = video([(90, 30, 200)] * 6)
    frames[:, 5:15, 4:12] = (250, 250, 0)  # the animal
    animal = np.tile([4.0, 5, 12, 15], (6, 1))
    c = id_consistency(frames, animal, dino, image_size=S)
    assert c.n_frames == 6
    assert c.to_first == pytest.approx(1.0, abs=1e-5)
    assert c.to_previous == pytest.approx(1.0, abs=1e-5)


def test_id_consistency_by_hand(dino):
    # three different crops (frame 2 also has no object: dropped when obj is given)
    frames = video([(200, 10, 10), (10, 200, 10), (10, 10, 200), (120, 120, 120)])
    frames[1, 3:9, 3:9] = 255
    box = [2.0, 2, 14, 12]
    animal = np.array([box, box, [np.nan] * 4, box])
    crops = [frames[i, 2:12, 2:14] for i in (0, 1, 3)]
    f = dinov2_features(dino, dinov2_transform(crops, S)).double()
    # k = 1, 2: to first = cos(f1, f0), cos(f2, f0); to previous = cos(f1, f0), cos(f2, f1)
    to_first = (f[1] @ f[0] + f[2] @ f[0]).item() / 2
    to_prev = (f[1] @ f[0] + f[2] @ f[1]).item() / 2
    c = id_consistency(frames, animal, dino, image_size=S)
    assert c.n_frames == 3
    assert c.to_first == pytest.approx(to_first, abs=1e-6)
    assert c.to_previous == pytest.approx(to_prev, abs=1e-6)
    assert c.mean == pytest.approx((to_first + to_prev) / 2, abs=1e-6)
    assert c.to_first < 0.9999  # the crops differ, so this checks something

    # with the object's boxes, frames without an object are left out (official rule)
    obj = np.array([box, [np.nan] * 4, box, box])
    c2 = id_consistency(frames, animal, dino, obj=obj, image_size=S)
    f02 = (f[0] @ f[2]).item()
    assert c2.n_frames == 2 and c2.to_first == pytest.approx(f02, abs=1e-6)
    # fewer than two crops: undefined
    assert math.isnan(id_consistency(frames[:1], animal[:1], dino, image_size=S).mean)


# --------------------------------------------------------------------------- CLIP-IQA


def test_clip_iqa_natural_equals_softmax_by_hand(clip):
    model, processor = clip
    colours = [(30, 30, 30), (200, 10, 90), (255, 255, 255), (0, 128, 255)]
    frames = video(colours, 32, 32)
    got = ClipIqa(model, processor).frame_scores(frames)["natural"]

    with torch.no_grad():
        text = processor.tokenizer(list(NATURAL_PROMPTS), padding=True, return_tensors="pt")
        t = model.get_text_features(text["input_ids"], text["attention_mask"]).pooler_output
        t = t / t.norm(dim=-1, keepdim=True)
        # a constant 32 x 32 frame needs no resize or crop: pixel = (c/255 - mean) / std,
        # rescaled ONCE (a double rescale would give about -mean/std everywhere)
        mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
        pix = torch.stack(
            [
                ((torch.tensor(c) / 255 - mean) / std).view(3, 1, 1).expand(3, 32, 32)
                for c in colours
            ]
        )
        v = model.get_image_features(pixel_values=pix).pooler_output
        v = v / v.norm(dim=-1, keepdim=True)
        logits = 100 * v @ t.T  # torchmetrics' fixed scale, not the model's logit_scale
        want = logits.softmax(dim=-1)[:, 0].double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ((got > 1e-3) & (got < 1 - 1e-3)).any()  # not saturated: the check has teeth
    video_score = ClipIqa(model, processor, batch_size=3)(frames)["natural"]
    assert video_score == pytest.approx(float(want.mean()), abs=1e-5)


def test_local_loading_only(tmp_path, dino, clip):
    with pytest.raises(FileNotFoundError, match="local"):
        load_dinov2("facebook/dinov2-base")
    with pytest.raises(FileNotFoundError, match="local"):
        load_clip(tmp_path / "missing")
    dino.save_pretrained(tmp_path / "dino")
    again = load_dinov2(tmp_path / "dino")
    x = torch.zeros(1, 3, S, S)
    assert torch.equal(again(pixel_values=x).pooler_output, dino(pixel_values=x).pooler_output)
    model, processor = clip
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    m2, p2 = load_clip(tmp_path / "clip")
    frames = video([(200, 10, 90)], 32, 32)
    a = ClipIqa(model, processor).frame_scores(frames)["natural"]
    b = ClipIqa(m2, p2).frame_scores(frames)["natural"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_video_metrics_row_with_models(dino, clip):
    from spatialalign.evaluation.metrics import video_metrics

    frames = video([(200, 10, 10), (10, 200, 10), (10, 10, 200)], 32, 32)
    box = [2.0, 2, 14, 12]
    animal = np.array([box, box, box])
    obj = np.array([box, [np.nan] * 4, box])
    iqa = ClipIqa(*clip)
    row = video_metrics(frames, animal, obj, dino=dino, clip_iqa=iqa, dino_image_size=S)
    c = id_consistency(frames, animal, dino, obj=obj, image_size=S)
    assert row["id_consistency"] == c.mean and row["id_consistency_first"] == c.to_first
    assert row["clip_iqa_natural"] == iqa(frames)["natural"]
