"""The T2V models by name: the one place that says which ``--model`` values exist and
what goes with each (its back end, the scoring preset its videos are judged with, its toy
world).

``sample``, ``eval``, ``loop`` and ``train`` all offer (and check) :data:`MODELS`; the back
end class of a name is imported only when a model is loaded (:func:`backend_class`), so
reading the names costs no torch import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from spatialalign.core.errors import SpatialAlignError


@dataclass(frozen=True)
class ModelEntry:
    """What the stages need to know about one model name."""

    backend: str
    """Its back end class (``module:Class``), imported when the model loads."""
    preset: str
    """The scoring preset (:data:`spatialalign.core.presets.PRESETS`) its videos are
    tracked and scored with: the validity rules are scaled to its clip length."""
    steps: int | None = None
    """A toy-family model's default denoising steps (``--steps`` overrides): toy 20; toy-hard
    10, whose clips are judged as 20 steps' are (validness 0.868 vs 0.863, Correctness@0.7
    0.335 vs 0.330: docs/TOY_MODEL.md) at half the cost. None: the back end's own (Wan's 50)."""
    world: str | None = None
    """The toy world it was pretrained on (``toy``, ``hard``: the keys of
    ``spatialalign.toy.world.WORLDS`` and :data:`spatialalign.prompts.splits.WORLD_SPLITS`);
    None for a model that is not a toy-family model."""


REGISTRY: dict[str, ModelEntry] = {
    "toy": ModelEntry(
        "spatialalign.models.backends:ToyBackend", preset="toy", steps=20, world="toy"
    ),
    "toy-hard": ModelEntry(
        "spatialalign.models.backends:ToyHardBackend", preset="toy-hard", steps=10, world="hard"
    ),
    "wan": ModelEntry("spatialalign.models.backends:WanBackend", preset="official"),
}
"""Model name -> its :class:`ModelEntry`."""
MODELS: tuple[str, ...] = tuple(REGISTRY)
"""The ``--model`` choices: ``toy`` (the shipped toy model), ``toy-hard`` (the shipped model
of the hard toy world) and ``wan`` (Wan2.1 via diffusers)."""
DEFAULT_MODEL = "toy"


def check_model(model: str) -> str:
    """``model`` when it is a known model name; else one clear error."""
    if model not in REGISTRY:
        raise SpatialAlignError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    return model


def is_toy(model: str) -> bool:
    """Whether ``model`` is a toy-family model (``toy``, ``toy-hard``): a small
    ``ToyPipeline`` with its own shipped weights, the toy training recipe, one thread per
    process and a toy scoring preset. Unknown names are not."""
    entry = REGISTRY.get(model)
    return entry is not None and entry.world is not None


def model_world(model: str) -> str | None:
    """The toy world of ``model`` (``toy``, ``hard``), None for a non-toy model."""
    return REGISTRY[check_model(model)].world


def world_model(world: str) -> str:
    """The toy-family model of toy world ``world`` (``toy`` -> ``toy``, ``hard`` ->
    ``toy-hard``); one clear error for a world no model has."""
    for name, entry in REGISTRY.items():
        if entry.world == world:
            return name
    worlds = ", ".join(e.world for e in REGISTRY.values() if e.world)
    raise SpatialAlignError(f"unknown toy world {world!r} (choose from {worlds})")


def scoring_preset(model: str) -> str:
    """The scoring preset ``model``'s videos are judged with (``toy``, ``toy-hard``,
    ``official``)."""
    return REGISTRY[check_model(model)].preset


def default_steps(model: str) -> int | None:
    """The denoising steps toy-family ``model`` samples with unless told
    (:attr:`ModelEntry.steps`); None for a model whose back end sets its own."""
    return REGISTRY[check_model(model)].steps


def backend_class(model: str) -> Any:
    """The back end class of ``model`` (``from_config(config, device=...)`` builds it)."""
    module, _, name = REGISTRY[check_model(model)].backend.partition(":")
    return getattr(importlib.import_module(module), name)
