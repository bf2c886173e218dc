"""Export GroundingDINO (and optionally SAM) to ONNX, verified against PyTorch on the spot.

GroundingDINO graph: inputs ``pixel_values`` [B,3,H,W] float32, ``pixel_mask`` [B,H,W],
``input_ids`` / ``attention_mask`` / ``token_type_ids`` [B,N], the phrase masks
``text_self_attention_masks`` [B,N,N] bool and ``position_ids`` [B,N]; outputs ``logits``
[B,Q,max_text_len] and ``pred_boxes`` [B,Q,4] (cxcywh, normalised). The image size
(H, W) and text length N are fixed, the batch axis is dynamic. The phrase masks are
computed outside the graph (transformers computes them from ``input_ids`` with
cummax/isin), so the caption is never baked in.

The legacy TorchScript exporter is used: ``dynamo=True`` fails on transformers' Swin
backbone with a symbolic batch (a ``view`` of a non-contiguous window tensor), while
the traced graph matches PyTorch to ~1e-5 at every batch size.

Nothing is written unless the exported graph agrees with PyTorch (random inputs at a
batch size other than the export batch, with different captions per sample and a
padded image, plus a natural-looking frame through the real processor); every file is
written atomically and the JSON sidecar, written last, marks a finished export.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.fileio import atomic_path, read_json, write_json
from spatialalign.detection.gdino_common import (
    load_model,
    load_processor,
    pad_pixels,
    text_inputs,
)
from spatialalign.detection.onnx_common import (
    GDINO_FILE,
    GDINO_PROCESSOR_DIR,
    GDINO_SIDECAR,
    SAM_DECODER_FILE,
    SAM_ENCODER_FILE,
    SAM_PROCESSOR_DIR,
    SAM_SIDECAR,
)
from spatialalign.detection.sam import load_sam_model, load_sam_processor, sam_export_modules

GDINO_INPUTS = (
    "pixel_values",
    "pixel_mask",
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "text_self_attention_masks",
    "position_ids",
)
GDINO_OUTPUTS = ("logits", "pred_boxes")
SIDECAR_FORMAT = 1
VERIFY_CLASSES = (("cat", "stump"), ("horse", "tree"), ("brown dog", "red box"))


@dataclass
class ExportSettings:
    """What the exported GroundingDINO graph is fixed to, and how strictly it is verified."""

    frame_size: tuple[int, int] = (480, 832)
    """(height, width) of the videos; the graph's image size is what the processor makes of it."""
    image_size: tuple[int, int] | None = None
    """(height, width) of ``pixel_values``; None = the processor's size for ``frame_size``."""
    text_len: int = 32
    """Padded caption length in tokens."""
    opset: int = 17
    export_batch: int = 2
    verify_batch: int = 3
    """Batch size of the random verification inputs (deliberately != export_batch)."""
    logits_atol: float = 2e-3
    logits_rtol: float = 1e-3
    boxes_atol: float = 1e-3
    min_slot_agreement: float = 0.99
    """Fraction of query slots that must agree (see :func:`compare`)."""
    box_threshold: float = 0.4
    text_threshold: float = 0.3
    seed: int = 0
    extra: dict = field(default_factory=dict)


class ExportMismatch(SpatialAlignError):
    """The ONNX graph disagrees with PyTorch; nothing was written."""


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def processed_size(processor, frame_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of ``pixel_values`` the image processor makes of a frame of ``frame_size``."""
    frame = np.zeros((*frame_size, 3), dtype=np.uint8)
    pv = processor.image_processor(images=frame, return_tensors="np")["pixel_values"]
    return int(pv.shape[-2]), int(pv.shape[-1])


def natural_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic frame with smooth sky/ground, a few blobs and some texture."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    img = np.empty((height, width, 3), dtype=np.float32)
    ground = y > 0.55
    img[..., 0] = np.where(ground, 90 + 40 * y, 120 + 60 * y)
    img[..., 1] = np.where(ground, 140 - 30 * y, 170 + 40 * y)
    img[..., 2] = np.where(ground, 60 + 0 * x, 235 - 40 * y)
    for _ in range(4):
        cy, cx = rng.uniform(0.3, 0.85), rng.uniform(0.1, 0.9)
        ry, rx = rng.uniform(0.05, 0.15), rng.uniform(0.04, 0.15)
        blob = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        img[blob] = rng.uniform(20, 230, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def grounding_dino_wrapper(model):
    """An ``nn.Module`` taking the phrase masks / position ids as inputs (see module doc)."""
    import torch
    from transformers.models.grounding_dino import modeling_grounding_dino as mgd

    class GroundingDinoOnnx(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            pixel_values,
            pixel_mask,
            input_ids,
            attention_mask,
            token_type_ids,
            text_self_attention_masks,
            position_ids,
        ):
            original = mgd.generate_masks_with_special_tokens_and_transfer_map
            mgd.generate_masks_with_special_tokens_and_transfer_map = lambda ids, special_tokens: (
                text_self_attention_masks,
                position_ids,
            )
            try:
                out = self.model(
                    pixel_values=pixel_values,
                    pixel_mask=pixel_mask,
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                    return_dict=True,
                )
            finally:
                mgd.generate_masks_with_special_tokens_and_transfer_map = original
            return out.logits, out.pred_boxes

    # the exporter restores the wrapper's train/eval mode recursively after export: it must
    # be created in eval mode or the model would come back with dropout on
    return GroundingDinoOnnx().eval()


def gdino_verification_inputs(
    processor, settings: ExportSettings, image_size: tuple[int, int], frame: np.ndarray
) -> list[dict[str, np.ndarray]]:
    """Random batch (different captions, one padded image) + one processed natural frame."""
    rng = np.random.default_rng(settings.seed + 1)
    h, w = image_size
    b = settings.verify_batch
    texts = [
        text_inputs(processor.tokenizer, VERIFY_CLASSES[i % len(VERIFY_CLASSES)], settings.text_len)
        for i in range(b)
    ]
    rand = {k: np.concatenate([t[k] for t in texts]) for k in texts[0]}
    rand["pixel_values"] = rng.normal(0, 1, size=(b, 3, h, w)).astype(np.float32)
    mask = np.ones((b, h, w), dtype=np.int64)
    mask[-1, :, (3 * w) // 4 :] = 0
    mask[-1, (3 * h) // 4 :, :] = 0
    rand["pixel_mask"] = mask

    pix = processor.image_processor(images=frame, return_tensors="np")
    pv, pm = pad_pixels(pix["pixel_values"], pix["pixel_mask"], image_size)
    real = dict(text_inputs(processor.tokenizer, VERIFY_CLASSES[0], settings.text_len))
    real["pixel_values"], real["pixel_mask"] = pv, pm
    return [rand, real]


def compare(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], settings: ExportSettings) -> dict:
    """ONNX vs PyTorch (logits, boxes), query slot by query slot.

    A slot agrees when its boxes are within ``boxes_atol`` and its logits within
    ``logits_atol + logits_rtol*|ref|`` with the same ``-inf`` (masked token) pattern.
    ``ok`` when every slot agrees, or when at least ``min_slot_agreement`` of them do:
    GroundingDINO picks its queries with a top-k over ~20k encoder proposals, and two
    proposals whose scores are within float noise can swap ranks between PyTorch and
    ONNX Runtime, which changes those few slots only. A real export bug (a wrong op or
    weight) changes essentially every slot.
    """
    logits, boxes = (np.asarray(x, dtype=np.float64) for x in ref)
    g_logits, g_boxes = (np.asarray(x, dtype=np.float64) for x in got)
    if logits.shape != g_logits.shape or boxes.shape != g_boxes.shape:
        return {"ok": False, "max_abs_logits": float("inf"), "max_abs_boxes": float("inf")}
    finite = np.isfinite(logits)
    same_pattern = np.isfinite(g_logits) == finite
    a = np.where(finite, logits, 0.0)
    b = np.where(finite, np.nan_to_num(g_logits, nan=np.inf, posinf=np.inf, neginf=-np.inf), 0.0)
    err = np.abs(a - b)
    logit_ok = (err <= settings.logits_atol + settings.logits_rtol * np.abs(a)) & same_pattern
    box_err = np.abs(boxes - g_boxes)
    slot_ok = logit_ok.all(-1) & (np.nan_to_num(box_err, nan=np.inf) <= settings.boxes_atol).all(-1)
    agree = float(slot_ok.mean())
    return {
        "ok": bool(slot_ok.all() or agree >= settings.min_slot_agreement),
        "slots_agree": agree,
        "slots_differ": int((~slot_ok).sum()),
        "max_abs_logits": float(np.nan_to_num(err[finite], nan=np.inf).max(initial=0.0)),
        "max_abs_boxes": float(np.nan_to_num(box_err, nan=np.inf).max(initial=0.0)),
        "max_abs_logits_agreeing": float(err[slot_ok][finite[slot_ok]].max(initial=0.0)),
        "max_abs_boxes_agreeing": float(box_err[slot_ok].max(initial=0.0)),
    }


def run_torch(module, inputs: dict[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in names]
    with torch.inference_mode():
        out = module(*args)
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [o.float().numpy() for o in out]


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: inputs[n] for n in names})


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silences the tracer's warnings about Python values (expected with fixed shapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def torch_export(module, args: tuple, path: Path, names, outputs, dynamic_axes, opset) -> None:
    import torch

    # no autograd graph: tracing a big model would otherwise keep every activation
    module.requires_grad_(False)
    with quiet_export(), torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=list(names),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def gdino_exported(out_dir: Path, sidecar_expect: dict) -> bool:
    """True when ``out_dir`` already holds a finished export with the same settings."""
    side = out_dir / GDINO_SIDECAR
    if not (side.is_file() and (out_dir / GDINO_FILE).is_file()):
        return False
    have = read_json(side)
    return all(have.get(k) == v for k, v in sidecar_expect.items())


def gdino_expected_sidecar(model_dir: str | Path, settings: ExportSettings, image_size) -> dict:
    """The sidecar fields an existing export must match to be reused."""
    return {
        "format": SIDECAR_FORMAT,
        "source": str(Path(model_dir).resolve()),
        "image_size": list(image_size),
        "text_len": settings.text_len,
        "opset": settings.opset,
    }


def gdino_export_example(processor, settings: ExportSettings, image_size) -> tuple[tuple, dict]:
    """The traced example inputs (``export_batch`` copies of one prompt, random pixels from
    ``settings.seed``) and the dynamic batch axes of every input and output."""
    import torch

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    b = settings.export_batch
    text = text_inputs(processor.tokenizer, VERIFY_CLASSES[0], settings.text_len)
    example = {k: np.repeat(v, b, axis=0) for k, v in text.items()}
    example["pixel_values"] = rng.normal(0, 1, size=(b, 3, *image_size)).astype(np.float32)
    example["pixel_mask"] = np.ones((b, *image_size), dtype=np.int64)
    args = tuple(torch.from_numpy(example[n]) for n in GDINO_INPUTS)
    dynamic = {n: {0: "batch"} for n in (*GDINO_INPUTS, *GDINO_OUTPUTS)}
    return args, dynamic


def verify_gdino(wrapper, onnx_path: Path, checks, settings: ExportSettings) -> list[dict]:
    """Compares the exported graph with PyTorch on each check's inputs; the report, or
    :class:`ExportMismatch` on the first disagreement."""
    report = []
    for name, inputs in zip(("random", "frame"), checks, strict=True):
        res = compare(
            run_torch(wrapper, inputs, GDINO_INPUTS), run_onnx(onnx_path, inputs), settings
        )
        report.append({"check": name, "batch": int(len(inputs["input_ids"])), **res})
        if not res["ok"]:
            raise ExportMismatch(
                f"exported GroundingDINO disagrees with PyTorch on the {name} check "
                f"({res.get('slots_differ', 'all')} query slots differ; max |d logits| "
                f"{res['max_abs_logits']:.3g}, max |d boxes| {res['max_abs_boxes']:.3g}); "
                "nothing written"
            )
    return report


def gdino_sidecar(expect: dict, settings: ExportSettings, model, report: list[dict]) -> dict:
    """What ``gdino_export.json`` records: the settings, the model's sizes, the tolerances,
    the verification report and the library versions."""
    return {
        **expect,
        "onnx": GDINO_FILE,
        "processor_dir": GDINO_PROCESSOR_DIR,
        "frame_size": list(settings.frame_size),
        "inputs": list(GDINO_INPUTS),
        "outputs": list(GDINO_OUTPUTS),
        "export_batch": settings.export_batch,
        "max_text_len": int(model.config.max_text_len),
        "num_queries": int(model.config.num_queries),
        "box_threshold": settings.box_threshold,
        "text_threshold": settings.text_threshold,
        "tolerance": {
            "logits_atol": settings.logits_atol,
            "logits_rtol": settings.logits_rtol,
            "boxes_atol": settings.boxes_atol,
            "min_slot_agreement": settings.min_slot_agreement,
        },
        "verification": report,
        "versions": versions(),
    }


def export_grounding_dino(
    model_dir: str | Path,
    out_dir: str | Path,
    settings: ExportSettings | None = None,
    *,
    verify_frame: np.ndarray | None = None,
    force: bool = False,
    _tamper=None,
) -> dict:
    """Exports, verifies and writes GroundingDINO to ``out_dir``; returns the sidecar dict.

    ``verify_frame`` (uint8 [H, W, 3]) replaces the built-in natural frame. ``_tamper``
    (tests only) is called with the exported path before verification.
    """
    settings = settings or ExportSettings()
    out = Path(out_dir)
    processor = load_processor(model_dir)
    image_size = tuple(settings.image_size or processed_size(processor, settings.frame_size))
    expect = gdino_expected_sidecar(model_dir, settings, image_size)
    if not force and gdino_exported(out, expect):
        return read_json(out / GDINO_SIDECAR) | {"skipped": True}
    model = load_model(model_dir)
    if settings.text_len > model.config.max_text_len:
        raise SpatialAlignError(
            f"--text-len {settings.text_len} exceeds the model's max_text_len "
            f"{model.config.max_text_len}"
        )
    wrapper = grounding_dino_wrapper(model)
    args, dynamic = gdino_export_example(processor, settings, image_size)
    frame = verify_frame if verify_frame is not None else natural_frame(*settings.frame_size)
    checks = gdino_verification_inputs(processor, settings, image_size, frame)
    with atomic_path(out / GDINO_FILE) as tmp:
        torch_export(wrapper, args, tmp, GDINO_INPUTS, GDINO_OUTPUTS, dynamic, settings.opset)
        if _tamper is not None:
            _tamper(tmp)
        report = verify_gdino(wrapper, tmp, checks, settings)
        # verified: replace the old export; its sidecar goes first so that it never
        # describes the new graph, even if this run dies half-way
        (out / GDINO_SIDECAR).unlink(missing_ok=True)
        save_processor(processor, out / GDINO_PROCESSOR_DIR)
    sidecar = gdino_sidecar(expect, settings, model, report)
    write_json(sidecar, out / GDINO_SIDECAR)
    return sidecar


def save_processor(processor, dest: Path) -> None:
    """Writes the processor (tokenizer + image processor files) to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        processor.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- SAM


@dataclass
class SamExportSettings:
    opset: int = 17
    masks_atol: float = 1e-3
    """Tolerance on the low-resolution mask logits."""
    seed: int = 0


def sam_exported(out: Path, expect: dict) -> dict | None:
    """The sidecar of a finished SAM export in ``out`` with the same settings, else None."""
    side = out / SAM_SIDECAR
    if not (
        side.is_file() and (out / SAM_ENCODER_FILE).is_file() and (out / SAM_DECODER_FILE).is_file()
    ):
        return None
    have = read_json(side)
    return have if all(have.get(k) == v for k, v in expect.items()) else None


def random_sam_boxes(rng: np.random.Generator, size: int, b: int, n: int) -> np.ndarray:
    """``[b, n, 4]`` float32 xyxy boxes inside a ``size`` x ``size`` image."""
    xy0 = rng.uniform(0, size * 0.6, size=(b, n, 2))
    wh = rng.uniform(size * 0.1, size * 0.4, size=(b, n, 2))
    return np.concatenate([xy0, xy0 + wh], axis=-1).astype(np.float32)


def export_sam_graphs(
    encoder, decoder, pv: np.ndarray, emb: np.ndarray, boxes: np.ndarray, enc_path, dec_path, opset
) -> None:
    """Traces the vision encoder (dynamic batch) and the box-prompt mask decoder (dynamic
    batch and box count) to ONNX."""
    import torch

    torch_export(
        encoder,
        (torch.from_numpy(pv),),
        enc_path,
        ["pixel_values"],
        ["image_embeddings"],
        {"pixel_values": {0: "batch"}, "image_embeddings": {0: "batch"}},
        opset,
    )
    torch_export(
        decoder,
        (torch.from_numpy(emb), torch.from_numpy(boxes)),
        dec_path,
        ["image_embeddings", "input_boxes"],
        ["pred_masks", "iou_scores"],
        {
            "image_embeddings": {0: "batch"},
            "input_boxes": {0: "batch", 1: "boxes"},
            "pred_masks": {0: "batch", 1: "boxes"},
            "iou_scores": {0: "batch", 1: "boxes"},
        },
        opset,
    )


def verify_sam(
    encoder,
    decoder,
    enc_path: Path,
    dec_path: Path,
    rng: np.random.Generator,
    size: int,
    settings: SamExportSettings,
) -> list[dict]:
    """Compares both graphs with PyTorch on fresh random inputs (encoder: 3 images;
    decoder: 1x1 and 3x3 boxes); the report, or :class:`ExportMismatch`."""
    pv3 = rng.normal(0, 1, size=(3, 3, size, size)).astype(np.float32)
    ref_emb = run_torch(encoder, {"pixel_values": pv3}, ["pixel_values"])[0]
    got_emb = run_onnx(enc_path, {"pixel_values": pv3})[0]
    err_emb = float(np.abs(ref_emb - got_emb).max())
    report = [{"check": "encoder", "batch": 3, "max_abs": err_emb}]
    for b, n in ((1, 1), (3, 3)):
        inputs = {"image_embeddings": ref_emb[:b], "input_boxes": random_sam_boxes(rng, size, b, n)}
        ref = run_torch(decoder, inputs, ["image_embeddings", "input_boxes"])
        got = run_onnx(dec_path, inputs)
        err = max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True))
        report.append({"check": "decoder", "batch": b, "boxes": n, "max_abs": err})
    worst = max(r["max_abs"] for r in report)
    if not np.isfinite(worst) or worst > settings.masks_atol:
        raise ExportMismatch(
            f"exported SAM disagrees with PyTorch (max |d| {worst:.3g} > "
            f"{settings.masks_atol}); nothing written"
        )
    return report


def export_sam(
    sam_dir: str | Path,
    out_dir: str | Path,
    settings: SamExportSettings | None = None,
    *,
    force: bool = False,
    _tamper=None,
) -> dict:
    """Exports SAM's vision encoder and box-prompt mask decoder, verified against PyTorch."""
    import torch

    settings = settings or SamExportSettings()
    out = Path(out_dir)
    expect = {
        "format": SIDECAR_FORMAT,
        "source": str(Path(sam_dir).resolve()),
        "opset": settings.opset,
    }
    have = None if force else sam_exported(out, expect)
    if have is not None:
        return have | {"skipped": True}
    processor = load_sam_processor(sam_dir)
    model = load_sam_model(sam_dir)
    encoder, decoder = sam_export_modules(model)
    size = model.config.vision_config.image_size
    rng = np.random.default_rng(settings.seed)
    pv = rng.normal(0, 1, size=(2, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        emb = encoder(torch.from_numpy(pv)).numpy()
    with (
        atomic_path(out / SAM_ENCODER_FILE) as enc_tmp,
        atomic_path(out / SAM_DECODER_FILE) as dec_tmp,
    ):
        boxes = random_sam_boxes(rng, size, 2, 2)
        export_sam_graphs(encoder, decoder, pv, emb, boxes, enc_tmp, dec_tmp, settings.opset)
        if _tamper is not None:
            _tamper(enc_tmp, dec_tmp)
        report = verify_sam(encoder, decoder, enc_tmp, dec_tmp, rng, size, settings)
        (out / SAM_SIDECAR).unlink(missing_ok=True)  # verified: the old sidecar goes first
        save_processor(processor, out / SAM_PROCESSOR_DIR)
    sidecar = {
        **expect,
        "encoder": SAM_ENCODER_FILE,
        "decoder": SAM_DECODER_FILE,
        "processor_dir": SAM_PROCESSOR_DIR,
        "image_size": int(size),
        "tolerance": {"masks_atol": settings.masks_atol},
        "verification": report,
        "versions": versions(),
    }
    write_json(sidecar, out / SAM_SIDECAR)
    return sidecar
