"""SAM box refinement: mask -> tight box, torch vs exported ONNX on a tiny random SAM."""

from __future__ import annotations

import numpy as np
import pytest
from spatialalign.core.errors import SpatialAlignError
from spatialalign.detection.export import ExportMismatch, export_sam, natural_frame
from spatialalign.detection.sam import (
    SamOnnxRefiner,
    SamRefiner,
    SamTorchRefiner,
    mask_to_xyxy,
)

FRAME = (48, 80)
BOXES = np.array([[5, 5, 40, 30], [30, 10, 70, 45], [0, 20, 20, 47]], np.float32)


pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.slow,
]  # exports and runs tiny SAM graphs


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    from tiny_models import save_sam

    root = tmp_path_factory.mktemp("sam")
    model_dir = save_sam(root / "model")
    side = export_sam(model_dir, root / "onnx")
    return model_dir, root / "onnx", side


def test_mask_to_xyxy_matches_hand_computed_boxes():
    masks = np.zeros((3, 10, 12), bool)
    masks[0, 2:5, 3:9] = True  # rows 2..4, cols 3..8
    masks[1, 7, 11] = True
    assert mask_to_xyxy(masks)[:2].tolist() == [[3, 2, 8, 4], [11, 7, 11, 7]]
    assert np.isnan(mask_to_xyxy(masks)[2]).all()


def test_sam_export_verified(sam):
    _, onnx_dir, side = sam
    assert [r["check"] for r in side["verification"]] == ["encoder", "decoder", "decoder"]
    assert max(r["max_abs"] for r in side["verification"]) <= side["tolerance"]["masks_atol"]


def test_sam_onnx_matches_torch(sam):
    model_dir, onnx_dir, _ = sam
    torch_ref, onnx_ref = SamTorchRefiner(model_dir), SamOnnxRefiner(onnx_dir)
    for seed in range(3):
        frame = natural_frame(*FRAME, seed=seed)
        inputs = torch_ref.processor(
            images=frame, input_boxes=[BOXES.tolist()], return_tensors="np"
        )
        pv, bx = inputs["pixel_values"].astype(np.float32), inputs["input_boxes"].astype(np.float32)
        a, b = torch_ref.low_res_masks(pv, bx), onnx_ref.low_res_masks(pv, bx)
        assert a.shape == (1, 3, 1, 32, 32) and a.std() > 0.1  # not vanishingly small
        np.testing.assert_allclose(b, a, atol=1e-4)
        ma, mb = torch_ref.masks(frame, BOXES), onnx_ref.masks(frame, BOXES)
        assert ma.shape == (3, *FRAME) and 0.05 < ma.mean() < 0.95
        assert (ma != mb).mean() < 1e-3  # only pixels whose logit is ~0 may flip
        np.testing.assert_allclose(
            onnx_ref.refine(frame, BOXES), torch_ref.refine(frame, BOXES), atol=1.0
        )


def test_refine_is_the_tight_box_of_the_mask_and_keeps_boxes_of_empty_masks(sam):
    model_dir = sam[0]
    ref = SamTorchRefiner(model_dir)
    frame = natural_frame(*FRAME, seed=7)
    masks = ref.masks(frame, BOXES)
    expected = mask_to_xyxy(masks)
    expected[np.isnan(expected).any(axis=1)] = BOXES[np.isnan(expected).any(axis=1)]
    np.testing.assert_array_equal(ref.refine(frame, BOXES), expected)
    assert ref.refine(frame, np.zeros((0, 4), np.float32)).shape == (0, 4)

    class Empty(SamRefiner):  # a network whose masks are empty everywhere
        processor = ref.processor

        def low_res_masks(self, pixel_values, boxes):
            return -np.ones((1, boxes.shape[1], 1, 32, 32), np.float32)

    np.testing.assert_array_equal(Empty().refine(frame, BOXES), BOXES)


def test_sam_export_refuses_a_disagreeing_graph(sam, tmp_path):
    import onnx
    from onnx import numpy_helper

    def tamper(enc_path, dec_path):
        model = onnx.load(str(dec_path))
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) > 100:
                arr = numpy_helper.to_array(init) * -1.0
                init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
        onnx.save(model, str(dec_path))

    with pytest.raises(ExportMismatch):
        export_sam(sam[0], tmp_path / "out", _tamper=tamper)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_sam_dirs(tmp_path):
    with pytest.raises(SpatialAlignError, match="not found"):
        SamTorchRefiner(tmp_path / "nope")
    with pytest.raises(SpatialAlignError, match="export-onnx --sam"):
        SamOnnxRefiner(tmp_path)


def test_gdino_torch_with_sam_refines_its_boxes(sam, tmp_path):
    from spatialalign.detection.gdino_torch import GroundingDinoTorchDetector
    from tiny_models import save_grounding_dino

    gdino = save_grounding_dino(tmp_path / "gdino")
    frames = np.stack([natural_frame(*FRAME, seed=i) for i in range(2)])
    plain = GroundingDinoTorchDetector(str(gdino), box_threshold=0.3).detect(
        frames, ["cat", "stump"]
    )
    refined = GroundingDinoTorchDetector(str(gdino), box_threshold=0.3, sam=str(sam[0]))
    got = refined.detect(frames, ["cat", "stump"])
    assert sum(len(d.boxes) for d in plain) > 0
    # one code path in one process (the same per-frame forward, then the same refine call on
    # the same boxes): bit equality holds on any machine (tests/README.md)
    for frame, p, r in zip(frames, plain, got, strict=True):
        assert r.labels == p.labels
        np.testing.assert_array_equal(r.scores, p.scores)
        np.testing.assert_array_equal(r.boxes, refined.sam.refine(frame, p.boxes))
