"""Config fields: each field's type, range and choices declared once, checked by :func:`check_fields`.

A config is a dataclass deriving from :class:`Config` whose fields state their rules with
:func:`field`::

    @dataclass
    class TrainConfig(Config):
        batch_size: int = field(128, gt=0)
        lr: float = field(1e-3, gt=0)
        betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, rule="two numbers in [0, 1)")
        lr_schedule: str = field("constant", choices=SCHEDULES)

        def __post_init__(self):
            check_fields(self)  # then the rules that tie fields together

:func:`check_fields` first checks every value against its annotation: a value whose type does
not fit is a ``TypeError`` naming the field, so ``latent_dim=3.5``, ``lr="1e-3"`` or
``batch_size=True`` never reach a comparison or a run directory. Lossless conversions are made
in place: an int where a float is expected, a list where a tuple is. Floats must be finite
(``lr=inf`` and ``grad_clip=nan`` are refused). Then every field's rule: a value outside it is a
``ValueError`` on one line, ``batch_size must be > 0, got 0``. ``None`` (of an ``X | None``
field) passes every rule; a rule on a tuple applies to each entry. A subclass that redeclares a
field only to change its default (``lr: float = 2e-3``) keeps the base class's rule.

A :class:`Config` also records which fields its caller gave (:func:`given`): the others hold
defaults, which training may fit to the data (:func:`fit_default`: a default batch size larger
than a small dataset becomes the dataset's size), while a value the user chose is never changed.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import numbers
import operator
import types
import typing
from typing import Any

log = logging.getLogger(__name__)

_RULE = "genai.rule"  # the key of a field's Rule in its metadata


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _union(name: str, value: Any, args: tuple) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return _convert(name, value, option)
        except (TypeError, ValueError) as e:
            errors.append(e)
    raise errors[0]


def _tuple(name: str, value: Any, args: tuple) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a sequence, got {_describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        args = (args[0],) * len(value)
    elif len(value) != len(args):
        raise ValueError(f"{name} must have {len(args)} entries, got {len(value)}: {value!r}")
    return tuple(
        _convert(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True))
    )


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} is out of range (64-bit integers only), got {value}")
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_describe(value)}")
    return value


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}


def _convert(name: str, value: Any, kind: Any) -> Any:
    """``value`` checked (and losslessly converted) against annotation ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(name, value, args)
    if origin is tuple:
        return _tuple(name, value, args)
    if kind in _SCALARS:
        return _SCALARS[kind](name, value)
    return value  # other annotations are checked by the config itself


@dataclasses.dataclass(frozen=True)
class Rule:
    """What the values of one config field must be (see :func:`field`)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple | None = None
    nonempty: bool = False
    rule: str | None = None

    def describe(self) -> str:
        """The rule in words: ``> 0``, ``in [0, 1)``, ``one of ('a', 'b')``."""
        if self.rule is not None:
            return self.rule
        if self.choices is not None:
            return f"one of {self.choices!r}"
        low = (f"({self.gt}", self.gt) if self.gt is not None else (f"[{self.ge}", self.ge)
        high = (f"{self.lt})", self.lt) if self.lt is not None else (f"{self.le}]", self.le)
        if low[1] is not None and high[1] is not None:
            return f"in {low[0]}, {high[0]}"
        for op, bound in (("> ", self.gt), (">= ", self.ge), ("< ", self.lt), ("<= ", self.le)):
            if bound is not None:
                return f"{op}{bound}"
        return "not empty"

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (one entry, for a tuple field) obeys the rule."""
        if self.choices is not None and value not in self.choices:
            return False
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def check(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` ``"{name} must be {rule}, got {value!r}"`` unless ``value`` obeys
        the rule; ``None`` always does."""
        if value is None:
            return
        if self.nonempty and not (value.strip() if isinstance(value, str) else value):
            if self.rule is None:
                raise ValueError(f"{name} must not be empty")
            raise ValueError(f"{name} must be {self.rule}, got {value!r}")
        entries = value if isinstance(value, tuple) else (value,)
        if not all(self.holds(v) for v in entries):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")


def field(
    default: Any = dataclasses.MISSING,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple | None = None,
    nonempty: bool = False,
    rule: str | None = None,
) -> Any:
    """A config field with its ``default`` and its rule, for :func:`check_fields`.

    Args:
        default: the field's default value.
        gt, ge, lt, le: bounds (> , >=, <, <=); two make an interval, ``in [0, 1)``.
        choices: the allowed values (a tuple).
        nonempty: a string must not be blank, a tuple not empty.
        rule: the rule in words for the message, where the bounds alone would say it less well
            (``"two numbers in [0, 1)"``, ``">= 2 or None"``).

    Example: ``lr: float = field(1e-3, gt=0)``; ``TrainConfig(lr=0)`` raises
    ``ValueError("lr must be > 0, got 0.0")``.
    """
    metadata = {
        _RULE: Rule(gt, ge, lt, le, None if choices is None else tuple(choices), nonempty, rule)
    }
    return dataclasses.field(default=default, metadata=metadata)


@functools.cache
def rules(cls: type) -> dict[str, Rule]:
    """The rule of each field of dataclass ``cls`` that has one (a field redeclared in a
    subclass without a rule keeps its base class's)."""
    found = {}
    for f in dataclasses.fields(cls):
        for klass in cls.__mro__:
            declared = getattr(klass, "__dataclass_fields__", {}).get(f.name)
            if declared is not None and _RULE in declared.metadata:
                found[f.name] = declared.metadata[_RULE]
                break
    return found


def check_fields(config: Any) -> None:
    """Check every field of dataclass ``config`` against its annotation (converting in place),
    then against its rule (see :func:`field`).

    Raises:
        TypeError: a field holds a value of the wrong type (the message names the field).
        ValueError: a float field is NaN or infinite, a fixed-length tuple has the wrong length,
            or a value breaks its field's rule (``"batch_size must be > 0, got 0"``).
    """
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        object.__setattr__(config, f.name, _convert(f.name, value, hints[f.name]))
    for name, rule in rules(type(config)).items():
        rule.check(name, getattr(config, name))


class Config:
    """The base of genai's config dataclasses: it records the fields its caller gave.

    ``TrainConfig(lr=3e-4)`` gave ``lr``; every other field holds its default (:func:`given`).
    A dict through :func:`coerce_config`, a ``config.json`` read back, ``copy`` and ``pickle``
    keep the record as it was made. ``dataclasses.replace`` passes every field, so its result
    counts every field as given; :func:`replace` keeps the record.
    """

    def __new__(cls, *args: Any, **kwargs: Any):
        self = super().__new__(cls)
        names = _init_params(cls)[: len(args)]
        self.__dict__["_given_fields"] = frozenset((*names, *kwargs))
        return self


@functools.cache
def _init_params(cls: type) -> tuple[str, ...]:
    return tuple(list(inspect.signature(cls.__init__).parameters)[1:])


def given(config: Any) -> frozenset[str]:
    """The names of the fields the caller of ``config``'s constructor gave (every field, for a
    dataclass that is no :class:`Config` and so keeps no record)."""
    if "_given_fields" not in config.__dict__:
        return frozenset(f.name for f in dataclasses.fields(config))
    return config.__dict__["_given_fields"]


def is_default(config: Any, name: str) -> bool:
    """Whether field ``name`` of ``config`` holds its default (the caller did not give it)."""
    return name not in given(config)


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace(config, **changes)`` that keeps the record of the given fields
    (plus ``changes``)."""
    new = dataclasses.replace(config, **changes)
    new.__dict__["_given_fields"] = given(config) | frozenset(changes)
    return new


def fit_default(config: Any, name: str, limit: int, what: str, minimum: int = 1) -> Any:
    """``config`` with the int field ``name`` lowered to ``limit`` when it holds a default larger
    than that (logged once); a value the caller gave is kept, for the caller's own check to
    refuse, and so is a default when ``limit`` is below ``minimum``.

    Example: ``fit_default(config, "batch_size", len(data), "images")``: the default 128 meets 64
    images and becomes 64.
    """
    value = getattr(config, name)
    if value <= limit or limit < minimum or not is_default(config, name):
        return config
    log.warning(
        "%s: the default %d is larger than the data (%d %s); using %s=%d",
        *(name, value, limit, what, name, limit),
    )
    return replace(config, **{name: limit})


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
