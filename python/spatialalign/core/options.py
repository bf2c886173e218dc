"""Command-line options derived from a documented dataclass (as trl derives its CLI).

A config dataclass documents each field once, in ``field(metadata={"help": ...})``;
:func:`document_fields` appends those lines (with defaults) to the class docstring and
:func:`click_options` turns the same fields into ``--field-name`` options, so the CLI can
never drift from the config.

Float options are finite everywhere: :class:`FiniteFloat` refuses ``nan`` and ``inf``
(click's ``float`` and ``FloatRange`` take them: a NaN passes every range check), the
derived options use it, and :func:`finite_floats` gives it to every float option of a
command (``spatialalign``'s verbs get it when they are loaded). :func:`check_finite` does
the same for a config built in code.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import click

from spatialalign.core.errors import SpatialAlignError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.FloatRange):
    """A float option that must be a finite number (and within ``min``/``max`` when given).

    A NaN or infinite value is the project's one-line error (:class:`SpatialAlignError`:
    ``error: --guidance must be a finite number, got nan``, exit 1), as the verbs' own
    checks of their numbers are; a value out of range stays click's usage error."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            name = max(param.opts, key=len) if param is not None and param.opts else "value"
            raise SpatialAlignError(f"{name} must be a finite number, got {rv}")
        return super().convert(rv, param, ctx)

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


class NamedChoice(click.Choice):
    """A choice whose wrong value is the project's one-line error (``error: unknown detector
    'yolo' (choose from gdino-onnx, gdino-torch, toy)``, exit 1), as a config's own check
    says it, rather than click's usage error; ``--help`` still lists the choices."""

    def __init__(self, choices: tuple[str, ...], what: str) -> None:
        super().__init__(list(choices))
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value not in self.choices:
            names = ", ".join(map(str, self.choices))
            raise SpatialAlignError(f"unknown {self.what} {value!r} (choose from {names})")
        return value


def finite_floats(command: click.Command) -> click.Command:
    """``command`` (and a group's subcommands) with every float option made a
    :class:`FiniteFloat` of the same range; returns ``command``."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            finite_floats(sub)
    for p in command.params:
        t = p.type
        if isinstance(t, click.types.FloatParamType) and not isinstance(t, FiniteFloat):
            if isinstance(t, click.FloatRange):
                p.type = FiniteFloat(t.min, t.max, t.min_open, t.max_open, t.clamp)
            else:
                p.type = FiniteFloat()
    return command


def check_finite(config: Any) -> None:
    """Raises ``ValueError`` ("NAME must be a finite number, got nan") for the first float
    field of dataclass instance ``config`` that is NaN or infinite (None passes)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value}")


def _field_type(cls: type, f: dataclasses.Field) -> tuple[Any, bool]:
    """The field's click type and whether ``None`` is allowed."""
    hint = typing.get_type_hints(cls)[f.name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(hint)]), optional
    if hint is float:
        return FiniteFloat(), optional
    if hint in (int, str, bool):
        return hint, optional
    raise TypeError(f"{cls.__name__}.{f.name}: no command-line type for {hint!r}")


def _nested(cls: type, f: dataclasses.Field) -> type | None:
    """The dataclass a field embeds (a spec inside a config), or None."""
    hint = typing.get_type_hints(cls)[f.name]
    return hint if dataclasses.is_dataclass(hint) else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default")


def document_fields(cls: type[T]) -> type[T]:
    """Class decorator: appends every field's help text (and its ``doc`` metadata, what the
    reader of the code needs beyond the command line's help) and default to the docstring."""
    lines = []
    for f in dataclasses.fields(cls):
        help_ = " ".join(t for t in (f.metadata.get("help", ""), f.metadata.get("doc", "")) if t)
        lines.append(f"    {f.name} (default ``{_default(f)!r}``): {help_}")
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Fields:\n\n" + "\n".join(lines) + "\n"
    return cls


def click_options(
    cls: type, exclude: tuple[str, ...] = (), flags: dict[str, tuple[str, ...]] | None = None
) -> Callable[[F], F]:
    """Decorator adding one click option per field of dataclass ``cls`` (``--field-name``;
    booleans as ``--flag/--no-flag``), the field's help text and default shown.

    A field's ``metadata`` may refine its option: ``flags`` (the option's names, e.g.
    ``("--model-path", "--model-dir")``; a boolean given one name is a plain ``is_flag``),
    ``type`` (a click type, e.g. ``click.IntRange(min=1)`` or ``click.Path()``) and
    ``show_default``. ``flags`` here renames a field's option for one command (``track``
    spells ``--gdino-dir`` as ``--model-dir``). A field embedding a spec may carry
    ``exclude`` (its fields the command does not offer) and ``flags`` (renames) in its
    metadata: the loop offers the back end's options without ``--adapter`` and spells
    ``--steps`` ``--sample-steps``."""
    flags = flags or {}

    def decorate(fn: F) -> F:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude or not f.init:
                continue
            nested = _nested(cls, f)
            if nested is not None:  # an embedded spec: its options, in its place
                inner = {**f.metadata.get("flags", {}), **flags}
                fn = click_options(nested, f.metadata.get("exclude", ()), inner)(fn)
                continue
            kind, _ = _field_type(cls, f)
            meta = f.metadata
            decls = flags.get(f.name) or meta.get("flags") or (f"--{f.name.replace('_', '-')}",)
            common: dict[str, Any] = {
                "default": _default(f),
                "help": meta.get("help", ""),
                "show_default": meta.get("show_default", True),
            }
            if kind is bool and len(decls) == 1 and "/" not in decls[0] and "flags" in meta:
                fn = click.option(*decls, f.name, is_flag=True, **common)(fn)
            elif kind is bool:
                name = decls[0].removeprefix("--")
                decl = f"--{name}/--no-{name}"
                fn = click.option(decl, f.name, **common)(fn)
            else:
                fn = click.option(*decls, f.name, type=meta.get("type", kind), **common)(fn)
        return fn

    return decorate


def from_options(cls: type[T], options: dict[str, Any], **overrides: Any) -> T:
    """An instance of ``cls`` from parsed options (extra keys ignored) and ``overrides``;
    an embedded spec the options were derived from (:func:`click_options`) is built from
    them too, unless ``overrides`` gives it."""
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        nested = _nested(cls, f)
        if f.name in options:
            kw[f.name] = options[f.name]
        elif nested is not None and f.name not in overrides:
            names = {g.name for g in dataclasses.fields(nested)}
            if names & options.keys():
                kw[f.name] = from_options(nested, options)
    return cls(**{**kw, **overrides})
