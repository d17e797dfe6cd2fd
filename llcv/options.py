"""Option files: safe YAML loading, ``--set`` overrides, and validation with dotted key paths.

The schema below names every key llcv reads. BasicSR's key names are kept where they exist so
users' option files carry over. Component sections (``{type: Name, ...}``) are checked against
the signature of the registered class, so a misspelt argument is named before anything runs.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from llcv.errors import OptionError

REQUIRED = object()


class OptionLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-4`` as a float (YAML 1.2), not as a string."""


OptionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"))


def parse_yaml(text: str):
    """Parse YAML text with :class:`OptionLoader`."""
    return yaml.load(text, Loader=OptionLoader)  # noqa: S506 - OptionLoader is a SafeLoader


@dataclass(frozen=True)
class Key:
    """A plain option: allowed types, default (``REQUIRED`` if none) and optional allowed values."""

    types: tuple
    default: Any = REQUIRED
    choices: Optional[tuple] = None


@dataclass(frozen=True)
class Component:
    """A ``{type: Name, **kwargs}`` mapping resolved in a registry (or a name -> callable table)."""

    kind: str  # arch | loss | dataset | metric | optimizer | scheduler
    required: bool = True


@dataclass(frozen=True)
class MapOf:
    """A mapping of free names to ``item`` specs (e.g. ``val.metrics.<name>``)."""

    item: Any


INT, FLOAT, BOOL, STR = (int,), (int, float), (bool,), (str,)
OPT_STR = (str, type(None))

DATASET_LOADER_KEYS = {
    "name": Key(STR, ""),
    "batch_size_per_gpu": Key(INT, 1),
    "num_worker_per_gpu": Key(INT, 0),
    "dataset_enlarge_ratio": Key(INT, 1),
    "use_shuffle": Key(BOOL, True),
    "pin_memory": Key(BOOL, True),
    "prefetch_mode": Key((str, type(None)), None, (None, "cpu", "cuda")),
}

# Loss sections under ``train``: option key -> name of the loss term in logs (BasicSR's names).
LOSS_KEYS = {"pixel_opt": "l_pix", "perceptual_opt": "l_percep", "ssim_opt": "l_ssim",
             "frequency_opt": "l_freq"}

SCHEMA: dict[str, Any] = {
    "name": Key(STR),
    "manual_seed": Key(INT, 0),
    "device": Key(STR, "auto"),
    # Accepted for BasicSR compatibility; llcv infers all three (one model kind, torchrun ranks).
    "model_type": Key(STR, "ImageRestorationModel"),
    "scale": Key(INT, 1),
    "num_gpu": Key((int, str), "auto"),
    "dist_params": {
        "backend": Key(STR, "auto", ("auto", "gloo", "nccl")),
        "timeout": Key(FLOAT, 1800.0),  # seconds a collective may wait for a peer
    },
    "datasets": "datasets",  # validated by _check_datasets: phase name -> loader keys + dataset
    "network_g": Component("arch"),
    "path": {
        "experiments_root": Key(STR, "experiments"),
        "pretrain_network_g": Key(OPT_STR, None),
        "param_key_g": Key(STR, "params"),
        "strict_load_g": Key(BOOL, True),
        "resume_state": Key(OPT_STR, None),
    },
    "train": {
        "total_iter": Key(INT),
        "warmup_iter": Key(INT, -1),
        "optim_g": Component("optimizer"),
        "scheduler": Component("scheduler", required=False),
        "ema_decay": Key(FLOAT, 0.0),
        "grad_clip_norm": Key((int, float, type(None)), None),
        **{k: Component("loss", required=False) for k in LOSS_KEYS},
    },
    "val": {
        "val_freq": Key(INT, 5000),
        "save_img": Key(BOOL, False),
        "protocol": Key(STR, "uint8", ("uint8", "float")),
        "tb_images": Key(INT, 4),
        "metrics": MapOf(Component("metric")),
    },
    "logger": {
        "print_freq": Key(INT, 100),
        "save_checkpoint_freq": Key(INT, 5000),
        "use_tb_logger": Key(BOOL, True),
        "measure_allocator": Key(BOOL, True),  # CPU: peak bytes through PyTorch's allocator
    },
}
OPTIONAL_SECTIONS = ("val",)


def load_options(path: str, overrides: Sequence[str] = (), debug: bool = False) -> dict:
    """Read ``path``, apply ``key.path=value`` overrides, validate, and return the full options."""
    opt = read_yaml(path)
    for item in overrides:
        apply_override(opt, item)
    if debug:
        opt["name"] = f"debug_{opt.get('name', 'run')}"
        logger = opt.setdefault("logger", {})
        logger.update(print_freq=1, save_checkpoint_freq=8)
        if isinstance(opt.get("val"), dict):
            opt["val"]["val_freq"] = 8
    return validate_options(opt)


def read_yaml(path: str) -> dict:
    """Safely parse a YAML option file; syntax errors name the file, line and column."""
    if not os.path.isfile(path):
        raise OptionError(f"-opt: option file '{path}' does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = parse_yaml(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise OptionError(f"{path}{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise OptionError(f"{path}: an option file must be a YAML mapping at top level")
    return data


def apply_override(opt: dict, item: str) -> None:
    """Set ``a.b.c=value`` in ``opt``; the value is parsed as a YAML scalar/list (``1e-4``, ``[1,2]``)."""
    if "=" not in item:
        raise OptionError(f"--set {item}: expected key.path=value")
    path, raw = item.split("=", 1)
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise OptionError(f"--set {path}: cannot parse value '{raw}' as YAML") from None
    keys = path.strip().split(".")
    node = opt
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise OptionError(f"--set {path}: '{'.'.join(keys[:depth + 1])}' is not a mapping")
        node = child
    node[keys[-1]] = value


def validate_options(opt: Mapping[str, Any]) -> dict:
    """Return a deep copy of ``opt`` with defaults filled in; raise naming the first bad key."""
    out = copy.deepcopy(dict(opt))
    _check_section(out, SCHEMA, "")
    return out


def _check_section(node: dict, schema: Mapping[str, Any], prefix: str) -> None:
    _reject_unknown(node, schema, prefix)
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if spec == "datasets":
            _check_datasets(node, path)
        elif isinstance(spec, dict):
            if node.get(key) is None:
                if key in OPTIONAL_SECTIONS:
                    node.pop(key, None)
                    continue
                node[key] = {}
            if not isinstance(node[key], dict):
                raise OptionError(f"{path}: expected a mapping, got {type(node[key]).__name__}")
            _check_section(node[key], spec, path + ".")
        else:
            _check_value(node, key, spec, path)


def _reject_unknown(node: Mapping[str, Any], accepted: Iterable[str], prefix: str) -> None:
    names = list(accepted)
    for key in node:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise OptionError(f"{prefix}{key}: unknown option{hint}; accepted here: {', '.join(names)}")


def _check_value(node: dict, key: str, spec: Any, path: str) -> None:
    if isinstance(spec, Key):
        _check_key(node, key, spec, path)
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
            _check_value(value, name, spec.item, f"{path}.{name}")


def _check_key(node: dict, key: str, spec: Key, path: str) -> None:
    if key not in node:
        if spec.default is REQUIRED:
            raise OptionError(f"{path}: missing required option")
        node[key] = copy.deepcopy(spec.default)
        return
    value = node[key]
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


def check_component(cfg: Any, kind: str, path: str) -> None:
    """Check a ``{type: Name, ...}`` section against the signature of what it names."""
    from llcv import registry
    from llcv.engine import optim

    if not isinstance(cfg, dict) or "type" not in cfg:
        raise OptionError(f"{path}: expected a mapping with a 'type' key")
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    if kind in ("optimizer", "scheduler"):
        table = optim.OPTIMIZERS if kind == "optimizer" else optim.SCHEDULES
        target = optim.lookup(table, cfg["type"], f"{path}.type", kind)
        provided = ("params",) if kind == "optimizer" else ("total_iter",)
    else:
        reg = {"arch": registry.ARCHS, "loss": registry.LOSSES, "metric": registry.METRICS,
               "dataset": registry.DATASETS}[kind]
        target = registry.lookup(reg, cfg["type"], f"{path}.type")
        provided = {"dataset": ("phase",), "metric": ("img", "img2")}.get(kind, ())
    registry.check_kwargs(target, kwargs, path)
    registry.check_required(target, kwargs, path, provided=provided)


def _check_datasets(node: dict, path: str) -> None:
    datasets = node.get("datasets")
    if not isinstance(datasets, dict) or "train" not in datasets:
        raise OptionError(f"{path}.train: missing required section (the training dataset)")
    for phase, section in datasets.items():
        if not (phase == "train" or phase.startswith("val") or phase.startswith("test")):
            raise OptionError(f"{path}.{phase}: dataset phases are 'train', 'val*' or 'test*'")
        key = f"{path}.{phase}"
        if not isinstance(section, dict) or "type" not in section:
            raise OptionError(f"{key}: expected a mapping with a 'type' key")
        for name, spec in DATASET_LOADER_KEYS.items():
            _check_key(section, name, spec, f"{key}.{name}")
        check_component(dataset_kwargs(section), "dataset", key)


def dataset_kwargs(section: Mapping[str, Any]) -> dict:
    """The part of a dataset section passed to the dataset class (loader keys removed)."""
    return {k: copy.deepcopy(v) for k, v in section.items() if k not in DATASET_LOADER_KEYS}


def save_options(opt: Mapping[str, Any], path: str) -> None:
    """Write the resolved options as YAML (what the run actually used)."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(opt), f, sort_keys=False, default_flow_style=None)
