"""``export-onnx`` refuses to write a graph that disagrees with PyTorch, and writes atomically."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from spatialalign.core.fileio import read_json
from spatialalign.detection.export import (
    ExportMismatch,
    ExportSettings,
    compare,
    export_grounding_dino,
)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # ONNX exports


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
