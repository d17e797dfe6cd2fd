"""One registry per component kind; components are built from ``{type: Name, **kwargs}``.

Registries import their package lazily (mmengine ``locations``), so ``import llcv`` stays light.
"""
from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any, Mapping

from mmengine.registry import Registry

from llcv.errors import LLCVError, OptionError

ARCHS = Registry("arch", scope="llcv", locations=["llcv.archs"])
LOSSES = Registry("loss", scope="llcv", locations=["llcv.losses"])
DEGRADATIONS = Registry("degradation", scope="llcv", locations=["llcv.degradations"])
PRUNERS = Registry("pruner", scope="llcv", locations=["llcv.pruners"])
DATASETS = Registry("dataset", scope="llcv", locations=["llcv.data"])
METRICS = Registry("metric", scope="llcv", locations=["llcv.metrics"])
HOOKS = Registry("hook", scope="llcv",
                 locations=["llcv.engine.hooks", "llcv.engine.prune_hook"])
OPTIMIZERS = Registry("optimizer", scope="llcv", locations=["llcv.optim"])
SCHEDULERS = Registry("scheduler", scope="llcv", locations=["llcv.optim"])
# Training steps: what one iteration does, chosen by the option file's ``model_type`` (BasicSR).
MODELS = Registry("model", scope="llcv", locations=["llcv.models"])


def registered_names(registry: Registry) -> list[str]:
    """All names in ``registry``, after importing its package."""
    registry.import_from_location()
    return sorted(registry.module_dict)


def lookup(registry: Registry, name: Any, key: str) -> Any:
    """Return the component called ``name``; an unknown name fails listing the close matches."""
    names = registered_names(registry)
    if not isinstance(name, str) or name not in registry.module_dict:
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise OptionError(
            f"{key}: unknown {registry.name} type '{name}'; {hint}registered: {', '.join(names)}"
        )
    return registry.module_dict[name]


def check_kwargs(obj: Any, kwargs: Mapping[str, Any], key: str, hidden: tuple = ()) -> None:
    """Fail naming ``key.<arg>`` when ``kwargs`` do not fit the signature of ``obj``.

    ``hidden`` are arguments llcv passes itself: an option file may not set them.
    """
    for name in kwargs:
        if name in hidden:
            raise OptionError(f"{key}.{name}: set by llcv itself; remove it from the options")
    params = inspect.signature(obj).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items()
                if p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in hidden]
    for name in kwargs:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise OptionError(
                f"{key}.{name}: unknown option for {getattr(obj, '__name__', obj)}{hint}; "
                f"accepted: {', '.join(accepted)}"
            )


def check_required(obj: Any, kwargs: Mapping[str, Any], key: str, provided: tuple = ()) -> None:
    """Fail naming ``key.<arg>`` for each required argument of ``obj`` missing from ``kwargs``."""
    for name, p in inspect.signature(obj).parameters.items():
        required = p.default is inspect.Parameter.empty and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if required and name not in kwargs and name not in provided:
            raise OptionError(f"{key}.{name}: missing required option for {obj.__name__}")


def build(registry: Registry, cfg: Mapping[str, Any], key: str, **extra: Any) -> Any:
    """Build the component described by ``cfg`` (never mutated); ``key`` is its dotted option path.

    ``extra`` are arguments supplied by llcv itself (e.g. ``phase``), not by the option file.
    """
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise OptionError(f"{key}: expected a mapping with a 'type' key, got {cfg!r}")
    kwargs = {k: copy.deepcopy(v) for k, v in cfg.items() if k != "type"}
    obj = lookup(registry, cfg["type"], f"{key}.type")
    check_kwargs(obj, kwargs, key, hidden=tuple(extra))  # llcv's own arguments are not listed
    check_required(obj, kwargs, key, provided=tuple(extra))
    try:
        return obj(**kwargs, **extra)
    except LLCVError as err:
        # Components start messages with the argument name; make it the full option path.
        argument = str(err).split(":", 1)[0].split(".", 1)[0]
        if argument in inspect.signature(obj).parameters:
            raise type(err)(f"{key}.{err}") from None
        raise
