"""``DetectorSpec``: which detector finds the objects, and its local weights; ``TrackSpec``:
that detector plus how ``track`` runs it (device, preset, thresholds, batch).

One definition for every verb that tracks (``track``, ``eval``, ``loop``): each embeds a
``DetectorSpec`` and derives its ``--detector``/``--onnx-dir``/``--gdino-dir``/``--sam``
options from these fields (:func:`spatialalign.core.options.click_options`), so the
settings, their help and their checks cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from spatialalign.core.errors import SpatialAlignError
from spatialalign.core.options import NamedChoice, document_fields
from spatialalign.core.presets import PRESETS, preset_for
from spatialalign.detection.registry import DEFAULT_ONNX_DIR, DETECTORS, detector_weights


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
        "Validity thresholds.  [default: toy for the toy detector, else official]",
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

    def scoring(self):
        from spatialalign.core.presets import scoring_config

        return scoring_config(
            self.preset_name, box_threshold=self.box_threshold, text_threshold=self.text_threshold
        )

    def weights(self) -> dict[str, str | None]:
        """The detector's identity recorded in the track settings."""
        return self.detection.weights()
