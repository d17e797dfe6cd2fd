"""Option schemas and their checker: every error starts with the dotted key path.

A schema is a dict of key -> :class:`Key` (a plain value), :class:`Component` (a
``{type: Name, ...}`` section resolved in a registry and checked against the signature of what it
names), :class:`MapOf` (free names -> one spec) or a nested dict (a sub-section). Components
declare the option keys they read with these classes (e.g. a training step's loss sections), so
this module sits below them; ``llcv.options`` assembles the full schema.
"""
from __future__ import annotations

import collections.abc
import copy
import difflib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from llcv import registry
from llcv.errors import OptionError
from llcv.utils import is_int

REQUIRED = object()
INT, FLOAT, BOOL, STR = (int,), (int, float), (bool,), (str,)
OPT_STR = (str, type(None))


@dataclass(frozen=True)
class Key:
    """A plain option: allowed types, default (``REQUIRED`` if none) and optional allowed values.

    ``low`` is the smallest allowed number and ``below`` a bound it must stay under (None: any).
    """

    types: tuple
    default: Any = REQUIRED
    choices: Optional[tuple] = None
    low: Optional[float] = None
    below: Optional[float] = None


@dataclass(frozen=True)
class Component:
    """A ``{type: Name, **kwargs}`` mapping resolved in the registry of ``kind``."""

    kind: str  # a key of COMPONENT_KINDS
    required: bool = True


@dataclass(frozen=True)
class MapOf:
    """A mapping of free names to ``item`` specs (e.g. ``val.metrics.<name>``)."""

    item: Any


@dataclass(frozen=True)
class ListOf:
    """A list whose entries all follow ``item`` (e.g. ``custom_hooks``); default empty."""

    item: Any


# kind -> (registry, arguments llcv itself passes, so the option file must not)
COMPONENT_KINDS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "arch": (registry.ARCHS, ("device", "dtype")),
    "loss": (registry.LOSSES, ()),
    "metric": (registry.METRICS, ("img", "img2")),
    "dataset": (registry.DATASETS, ("phase",)),
    "optimizer": (registry.OPTIMIZERS, ("params",)),
    "scheduler": (registry.SCHEDULERS, ("total_iter",)),
    "hook": (registry.HOOKS, ()),
    "pruner": (registry.PRUNERS, ()),
}
# Kinds whose argument values are checked against the constructor's annotations (torch's
# optimizers and llcv's schedules annotate every argument with plain types).
TYPED_KINDS = ("optimizer", "scheduler")


def check_section(node: dict, schema: Mapping[str, Any], prefix: str,
                  optional: Iterable[str] = ()) -> None:
    """Check ``node`` in place against ``schema`` and fill defaults; ``optional`` sub-sections
    are dropped when absent instead of being filled."""
    reject_unknown(node, schema, prefix)
    optional = tuple(optional)
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, dict):
            if node.get(key) is None:
                if key in optional:
                    node.pop(key, None)
                    continue
                node[key] = {}
            if not isinstance(node[key], dict):
                raise OptionError(f"{path}: expected a mapping, got {type(node[key]).__name__}")
            check_section(node[key], spec, path + ".")
        else:
            check_value(node, key, spec, path)


def reject_unknown(node: Mapping[str, Any], accepted: Iterable[str], prefix: str) -> None:
    """Fail on the first key of ``node`` not in ``accepted``, with the closest accepted name."""
    names = list(accepted)
    for key in node:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise OptionError(f"{prefix}{key}: unknown option{hint}; accepted here: "
                              f"{', '.join(names)}")


def check_value(node: dict, key: str, spec: Any, path: str) -> None:
    """Check (and default) ``node[key]`` against one spec."""
    if isinstance(spec, Key):
        check_key(node, key, spec, path)
    elif isinstance(spec, Component):
        if node.get(key) is None:
            if spec.required:
                raise OptionError(f"{path}: missing required section ({spec.kind} with a 'type')")
            node.pop(key, None)
            return
        check_component(node[key], spec.kind, path)
    elif isinstance(spec, MapOf):
        value = node.setdefault(key, {})
        if not isinstance(value, dict):
            raise OptionError(f"{path}: expected a mapping of names to sections")
        for name in value:
            check_value(value, name, spec.item, f"{path}.{name}")
    elif isinstance(spec, ListOf):
        value = node.get(key)
        if value is None:
            node[key] = value = []
        if not isinstance(value, list):
            raise OptionError(f"{path}: expected a list, got {type(value).__name__}")
        for i in range(len(value)):
            check_value(value, i, spec.item, f"{path}.{i}")


def check_key(node: dict, key: str, spec: Key, path: str) -> None:
    """Type, choices and range of a plain value; integral floats (``2e4``) pass as ints."""
    if key not in node:
        if spec.default is REQUIRED:
            raise OptionError(f"{path}: missing required option")
        node[key] = copy.deepcopy(spec.default)
        return
    value = node[key]
    if int in spec.types and float not in spec.types and isinstance(value, float) \
            and value.is_integer():
        node[key] = value = int(value)  # BasicSR files write iterations as ``!!float 5e3``
    if isinstance(value, bool) and bool not in spec.types:
        ok = False  # YAML ``true`` must not pass as an int
    else:
        ok = isinstance(value, spec.types)
    if not ok:
        names = "/".join("null" if t is type(None) else t.__name__ for t in spec.types)
        raise OptionError(f"{path}: expected {names}, got {type(value).__name__} {value!r}")
    if float in spec.types and isinstance(value, int) and not isinstance(value, bool):
        node[key] = float(value)
    if spec.choices is not None and value not in spec.choices:
        raise OptionError(f"{path}: '{value}' is not one of {', '.join(map(str, spec.choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.low is not None and value < spec.low:
            raise OptionError(f"{path}: must be >= {spec.low:g}, got {value!r}")
        if spec.below is not None and value >= spec.below:
            raise OptionError(f"{path}: must be below {spec.below:g}, got {value!r}")


def check_component(cfg: Any, kind: str, path: str) -> None:
    """Check a ``{type: Name, ...}`` section against the signature of what it names."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise OptionError(f"{path}: expected a mapping with a 'type' key")
    reg, provided = COMPONENT_KINDS[kind]
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    target = registry.lookup(reg, cfg["type"], f"{path}.type")
    registry.check_kwargs(target, kwargs, path, hidden=provided)
    registry.check_required(target, kwargs, path, provided=provided)
    if kind in TYPED_KINDS:
        check_argument_types(target, kwargs, path)


def check_argument_types(target: Any, kwargs: Mapping[str, Any], path: str) -> None:
    """Fail naming ``path.<arg>`` when a value does not fit the argument's annotation
    (numbers, booleans, strings, null, lists of them); unannotated arguments pass."""
    hints = _type_hints(target)
    for name, value in kwargs.items():
        hint = hints.get(name)
        if hint is not None and not fits_type(value, hint):
            raise OptionError(f"{path}.{name}: expected {describe_type(hint)}, got "
                              f"{type(value).__name__} {value!r}")


def _type_hints(target: Any) -> dict[str, Any]:
    """The evaluated annotations of ``target``'s constructor ({} when they cannot be read)."""
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - an annotation naming what cannot be imported here
        return {}


def fits_type(value: Any, hint: Any) -> bool:
    """True when a value read from YAML fits the annotation ``hint``; integral floats
    (``!!float 5e3``) fit ``int``; annotations other than plain types and lists pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits_type(value, a) for a in args)
    if origin is tuple:
        if args[-1:] == (Ellipsis,):
            return isinstance(value, (list, tuple)) and all(fits_type(v, args[0]) for v in value)
        return isinstance(value, (list, tuple)) and len(value) == len(args) and \
            all(fits_type(v, a) for v, a in zip(value, args))
    if origin in (list, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(fits_type(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return is_int(value) or (isinstance(value, float) and value.is_integer())
    if hint is type(None):
        return value is None
    if inspect.isclass(hint) and origin is None and hint is not typing.Any:
        return isinstance(value, hint)  # bool, str, ... (a tensor never comes from YAML)
    return True


TYPE_WORDS = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
              type(None): "null"}
PLURAL_WORDS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def describe_type(hint: Any) -> str:
    """An annotation in words for messages: 'a number', 'a list [a number, a number]' ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        words = [describe_type(a) for a in args if not _from_torch(a)]
        return " or ".join(dict.fromkeys(words))
    if origin is tuple and args[-1:] != (Ellipsis,):
        return f"a list [{', '.join(describe_type(a) for a in args)}]"
    if origin in (tuple, list, collections.abc.Sequence):
        return f"a list of {PLURAL_WORDS.get(args[0], describe_type(args[0]))}" if args \
            else "a list"
    return TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def _from_torch(hint: Any) -> bool:
    return inspect.isclass(hint) and hint.__module__.split(".")[0] == "torch"
