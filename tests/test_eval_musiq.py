"""VBench's imaging quality with a tiny random MUSIQ (pyiqa's architecture, nothing downloaded)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyiqa")
safetensors_torch = pytest.importorskip("safetensors.torch")

from pyiqa.archs.musiq_arch import MUSIQ  # noqa: E402
from spatialalign.core.errors import SpatialAlignError  # noqa: E402
from spatialalign.evaluation.musiq import (  # noqa: E402
    frame_quality,
    imaging_quality,
    load_musiq,
    musiq_class,
    musiq_transform,
    read_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(hidden_size=32, mlp_dim=64, num_heads=2, num_layers=1)


def tiny_musiq(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MUSIQ(pretrained=False, **{"num_class": 1, **TINY, **kwargs}).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_musiq()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("musiq") / "tiny.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    return path


def video(n: int = 3, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def by_hand(model, frames: np.ndarray) -> list[float]:
    """MUSIQ of each frame as VBench feeds it: [1, 3, H, W] floats in [0, 1]."""
    out = []
    with torch.inference_mode():
        for f in frames:
            x = torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0
            out.append(float(model(x)))
    return out


# ------------------------------------------------------------------------- loading


def test_safetensors_round_trip_gives_the_same_scores(model, weights):
    loaded = load_musiq(weights, **TINY)
    assert not loaded.training
    frames = video()
    assert frame_quality(loaded, frames).tolist() == by_hand(model, frames)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_pth_of_plain_tensors_loads_with_weights_only(model, tmp_path):
    state = model.state_dict()
    torch.save(state, tmp_path / "plain.pth")
    # pyiqa's wrappers: a "params" key and DataParallel's "module." prefix
    torch.save({"params": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    frames = video(n=1)
    want = by_hand(model, frames)
    for name in ("plain.pth", "wrapped.pt"):
        assert frame_quality(load_musiq(tmp_path / name, **TINY), frames).tolist() == want


def _write_marker(path: str) -> str:
    with open(path, "w") as f:
        f.write("unpickled")
    return path


class Payload:
    """Unpickling this calls ``_write_marker(path)``: code that must never run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_write_marker, (self.path,))


def test_a_pickled_object_is_refused_and_never_runs(model, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({**model.state_dict(), "x": Payload(str(marker))}, evil)
    with pytest.raises(SpatialAlignError, match="convert the checkpoint to safetensors"):
        load_musiq(evil, **TINY)
    with pytest.raises(SpatialAlignError, match="never unpickled"):
        read_weights(evil)
    assert not marker.exists()
    # the payload is real: a plain (unsafe) unpickle of the same kind of file does run it
    control, control_marker = tmp_path / "control.pth", tmp_path / "control_ran"
    torch.save({"x": Payload(str(control_marker))}, control)
    torch.load(control, weights_only=False)
    assert control_marker.read_text() == "unpickled" and not marker.exists()


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "musiq_spaq_ckpt-358bb6af.pth"
    with pytest.raises(FileNotFoundError, match="nothing is downloaded") as e:
        load_musiq(path)
    assert str(path) in str(e.value)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    deeper = tmp_path / "deeper.safetensors"
    safetensors_torch.save_file(tiny_musiq(num_layers=2).state_dict(), str(deeper))
    with pytest.raises(SpatialAlignError, match=r"do not fit.*unexpected.*encoderblock_1"):
        load_musiq(deeper, **TINY)
    wider = tmp_path / "wider.safetensors"
    safetensors_torch.save_file(tiny_musiq(hidden_size=48).state_dict(), str(wider))
    with pytest.raises(SpatialAlignError, match="of another shape"):
        load_musiq(wider, **TINY)
    # AVA's ten-class head (a Sequential) is not SPAQ's one-output linear head
    ava = tmp_path / "ava.safetensors"
    safetensors_torch.save_file(tiny_musiq(num_class=10).state_dict(), str(ava))
    with pytest.raises(
        SpatialAlignError,
        match=r"2 missing \(head\.bias, head\.weight\); 2 unexpected.*musiq_spaq_ckpt",
    ):
        load_musiq(ava, **TINY)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], not_a_dict)
    with pytest.raises(SpatialAlignError, match="state dict of tensors"):
        load_musiq(not_a_dict, **TINY)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors")
    with pytest.raises(SpatialAlignError, match="not a readable safetensors file"):
        load_musiq(garbage, **TINY)


def test_missing_pyiqa_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiqa.archs.musiq_arch", None)  # import -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'spatialalign\[iqa\]'"):
        musiq_class()


# ---------------------------------------------------------------------- arithmetic


def test_imaging_quality_is_the_frame_mean_over_100(model):
    frames = video(n=3, h=64, w=96, seed=1)
    scores = by_hand(model, frames)
    assert len(set(scores)) == 3  # the frames do score differently
    assert imaging_quality(model, frames) == pytest.approx(sum(scores) / 3 / 100, rel=1e-12)
    assert math.isnan(imaging_quality(model, frames[:0]))


def test_a_model_in_training_mode_is_refused(model):
    trained = tiny_musiq().train()
    with pytest.raises(ValueError, match="eval mode"):
        imaging_quality(trained, video(n=1))


@pytest.mark.parametrize(
    ("hw", "want"),
    [
        ((600, 1000), (307, 512)),  # scale 0.512: int(307.2), int(512.0)
        ((1000, 600), (512, 307)),
        ((480, 832), (295, 512)),  # Wan's 832 x 480: int(295.38...)
        ((512, 300), (512, 300)),  # longer side 512: not resized
        ((64, 96), (64, 96)),
    ],
)
def test_longer_side_rule(hw, want):
    frames = np.zeros((2, *hw, 3), dtype=np.uint8)
    x = musiq_transform(frames)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, *want)


def test_transform_is_vbenchs_torchvision_resize_then_255():
    tv = pytest.importorskip("torchvision.transforms")
    frames = video(n=2, h=520, w=700, seed=2)
    x = musiq_transform(frames)
    # VBench: torch.Tensor(uint8 video) -> Resize (torchvision < 0.16: no antialias) -> / 255
    ref = torch.Tensor(frames).permute(0, 3, 1, 2)
    ref = tv.Resize(size=(int(512 / 700 * 520), int(512 / 700 * 700)), antialias=False)(ref)
    # two libraries (ours vs torchvision): one float32 ulp of 255 is 1.5e-5, 6e-8 after / 255;
    # a bilinear mix of four such terms stays within a few -- 1e-6 absolute
    torch.testing.assert_close(x, ref / 255.0, rtol=0, atol=1e-6)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    small = video(n=1, h=64, w=96)
    assert torch.equal(
        musiq_transform(small), torch.from_numpy(small).permute(0, 3, 1, 2).float() / 255.0
    )


# ------------------------------------------------------------------ the metrics row


def test_video_metrics_fills_imaging_quality_only_with_a_model(model):
    from spatialalign.evaluation.metrics import METRIC_COLUMNS, video_metrics

    frames = video(n=3, seed=3)
    animal = np.tile([4.0, 4, 40, 40], (3, 1))
    obj = np.tile([50.0, 10, 90, 60], (3, 1))
    with_model = video_metrics(frames, animal, obj, musiq=model)
    assert list(with_model) == list(METRIC_COLUMNS)
    assert with_model["imaging_quality"] == imaging_quality(model, frames)
    without = video_metrics(frames, animal, obj)
    assert math.isnan(without["imaging_quality"])
    # the other columns do not depend on MUSIQ
    for c in METRIC_COLUMNS:
        if c != "imaging_quality":
            a, b = with_model[c], without[c]
            assert (math.isnan(a) and math.isnan(b)) or a == b


def test_eval_refuses_musiq_without_pyiqa_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util

    from spatialalign.evaluation.eval_run import EvalRunConfig, check_inputs

    weights = tmp_path / "musiq.pth"
    weights.write_bytes(b"")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyiqa" else find_spec(name, *a),
    )
    with pytest.raises(SpatialAlignError, match=r"--musiq needs pyiqa.*spatialalign\[iqa\]"):
        check_inputs(EvalRunConfig(prompts="toy-test:2", musiq=str(weights)))
