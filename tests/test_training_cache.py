"""The training cache: encode once, re-encode exactly what changed (toy and tiny Wan)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.core.video import read_video, write_video  # noqa: E402
from spatialalign.models.toy.pipeline import ToyPipeline  # noqa: E402
from spatialalign.training.cache import (  # noqa: E402
    ToyCacheBackend,
    WanCacheBackend,
    build_cache,
    load_cache,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [
    ("p0", "In a garden, a fox is on the left of a stump, then the fox runs to the right of it."),
    ("p1", "In a kitchen, a cat is on the top of a box, then the cat jumps to the left of it."),
]


def _clip(seed: int, shape=(9, 16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_toy_cache_encodes_once_and_redoes_what_changed(tmp_path):
    pipe = ToyPipeline.random(0)
    videos = []
    for i in range(3):
        videos.append((f"s{i}", write_video(tmp_path / f"s{i}.mp4", _clip(i))))
    cache = tmp_path / "cache"
    backend = ToyCacheBackend(pipe, "random0")
    rep = build_cache(cache, videos, PROMPTS, backend, batch_size=2, progress=False)
    assert (rep.latents_encoded, rep.text_encoded, rep.reasons["new"]) == (3, 2, 5)
    lat, text = load_cache(cache, ["s0", "s1", "s2"], ["p0", "p1"])
    want = pipe.vae.encode_frames(read_video(videos[1][1])[None])[0]
    torch.testing.assert_close(lat["s1"], want)  # normalised, as ToyPipeline decodes
    assert lat["s0"].shape == pipe.latent_shape
    torch.testing.assert_close(text["p1"], pipe.encode_prompt([PROMPTS[1][1]])[0])

    rep = build_cache(cache, videos, PROMPTS, backend, progress=False)
    assert (rep.latents_encoded, rep.text_encoded) == (0, 0)
    assert (rep.latents_reused, rep.text_reused) == (3, 2)

    os.utime(videos[0][1], ns=(1, 1))  # touched, same content: reused
    rep = build_cache(cache, videos, PROMPTS, backend, progress=False)
    assert rep.latents_encoded == 0

    write_video(videos[2][1], _clip(99))  # a changed video and a changed prompt
    prompts = [PROMPTS[0], ("p1", PROMPTS[1][1].replace("cat", "dog"))]
    rep = build_cache(cache, videos, prompts, backend, progress=False)
    assert (rep.latents_encoded, rep.text_encoded) == (1, 1)
    assert rep.reasons == {"source changed": 2} and "2 source changed" in rep.line()
    lat, text = load_cache(cache, ["s2"], ["p1"])
    torch.testing.assert_close(lat["s2"], pipe.vae.encode_frames(_read(videos[2][1]))[0])
    torch.testing.assert_close(text["p1"], pipe.encode_prompt([prompts[1][1]])[0])

    rep = build_cache(cache, videos, prompts, ToyCacheBackend(pipe, "other"), progress=False)
    assert rep.reasons == {"model changed": 5}

    with pytest.raises(SpatialAlignError, match="not in the cache"):
        load_cache(cache, ["s9"], [])
    with pytest.raises(SpatialAlignError, match="not found"):
        build_cache(cache, [("s9", tmp_path / "none.mp4")], [], backend, progress=False)
    with pytest.raises(SpatialAlignError, match="sample_id"):
        build_cache(cache, [("../x", videos[0][1])], [], backend, progress=False)
    write_video(tmp_path / "big.mp4", _clip(0, (9, 32, 32, 3)))
    with pytest.raises(SpatialAlignError, match="does not fit"):
        build_cache(cache, [("big", tmp_path / "big.mp4")], [], backend, progress=False)


def _read(path):
    return read_video(path)[None]


def test_wan_cache_normalises_like_the_pipeline_decodes(tmp_path):
    from diffusers import WanPipeline
    from shared_data import OFFICIAL_CSV
    from spatialalign.prompts import read_prompts
    from test_sampling_wan import build_tiny_wan

    prompts = read_prompts(OFFICIAL_CSV)[:1]
    pipe = WanPipeline.from_pretrained(build_tiny_wan(tmp_path / "wan", prompts))
    path = write_video(tmp_path / "v.mp4", _clip(0, (5, 16, 16, 3)))
    backend = WanCacheBackend(pipe, "tiny", max_sequence_length=16)
    build_cache(tmp_path / "c", [("v", path)], [("p", prompts[0].text)], backend, progress=False)
    lat, text = load_cache(tmp_path / "c", ["v"], ["p"])
    assert lat["v"].shape == (16, 2, 2, 2)
    cfg = pipe.vae.config
    # WanPipeline decodes z = latents / (1 / std) + mean: undo the cache's normalisation
    z = lat["v"][None] / (1.0 / torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1))
    z = z + torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    x = torch.from_numpy(read_video(path)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    torch.testing.assert_close(z, pipe.vae.encode(x).latent_dist.mode())
    emb, _ = pipe.encode_prompt(prompts[0].text, do_classifier_free_guidance=False,
                                max_sequence_length=16)  # fmt: skip
    torch.testing.assert_close(text["p"], emb[0])
    assert text["p"].shape == (16, 32)
