"""The T2V models by name: the one place that says which ``--model`` values exist.

``sample``, ``eval``, ``loop`` and ``train`` all offer (and check) :data:`MODELS`; the back
end class of a name is imported only when a model is loaded (:func:`backend_class`), so
reading the names costs no torch import.
"""

from __future__ import annotations

import importlib
from typing import Any

from spatialalign.core.errors import SpatialAlignError

BACKENDS: dict[str, str] = {
    "toy": "spatialalign.models.backends:ToyBackend",
    "wan": "spatialalign.models.backends:WanBackend",
}
"""Model name -> its back end class (``module:Class``)."""
MODELS: tuple[str, ...] = tuple(BACKENDS)
"""The ``--model`` choices: ``toy`` (the shipped toy model) and ``wan`` (Wan2.1 via diffusers)."""
DEFAULT_MODEL = "toy"


def check_model(model: str) -> str:
    """``model`` when it is a known model name; else one clear error."""
    if model not in BACKENDS:
        raise SpatialAlignError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    return model


def backend_class(model: str) -> Any:
    """The back end class of ``model`` (``from_config(config, device=...)`` builds it)."""
    module, _, name = BACKENDS[check_model(model)].partition(":")
    return getattr(importlib.import_module(module), name)
