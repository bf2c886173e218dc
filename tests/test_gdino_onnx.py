"""GroundingDINO exported to ONNX vs PyTorch on a tiny random model saved locally.

The model is built from configs with weights re-drawn (tiny_models.reinit_weights) so logits
span tens of units and boxes vary; ``export-onnx`` (the CLI) exports it once per
module. Stated tolerance for ONNX vs PyTorch: logits |d| <= 1e-3 + 1e-3*|ref| with the
same -inf (masked token) pattern, normalised boxes |d| <= 1e-4, detector boxes within
0.01 px, identical labels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shared_data import OFFICIAL_CSV
from spatialalign.cli import main
from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import read_json
from spatialalign.detection.export import natural_frame
from spatialalign.detection.gdino_common import SPECIAL_TOKENS, caption, text_inputs
from spatialalign.detection.gdino_onnx import GroundingDinoOnnxDetector
from spatialalign.detection.gdino_torch import GroundingDinoTorchDetector
from spatialalign.detection.onnx_common import make_session

FRAME = (48, 80)
TEXT_LEN = 16
CLASSES = [("cat", "stump"), ("horse", "tree"), ("brown dog", "red box"), ("fox", "rock")]


pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.slow,
]  # exports and runs tiny GroundingDINO graphs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tiny_models import save_grounding_dino

    root = tmp_path_factory.mktemp("gdino")
    model_dir = save_grounding_dino(root / "model")
    out = root / "onnx"
    main(["export-onnx", "--model-dir", str(model_dir), "--out", str(out),
          "--frame-size", str(FRAME[0]), str(FRAME[1]), "--text-len", str(TEXT_LEN)])  # fmt: skip
    return model_dir, out


def reference(model_dir, frames, class_names):
    """Plain transformers: processor on one image + unpadded caption, model's own text masks."""
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    proc = AutoProcessor.from_pretrained(model_dir)
    model = GroundingDinoForObjectDetection.from_pretrained(model_dir).eval()
    logits, boxes = [], []
    for frame, names in zip(frames, class_names, strict=True):
        inputs = proc(images=frame, text=caption(names), return_tensors="pt")
        with torch.inference_mode():
            out = model(**inputs)
        logits.append(out.logits.numpy())
        boxes.append(out.pred_boxes.numpy())
    return np.concatenate(logits), np.concatenate(boxes), proc


def test_tokenizer_special_ids_match_bert_base(exported):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported[1] / "grounding_dino_processor")
    ids = tok("fox. stump.")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(1012) == 2
    assert tok.pad_token_id == 0 and tok.unk_token_id == 100 and tok.mask_token_id == 103
    assert tok.convert_tokens_to_ids("?") == 1029
    assert set(SPECIAL_TOKENS) == {101, 102, 1012, 1029}
    # a word not in the vocabulary still round-trips through letter pieces
    assert tok.decode(tok("zebra")["input_ids"], skip_special_tokens=True) == "zebra"


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_onnx_matches_pytorch_at_any_batch(exported, batch):
    """Export batch is 2; each sample has its own caption; reference is unpadded transformers."""
    model_dir, out = exported
    frames = np.stack([natural_frame(*FRAME, seed=10 + i) for i in range(batch)])
    names = [CLASSES[i % len(CLASSES)] for i in range(batch)]
    ref_logits, ref_boxes, proc = reference(model_dir, frames, names)

    sess = make_session(out / "grounding_dino.onnx", ["CPUExecutionProvider"])
    texts = [text_inputs(proc.tokenizer, n, TEXT_LEN) for n in names]
    feed = {k: np.concatenate([t[k] for t in texts]) for k in texts[0]}
    pix = proc.image_processor(images=list(frames), return_tensors="np")
    feed["pixel_values"] = pix["pixel_values"].astype(np.float32)
    feed["pixel_mask"] = pix["pixel_mask"].astype(np.int64)
    logits, boxes = sess.run(["logits", "pred_boxes"], feed)

    finite = np.isfinite(ref_logits)
    assert np.array_equal(finite, np.isfinite(logits))
    # outputs are not vanishingly small: logits spread over units, boxes differ per query
    assert ref_logits[finite].std() > 1.0 and ref_boxes[..., 2:].std() > 0.01
    err = np.abs(logits[finite] - ref_logits[finite])
    assert np.all(err <= 1e-3 + 1e-3 * np.abs(ref_logits[finite])), err.max()
    assert np.abs(boxes - ref_boxes).max() <= 1e-4


def test_onnx_detector_equals_torch_detector(exported):
    model_dir, out = exported
    frames = np.stack([natural_frame(*FRAME, seed=i) for i in range(6)])
    names = ["cat", "stump"]
    torch_det = GroundingDinoTorchDetector(str(model_dir)).detect(frames, names)
    onnx = GroundingDinoOnnxDetector(str(out), batch_size=4)  # batches of 4 then 2
    assert onnx.providers == ["CPUExecutionProvider"]
    onnx_det = onnx.detect(frames, names)
    assert len(torch_det) == len(onnx_det) == len(frames)
    assert sum(len(d.boxes) for d in torch_det) > 0  # something to compare
    for a, b in zip(torch_det, onnx_det, strict=True):
        assert a.labels == b.labels
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-2)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
        assert np.all(a.scores > 0.4)


def test_onnx_detector_frame_sizes(exported):
    """Smaller processed frames are zero-padded (pixel_mask 0); larger ones are refused."""
    det = GroundingDinoOnnxDetector(str(exported[1]), box_threshold=0.0)
    res = det.detect(np.stack([natural_frame(40, 60)]), ["cat", "stump"])  # -> 128x192 of 128x213
    assert len(res) == 1 and len(res[0].boxes) == 30  # every query kept at threshold 0
    with pytest.raises(SpatialAlignError, match="re-export with --frame-size"):
        det.detect(np.stack([natural_frame(48, 160)]), ["cat", "stump"])  # -> 67x224


def test_rerun_skips_and_errors_are_one_line(exported, capsys):
    model_dir, out = exported
    side = read_json(out / "grounding_dino.json")
    assert all(r["ok"] for r in side["verification"])
    assert {r["check"] for r in side["verification"]} == {"random", "frame"}
    assert side["image_size"] == [128, 213] and side["text_len"] == TEXT_LEN
    assert sorted(p.name for p in out.iterdir()) == [
        "grounding_dino.json",
        "grounding_dino.onnx",
        "grounding_dino_processor",
    ]
    mtime = (out / "grounding_dino.onnx").stat().st_mtime_ns
    main(["export-onnx", "--model-dir", str(model_dir), "--out", str(out),
          "--frame-size", str(FRAME[0]), str(FRAME[1]), "--text-len", str(TEXT_LEN)])  # fmt: skip
    assert "skipped" in capsys.readouterr().out
    assert (out / "grounding_dino.onnx").stat().st_mtime_ns == mtime

    with pytest.raises(SystemExit) as e:
        main(["export-onnx", "--model-dir", str(out / "nope"), "--out", str(out / "x")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and "\n" not in err

    det = GroundingDinoOnnxDetector(str(out))
    with pytest.raises(SpatialAlignError, match="tokens"):
        det.detect(np.zeros((1, *FRAME, 3), np.uint8), ["a " * 20 + "cat", "stump"])
    with pytest.raises(SpatialAlignError, match="uint8"):
        det.detect(np.zeros((1, *FRAME, 3), np.float32), ["cat", "stump"])


def test_missing_model_dirs_raise(tmp_path):
    with pytest.raises(SpatialAlignError, match="not found"):
        GroundingDinoTorchDetector(str(tmp_path / "missing"))
    with pytest.raises(SpatialAlignError, match="not found"):
        GroundingDinoOnnxDetector(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpatialAlignError, match="export-onnx"):
        GroundingDinoOnnxDetector(str(tmp_path / "empty"))


def test_track_gdino_onnx_end_to_end(exported, tmp_path, capsys):
    """``export-onnx`` output drives ``track --detector gdino-onnx`` (with ONNX SAM refinement)."""

    import pyarrow as pa
    from spatialalign.core.fileio import read_parquet, write_parquet
    from spatialalign.core.schemas import MANIFEST
    from spatialalign.core.video import write_video
    from spatialalign.detection.export import export_sam
    from spatialalign.prompts import read_prompts, write_prompts
    from spatialalign.toy.world import render_clip
    from tiny_models import save_sam

    official = OFFICIAL_CSV
    sam_onnx = tmp_path / "sam_onnx"
    export_sam(save_sam(tmp_path / "sam"), sam_onnx)
    run = tmp_path / "run"
    prompt = read_prompts(official)[0]
    write_prompts([prompt], run / "prompts.parquet")
    path = run / "samples" / "v0.mp4"
    write_video(path, render_clip(prompt, 0).frames, fps=8)
    row = {"sample_id": "v0", "prompt_id": prompt.prompt_id, "seed": 0, "path": str(path)}
    write_parquet(pa.Table.from_pylist([row], MANIFEST), run / "samples" / "manifest.parquet")

    main(["track", str(run), "--detector", "gdino-onnx", "--onnx-dir", str(exported[1]),
          "--sam", str(sam_onnx), "--preset", "toy", "--box-threshold", "0.0"])  # fmt: skip
    assert capsys.readouterr().out.strip().startswith("track: 1 video(s) tracked")
    det = read_parquet(run / "detections.parquet").to_pylist()
    # threshold 0 keeps all 30 queries: every frame is redundant
    assert [(d["status"], d["reason"]) for d in det] == [("rejected", "redundant")]
    assert det[0]["n_redundant"] == len(render_clip(prompt, 0).frames)
