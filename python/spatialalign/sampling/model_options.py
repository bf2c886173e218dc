"""The model and sampler options shared by ``spatialalign sample`` and ``spatialalign eval``.

They are :class:`~spatialalign.models.backends.BackendConfig`'s fields: :func:`model_options`
derives the click options from them and :func:`pop_backend_config` turns the values back into
a ``BackendConfig``, so an evaluation can be told everything a sampling run can (Wan's
resolution, offload, attention backend, ...) and the two never drift apart.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from spatialalign.core.options import click_options
from spatialalign.models.backends import BackendConfig

CLI_EXCLUDED = ("max_sequence_length",)
"""BackendConfig fields that are not command-line options (Wan's default is kept)."""

model_options = click_options(BackendConfig, exclude=CLI_EXCLUDED)
"""Adds the model/sampler options (their values reach the command as keyword arguments;
hand them to :func:`pop_backend_config`)."""


def pop_backend_config(options: dict[str, Any]) -> BackendConfig:
    """The :class:`BackendConfig` of the values :func:`model_options` added, removed from
    ``options`` (the command's other options stay)."""
    names = [f.name for f in fields(BackendConfig) if f.name not in CLI_EXCLUDED]
    return BackendConfig(**{name: options.pop(name) for name in names})
