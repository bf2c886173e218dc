"""``DetectorSpec``: which detector finds the objects, and its local weights; ``TrackSpec``:
that detector plus how ``track`` runs it (device, preset, thresholds, batch).

One definition for every verb that tracks (``track``, ``eval``, ``loop``): each embeds a
``DetectorSpec`` and derives its ``--detector``/``--onnx-dir``/``--gdino-dir``/``--sam``
options from these fields (:func:`spatialalign.core.options.click_options`), so the
settings, their help and their checks cannot drift apart.

**Which validity preset.** ``--preset`` when given; else the preset of the model that made
the videos (:func:`preset_for_model`: ``toy``, ``toy-hard``, ``official`` for Wan) — ``eval``
and ``loop`` know their model, ``track RUN`` reads it from the run's manifest
(:func:`manifest_preset`); else the detector's (``toy`` for the toy detector, else
``official``). ``score-batch`` then uses the preset ``track`` recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import NamedChoice, document_fields
from spatialalign.core.presets import PRESETS, preset_for
from spatialalign.detection.registry import DEFAULT_ONNX_DIR, DETECTORS, detector_weights
from spatialalign.models.registry import REGISTRY, scoring_preset


def _f(default: Any, help_: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help_, **meta})


@document_fields
@dataclass(frozen=True)
class DetectorSpec:
    """The detector and its local weights (the detector's identity in the track settings)."""

    detector: str = _f("toy", "Detector back end.", type=NamedChoice(DETECTORS, "detector"))
    onnx_dir: str | None = _f(
        None, f"gdino-onnx: exported graphs [{DEFAULT_ONNX_DIR}].", type=click.Path(file_okay=False)
    )
    gdino_dir: str | None = _f(
        None, "gdino-torch: local GroundingDINO checkpoint.", type=click.Path(file_okay=False)
    )
    sam: str | None = _f(
        None,
        "Refine boxes with SAM from this local checkpoint / ONNX directory.",
        type=click.Path(),
    )

    def validate(self) -> None:
        """Refuses an unknown detector (one line); missing weights fail when it is built."""
        if self.detector not in DETECTORS:
            raise SpatialAlignError(
                f"unknown detector {self.detector!r} (choose from {', '.join(DETECTORS)})"
            )

    def weights(self) -> dict[str, str | None]:
        """The detector's identity recorded in the track settings."""
        return detector_weights(self.detector, self.gdino_dir, self.onnx_dir, self.sam)


@document_fields
@dataclass(frozen=True)
class TrackSpec:
    """What ``track`` is told: the detector (:class:`DetectorSpec`), where it runs, the
    validity preset (``track``'s options are these fields)."""

    detection: DetectorSpec = field(default_factory=DetectorSpec, metadata={"help": "-"})
    """The detector and its local weights (as ``eval`` and ``loop`` are told them)."""
    preset: str | None = _f(
        None,
        "Validity thresholds.  [default: the preset of the model that sampled the videos "
        "(toy, toy-hard; official for wan); for other videos toy for the toy detector, else "
        "official]",
        type=click.Choice(sorted(PRESETS)),
    )
    box_threshold: float | None = _f(
        None,
        "GroundingDINO box threshold.  [default: the preset's, 0.4]",
        type=click.FloatRange(0, 1),
    )
    text_threshold: float | None = _f(
        None,
        "GroundingDINO text threshold.  [default: the preset's, 0.3]",
        type=click.FloatRange(0, 1),
    )
    device: str | None = _f(None, "Torch device for gdino-torch (default: auto).")
    batch_size: int = _f(
        8, "Frames per ONNX Runtime batch (gdino-onnx).", type=click.IntRange(min=1)
    )

    @property
    def preset_name(self) -> str:
        return self.preset or preset_for(self.detection.detector)

    def for_model(self, model: str | None) -> TrackSpec:
        """This spec with the preset of videos made by ``model`` when none is set
        (:func:`preset_for_model`)."""
        if self.preset is not None:
            return self
        return replace(self, preset=preset_for_model(model, self.detection.detector))

    def scoring(self):
        from spatialalign.core.presets import scoring_config

        return scoring_config(
            self.preset_name, box_threshold=self.box_threshold, text_threshold=self.text_threshold
        )

    def weights(self) -> dict[str, str | None]:
        """The detector's identity recorded in the track settings."""
        return self.detection.weights()


def preset_for_model(model: str | None, detector: str) -> str:
    """The validity preset for videos of ``model`` tracked with ``detector``: the model's
    (:func:`spatialalign.models.registry.scoring_preset`: its validity rules are scaled to
    its clip length) when ``model`` is a known model name, else the detector's
    (:func:`spatialalign.core.presets.preset_for`)."""
    if model in REGISTRY:
        return scoring_preset(model)
    return preset_for(detector)


def manifest_preset(run_dir: str | os.PathLike[str]) -> str | None:
    """The preset of the model(s) that sampled ``run_dir``'s videos (the manifest's
    ``model`` column): the models' one preset; None when the run has no manifest or no
    video names a known model (ingested videos: ``external``); one clear error when its
    videos come from models with different presets."""
    from spatialalign.rundir.layout import RunDir

    run = RunDir(run_dir)
    if not run.manifest_path.is_file():
        return None
    models = set(run.read_manifest(["model"], resolve_paths=False).column("model").to_pylist())
    known = sorted(m for m in models if m in REGISTRY)
    presets = sorted({scoring_preset(m) for m in known})
    if len(presets) > 1:
        raise SpatialAlignError(
            f"{run.root} holds videos of models {', '.join(known)}, which are scored with "
            f"different presets ({', '.join(presets)}): pass --preset, or track them in "
            "separate run directories"
        )
    return presets[0] if presets else None
