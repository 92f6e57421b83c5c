"""Type checks for the config dataclasses, from their annotations, before any file is touched.

Every config calls :func:`check_fields` first in its ``__post_init__``: a value whose type does
not fit its field's annotation is a ``TypeError`` naming the field, so ``latent_dim=3.5``,
``lr="1e-3"`` or ``batch_size=True`` never reach a comparison or a run directory. Lossless
conversions are made in place: an int where a float is expected, a list where a tuple is.
Floats must be finite (``lr=inf`` and ``grad_clip=nan`` are refused).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import operator
import types
import typing
from typing import Any


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(name: str, value: Any, kind: Any) -> Any:
    """``value`` checked (and losslessly converted) against annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(name, value, option)
            except (TypeError, ValueError) as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args or type(value) is not type(args[0]):
            choices = ", ".join(map(repr, args))
            raise ValueError(f"{name} must be one of {choices}, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{name} must be a sequence, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{name} must have {len(args)} entries, got {len(value)}: {value!r}")
        return tuple(
            _convert(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {_describe(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {_describe(value)}")
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{name} is out of range (64-bit integers only), got {value}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {_describe(value)}")
        return value
    return value  # other annotations are checked by the config itself


def check_fields(config: Any) -> None:
    """Check every field of dataclass ``config`` against its annotation, converting in place.

    Raises:
        TypeError: a field holds a value of the wrong type (the message names the field).
        ValueError: a float field is NaN or infinite, a Literal field is not one of its choices,
            or a fixed-length tuple has the wrong length.
    """
    hints = _hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        object.__setattr__(config, field.name, _convert(field.name, value, hints[field.name]))


def choices(cls: type, name: str) -> tuple | None:
    """The allowed values of a ``Literal`` field of dataclass ``cls`` (``None`` if it is not one)."""
    kind = _hints(cls)[name]
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(a for a in args if a is not type(None))
    return typing.get_args(kind) if typing.get_origin(kind) is typing.Literal else None


def coerce_config(config: Any, cls: type, argument: str = "config") -> Any:
    """``config`` as an instance of ``cls``: a ``cls`` as is, a dict as keyword arguments.

    Raises:
        TypeError: ``config`` is neither, or the dict names fields ``cls`` does not have.
    """
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, dict):
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(
                f"{argument}: {cls.__name__} has no field(s) {', '.join(sorted(unknown))}"
            )
        return cls(**config)
    raise TypeError(
        f"{argument} must be a {cls.__name__} (or a dict of its fields), got {type(config).__name__}"
    )


def check_model(model: Any, cls: type, function: str) -> None:
    """Raise ``TypeError`` unless ``model`` is a ``cls`` (the model ``function`` trains)."""
    if not isinstance(model, cls):
        raise TypeError(f"{function} trains a {cls.__name__}, got {type(model).__name__}")


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (NumPy integers and 0-d integer tensors
    too, not bools), else ``ValueError`` naming ``name``."""
    try:
        n = operator.index(value)
    except TypeError:
        n = None
    if n is None or isinstance(value, bool) or n <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def class_name_list(class_names: Any, what: str = "class_names") -> tuple[str, ...] | None:
    """``class_names`` (a list, tuple or 1-d array of names; bytes are decoded) as a tuple of
    str, each name once; ``None`` stays ``None``."""
    if class_names is None:
        return None
    if isinstance(class_names, (str, bytes)) or getattr(class_names, "ndim", 1) != 1:
        raise TypeError(f"{what}: expected a list of names, got {class_names!r}")
    names = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in class_names)
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: each name once, got {list(names)}")
    return names
