"""``export-onnx`` refuses to write a graph that disagrees with PyTorch, and writes atomically."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from spatialalign.core.fileio import read_json, write_json
from spatialalign.detection.export import (
    GDINO_FILE,
    GDINO_SIDECAR,
    SAM_DECODER_FILE,
    SAM_ENCODER_FILE,
    SAM_SIDECAR,
    ExportMismatch,
    ExportSettings,
    SamExportSettings,
    compare,
    export_grounding_dino,
    gdino_expected_sidecar,
    gdino_exported,
    random_sam_boxes,
    sam_exported,
    verify_sam,
)

slow = pytest.mark.slow  # ONNX exports
pytestmark = [pytest.mark.usefixtures("one_torch_thread")]


def corrupt_largest_weight(path) -> None:
    """Scales the largest float initializer of the graph at ``path`` by 1.5, in place."""
    model = onnx.load(str(path))
    init = max(
        (t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
        key=lambda t: int(np.prod(t.dims)),
    )
    arr = numpy_helper.to_array(init) * 1.5
    init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
    onnx.save(model, str(path))


@slow
def test_export_refuses_a_graph_that_disagrees(tmp_path):
    from tiny_models import save_grounding_dino

    model_dir = save_grounding_dino(tmp_path / "model")
    out = tmp_path / "onnx"
    settings = ExportSettings(frame_size=(48, 80), text_len=16)
    with pytest.raises(ExportMismatch, match="disagrees with PyTorch"):
        export_grounding_dino(model_dir, out, settings, _tamper=corrupt_largest_weight)
    # nothing written: no graph, no sidecar, no processor, no temporary files
    assert not out.exists() or list(out.iterdir()) == []

    # a failed forced re-export leaves the previous good export untouched
    good = export_grounding_dino(model_dir, out, settings)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ExportMismatch):
        export_grounding_dino(model_dir, out, settings, force=True, _tamper=corrupt_largest_weight)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert read_json(out / "grounding_dino.json") == good


def test_compare_tolerances():
    s = ExportSettings()
    ref = np.array([[[1.0, 50.0, -np.inf]]], np.float32)
    boxes = np.full((1, 1, 4), 0.5, np.float32)
    assert compare([ref, boxes], [ref + 1e-3, boxes + 5e-4], s)["ok"]
    # 50 * 1e-3 + 2e-3 = 0.052 allowed on the large logit, not 0.06
    bad = ref.copy()
    bad[0, 0, 1] += 0.06
    assert not compare([ref, boxes], [bad, boxes], s)["ok"]
    # a masked (-inf) token that became finite is a disagreement
    unmasked = ref.copy()
    unmasked[0, 0, 2] = -1e4
    assert not compare([ref, boxes], [unmasked, boxes], s)["ok"]
    assert not compare([ref, boxes], [ref, boxes + 2e-3], s)["ok"]
    assert not compare([ref, boxes], [np.full_like(ref, np.nan), boxes], s)["ok"]


def test_compare_tolerates_a_few_reordered_query_slots():
    """A top-k near-tie swaps a couple of slots: <= 1% of slots may differ, not more."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 10, size=(2, 200, 8)).astype(np.float32)
    logits[..., 6:] = -np.inf
    boxes = rng.uniform(0, 1, size=(2, 200, 4)).astype(np.float32)
    s = ExportSettings()
    swapped_l, swapped_b = logits.copy(), boxes.copy()
    swapped_l[0, [10, 11]] = logits[0, [11, 10]]
    swapped_b[0, [10, 11]] = boxes[0, [11, 10]]
    res = compare([logits, boxes], [swapped_l, swapped_b], s)
    assert res["ok"] and res["slots_differ"] == 2 and res["slots_agree"] == 398 / 400
    assert res["max_abs_boxes_agreeing"] == 0.0
    many_l, many_b = logits.copy(), boxes.copy()
    many_b[0, :5] += 0.1  # 5 of 400 slots = 1.25% > 1%
    assert not compare([logits, boxes], [many_l, many_b], s)["ok"]


# --- the steps of the exports, one at a time ----------------------------------------------


def test_an_export_is_reused_only_when_complete_and_of_the_same_settings(tmp_path):
    expect = gdino_expected_sidecar(tmp_path / "model", ExportSettings(text_len=16), (64, 96))
    assert expect["image_size"] == [64, 96] and expect["text_len"] == 16
    assert not gdino_exported(tmp_path, expect)  # nothing there
    write_json({**expect, "versions": {}}, tmp_path / GDINO_SIDECAR)
    assert not gdino_exported(tmp_path, expect)  # sidecar without its graph
    (tmp_path / GDINO_FILE).write_bytes(b"graph")
    assert gdino_exported(tmp_path, expect)
    assert not gdino_exported(tmp_path, {**expect, "opset": expect["opset"] + 1})

    sam = {"format": expect["format"], "source": "s", "opset": 17}
    write_json({**sam, "image_size": 64}, tmp_path / SAM_SIDECAR)
    (tmp_path / SAM_ENCODER_FILE).write_bytes(b"enc")
    assert sam_exported(tmp_path, sam) is None  # no decoder yet
    (tmp_path / SAM_DECODER_FILE).write_bytes(b"dec")
    assert sam_exported(tmp_path, sam) == {**sam, "image_size": 64}
    assert sam_exported(tmp_path, {**sam, "source": "other"}) is None


def test_random_sam_boxes_lie_inside_the_image():
    boxes = random_sam_boxes(np.random.default_rng(0), 64, 3, 5)
    assert boxes.shape == (3, 5, 4) and boxes.dtype == np.float32
    assert (boxes[..., 2:] > boxes[..., :2]).all() and boxes.min() >= 0 and boxes.max() <= 64


def _encoder(pixel_values):
    """A stand-in vision encoder graph."""
    return pixel_values.mean(axis=1, keepdims=True)


def _decoder(image_embeddings, input_boxes):
    """A stand-in mask decoder graph."""
    return input_boxes.sum(axis=-1) + image_embeddings.mean()


def test_verify_sam_refuses_a_disagreeing_graph(tmp_path, monkeypatch):
    """verify_sam on stand-in graphs: within ``masks_atol`` a report, beyond it a mismatch."""
    from spatialalign.detection import export

    offset = {"value": 0.0}
    monkeypatch.setattr(export, "run_torch", lambda m, inputs, names: [m(**inputs)])
    monkeypatch.setattr(
        export,
        "run_onnx",
        lambda path, inputs: [
            (_encoder if path == "enc" else _decoder)(**inputs) + offset["value"]
        ],
    )
    rng = np.random.default_rng(0)
    settings = SamExportSettings(masks_atol=1e-3)
    report = verify_sam(_encoder, _decoder, "enc", "dec", rng, 8, settings)
    assert [(r["check"], r["batch"]) for r in report] == [
        ("encoder", 3),
        ("decoder", 1),
        ("decoder", 3),
    ]
    assert all(r["max_abs"] == 0 for r in report)
    offset["value"] = 0.01
    with pytest.raises(ExportMismatch, match="max \\|d\\| 0.01 > 0.001"):
        verify_sam(_encoder, _decoder, "enc", "dec", rng, 8, settings)
