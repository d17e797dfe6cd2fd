"""Option files: safe YAML loading, ``--set`` overrides, and validation with dotted key paths.

The schema below names every key llcv reads. BasicSR's key names are kept where they exist so
users' option files carry over. Component sections (``{type: Name, ...}``) are checked against
the signature of the registered class, so a misspelt argument is named before anything runs.
"""
from __future__ import annotations

import copy
import inspect
import math
import os
import re
import sys
from typing import Any, Mapping, Optional, Sequence

import torch
import yaml

from llcv.data.loader import DATASET_LOADER_KEYS, dataset_kwargs
from llcv.data.progressive import ProgressivePatches
from llcv.errors import OptionError
from llcv.engine.prune_hook import SPLITS, check_schedule, pruner_options
from llcv.optim.optimizers import build_optimizer
from llcv.optim.schedulers import LRSchedule
from llcv.registry import DATASETS, MODELS, PRUNERS, build, lookup
from llcv.schema import (BOOL, FLOAT, INT, OPT_STR, STR, Component, Key, MapOf, check_component,
                         check_key, check_section, reject_unknown)


class OptionLoader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-4`` as a float (YAML 1.2), not as a string."""


OptionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"))


def parse_yaml(text: str):
    """Parse YAML text with :class:`OptionLoader`."""
    return yaml.load(text, Loader=OptionLoader)  # noqa: S506 - OptionLoader is a SafeLoader


#: keys under ``train`` for every training step; each step adds its loss sections and own keys
TRAIN_KEYS: dict[str, Any] = {
    "total_iter": Key(INT, low=1),
    "warmup_iter": Key(INT, -1, low=-1),
    "optim_g": Component("optimizer"),
    "scheduler": Component("scheduler", required=False),
    "ema_decay": Key(FLOAT, 0.0, low=0.0, below=1.0),
    "grad_clip_norm": Key((int, float, type(None)), None, low=0.0),
    # Speed paths: autocast precision, NHWC layout, torch.compile (true, or its arguments).
    "amp": Key((str, type(None)), None, (None, "bf16", "fp16")),
    "channels_last": Key(BOOL, False),
    "compile": Key((bool, dict), False),
    "cudnn_benchmark": Key(BOOL, True),  # CUDA only: let cuDNN pick the fastest kernels
}

SCHEMA: dict[str, Any] = {
    "name": Key(STR),
    "manual_seed": Key(INT, 0),
    "device": Key(STR, "auto"),
    # What one iteration does (BasicSR's key): a training step registered in MODELS.
    "model_type": Key(STR, "ImageRestorationModel"),
    # Accepted for BasicSR compatibility; llcv infers both (datasets' scale, torchrun ranks).
    "scale": Key(INT, 1, low=1),
    "num_gpu": Key((int, str), "auto"),
    "dist_params": {
        "backend": Key(STR, "auto", ("auto", "gloo", "nccl")),
        "timeout": Key(FLOAT, 1800.0, low=1.0),  # seconds a collective may wait for a peer
        "port": Key((int, type(None)), None, low=1),  # MASTER_PORT when the launcher sets none
    },
    "network_g": Component("arch"),
    "path": {
        "experiments_root": Key(STR, "experiments"),
        "pretrain_network_g": Key(OPT_STR, None),
        "param_key_g": Key(OPT_STR, "params"),
        "strict_load_g": Key(BOOL, True),
        "resume_state": Key(OPT_STR, None),
    },
    "val": {
        "val_freq": Key(INT, 5000),
        "save_img": Key(BOOL, False),
        "protocol": Key(STR, "uint8", ("uint8", "float")),
        "tb_images": Key(INT, 4, low=0),
        "metrics": MapOf(Component("metric")),
    },
    "logger": {
        "print_freq": Key(INT, 100),
        "save_checkpoint_freq": Key(INT, 5000),
        "use_tb_logger": Key(BOOL, True),
        "measure_allocator": Key(BOOL, True),  # CPU: peak bytes of the tensors of a step
        "allocator_freq": Key((int, type(None)), None, low=1),  # ... every N iters (print_freq)
        # 0 keeps every checkpoint; N > 0 the last N (and the best by the first val metric)
        "keep_checkpoints": Key(INT, 0, low=0),
    },
}
OPTIONAL_SECTIONS = ("val",)

# Keys of BasicSR / NAFNet / Restormer option files that llcv reads under another name.
RENAMED = {"path.pretrain_model_g": "path.pretrain_network_g",
           "path.strict_load": "path.strict_load_g"}
# Keys of those files that llcv accepts but does not need: what llcv does instead.
NOT_NEEDED = {
    "logger.wandb": "llcv logs to TensorBoard and metrics.jsonl, not to wandb "
                    "(tensorboard --logdir experiments/)",
    "val.rgb2bgr": "llcv keeps images RGB and writes PNG files in the right channel order",
    "val.max_minibatch": "validation runs whole images, datasets.val*.batch_size_per_gpu at a time",
    "val.window_size": "every network pads its input to its own size multiple",
    "val.suffix": "saved images are named <image>_<iter>.png",
    "val.pbar": "the main process always shows a progress bar",
    "path.visualization": "saved images go to experiments/<name>/visualization/",
    "path.root": "runs go to path.experiments_root/<name>",
}
# BasicSR metrics llcv does not compute: dropped from ``val.metrics`` with a note.
NOT_COMPUTED_METRICS = {"calculate_niqe": "NIQE (a no-reference metric) is not computed by llcv; "
                                          "the other val.metrics are"}
# Restormer's ``train.use_grad_clip: true`` clips the gradient norm to this value.
RESTORMER_GRAD_CLIP = 0.01
# Sections with their own checks: ``datasets`` (phase -> loader keys + dataset), ``train``
# (TRAIN_KEYS plus the training step's keys), ``custom_hooks`` (MMEngine style:
# [{type: Name, name: ..., priority: ..., ...arguments}]) and ``prune`` (a pruner with
# ``schedule`` and ``split``; llcv.engine.prune_hook).
SECTIONS = ("datasets", "train", "custom_hooks", "prune")
HOOK_KEYS = ("name", "priority")  # keys of a custom_hooks entry that are not hook arguments


def load_options(path: str, overrides: Sequence[str] = (), debug: bool = False) -> dict:
    """Read ``path``, apply ``key.path=value`` overrides, validate, and return the full options."""
    opt = read_with_overrides(path, overrides)
    if debug:
        opt["name"] = f"debug_{opt.get('name', 'run')}"
        logger = opt.setdefault("logger", {})
        logger.update(print_freq=1, save_checkpoint_freq=8)
        if isinstance(opt.get("val"), dict):
            opt["val"]["val_freq"] = 8
    notes: list[str] = []
    out = validate_options(opt, notes)
    if os.environ.get("RANK", "0") == "0":
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return out


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


def read_with_overrides(path: str, overrides: Sequence[str] = ()) -> dict:
    """An option file as written, after ``--set`` overrides (not validated: tools that read
    only a part of it, such as ``network_g``, check that part)."""
    opt = read_yaml(path)
    for item in overrides:
        apply_override(opt, item)
    return opt


def network_options(opt: Mapping[str, Any], path: str) -> dict:
    """``network_g`` of a raw option file, checked against the arch's signature."""
    if opt.get("network_g") is None:
        raise OptionError(f"network_g: missing in '{path}'; add e.g. network_g: {{type: UNet}}")
    check_component(opt["network_g"], "arch", "network_g")
    return opt["network_g"]


def translate_foreign_keys(opt: dict) -> list[str]:
    """Rewrite, in place, the keys of BasicSR/NAFNet/Restormer files that llcv spells otherwise;
    drop those it does not need. Returns one note per dropped key, saying what llcv does."""
    notes = []
    for old, new in RENAMED.items():
        value = _pop_path(opt, old)
        if value is not _ABSENT and _get_path(opt, new) is _ABSENT:
            _set_path(opt, new, value)
    for key, note in NOT_NEEDED.items():
        value = _pop_path(opt, key)
        if value not in (_ABSENT, None, False):
            notes.append(f"{key} is not used: {note}")
    val, train = opt.get("val"), opt.get("train")
    if isinstance(val, dict):
        if val.pop("grids", False):
            raise OptionError("val.grids: llcv validates whole images; for images too large for "
                              "memory use tools/infer.py --memory-budget-mb (tiled inference)")
        metrics = val.get("metrics")
        for name, cfg in list(metrics.items()) if isinstance(metrics, dict) else ():
            if isinstance(cfg, dict) and cfg.get("type") in NOT_COMPUTED_METRICS:
                del metrics[name]
                notes.append(f"val.metrics.{name} is not used: {NOT_COMPUTED_METRICS[cfg['type']]}")
        use_image = val.pop("use_image", None)
        if use_image is not None and "protocol" not in val:
            val["protocol"] = "uint8" if use_image else "float"  # NAFNet: metrics on tensors
    if isinstance(train, dict) and train.pop("use_grad_clip", False):
        train.setdefault("grad_clip_norm", RESTORMER_GRAD_CLIP)
    return notes


_ABSENT = object()


def _get_path(opt: Mapping[str, Any], path: str) -> Any:
    node: Any = opt
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def _pop_path(opt: dict, path: str) -> Any:
    parent, _, leaf = path.rpartition(".")
    node = _get_path(opt, parent) if parent else opt
    return node.pop(leaf, _ABSENT) if isinstance(node, dict) else _ABSENT


def _set_path(opt: dict, path: str, value: Any) -> None:
    parent, _, leaf = path.rpartition(".")
    node = opt
    for key in parent.split(".") if parent else ():
        node = node.setdefault(key, {})
    node[leaf] = value


def _propagate_scale(opt: dict) -> None:
    """BasicSR's top-level ``scale`` applies to every dataset that takes one (its own wins)."""
    scale = opt.get("scale", 1)
    datasets = opt.get("datasets")
    if scale == 1 or not isinstance(datasets, dict):
        return
    for section in datasets.values():
        if isinstance(section, dict) and "scale" not in section and "type" in section:
            cls = lookup(DATASETS, section["type"], "datasets.type")
            if "scale" in inspect.signature(cls).parameters:
                section["scale"] = scale


def validate_options(opt: Mapping[str, Any], notes: Optional[list] = None) -> dict:
    """Return a deep copy of ``opt`` with defaults filled in; raise naming the first bad key.

    Keys from BasicSR/NAFNet/Restormer files are translated first; ``notes`` (a list) receives
    a line for each such key llcv does not use.
    """
    out = copy.deepcopy(dict(opt))
    found = translate_foreign_keys(out)
    if notes is not None:
        notes.extend(found)
    check_key(out, "model_type", SCHEMA["model_type"], "model_type")
    step = lookup(MODELS, out["model_type"], "model_type")
    train_keys = {**TRAIN_KEYS, **{k: Component("loss", required=False) for k in step.loss_keys},
                  **step.train_keys}
    schema = {**SCHEMA, **step.top_keys}
    reject_unknown(out, [*schema, *SECTIONS], "")
    sections = {k: out.pop(k) for k in SECTIONS if k in out}
    check_section(out, schema, "", OPTIONAL_SECTIONS)
    out.update(sections)
    _check_datasets(out, "datasets")
    _propagate_scale(out)
    train_set = out["datasets"]["train"]
    ProgressivePatches.from_section(train_set, train_set.get("scale", 1), 0, 0)  # checks only
    if not isinstance(out.get("train"), dict):
        raise OptionError("train: missing required section (total_iter, optim_g, losses)")
    check_section(out["train"], train_keys, "train.")
    _check_optimizer(out["train"]["optim_g"], "train.optim_g")
    _check_schedule(out["train"])
    _check_custom_hooks(out)
    _check_prune(out)
    return out


def _check_optimizer(cfg: Mapping[str, Any], key: str) -> None:
    """Build the optimizer over one dummy tensor, so torch's own range checks (lr, betas, eps,
    weight decay) name the option before anything runs."""
    try:
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, key)
    except (ValueError, TypeError) as err:
        raise OptionError(f"{key}: {err}") from None


def _check_schedule(train: Mapping[str, Any]) -> None:
    """Build ``train.scheduler`` and evaluate it at the first, middle and last iteration: a
    learning rate that is not a finite number >= 0 names the section."""
    schedule = LRSchedule(train.get("scheduler"), train["total_iter"], train["warmup_iter"])
    total = train["total_iter"]
    for it in sorted({1, max(total // 2, 1), total}):
        try:
            factor = schedule.lr_at(1.0, it)
        except (ArithmeticError, TypeError, ValueError) as err:
            raise OptionError(f"train.scheduler: cannot compute the learning rate at iter {it} "
                              f"({err}); check its arguments") from None
        if not math.isfinite(factor) or factor < 0:
            raise OptionError(f"train.scheduler: gives {factor} x the base learning rate at "
                              f"iter {it}; check its arguments")


def _check_prune(opt: dict) -> None:
    """The ``prune:`` section: its schedule and split, and a pruner built from the rest (so
    every argument value, the target included, is checked before anything runs)."""
    cfg = opt.get("prune")
    if cfg is None:
        opt.pop("prune", None)
        return
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise OptionError("prune: expected a mapping with a pruner 'type', a 'schedule' and a "
                          "'target', e.g. {type: MemoryAwarePruner, schedule: [1000, 2000], "
                          "target: {channel_ratio: 0.5}}")
    check_schedule(cfg.get("schedule"), opt["train"]["total_iter"])
    cfg.setdefault("split", "geometric")
    if cfg["split"] not in SPLITS:
        raise OptionError(f"prune.split: '{cfg['split']}' is not one of {', '.join(SPLITS)}")
    pruner = pruner_options(cfg)
    check_component(pruner, "pruner", "prune")
    build(PRUNERS, pruner, "prune")


def _check_custom_hooks(opt: dict) -> None:
    hooks = opt.setdefault("custom_hooks", [])
    if hooks is None:
        hooks = opt["custom_hooks"] = []
    if not isinstance(hooks, list):
        raise OptionError("custom_hooks: expected a list of {type: Name, ...} sections")
    for i, cfg in enumerate(hooks):
        path = f"custom_hooks.{i}"
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise OptionError(f"{path}: expected a mapping with a 'type' key")
        check_component({k: v for k, v in cfg.items() if k not in HOOK_KEYS}, "hook", path)
        if "name" in cfg and not isinstance(cfg["name"], str):
            raise OptionError(f"{path}.name: expected a string, got {cfg['name']!r}")
        if "priority" in cfg:
            check_key(cfg, "priority", Key(INT), f"{path}.priority")


def _check_datasets(node: dict, path: str, test: bool = False) -> None:
    """Every dataset section: a training file needs ``train`` (and may have ``val*``/``test*``),
    a test file has ``test*``/``val*`` sets only."""
    datasets = node.get("datasets")
    if test:
        if not isinstance(datasets, dict) or not datasets:
            raise OptionError(f"{path}: missing; a test file needs datasets.test_1 (or val) "
                              f"blocks")
    elif not isinstance(datasets, dict) or "train" not in datasets:
        raise OptionError(f"{path}.train: missing required section (the training dataset)")
    for phase, section in datasets.items():
        if not (phase.startswith("val") or phase.startswith("test") or
                (phase == "train" and not test)):
            rule = ("a test file's dataset phases are 'test*' or 'val*' (training sets belong in "
                    "a training option file)") if test else \
                "dataset phases are 'train', 'val*' or 'test*'"
            raise OptionError(f"{path}.{phase}: {rule}")
        key = f"{path}.{phase}"
        if not isinstance(section, dict) or "type" not in section:
            raise OptionError(f"{key}: expected a mapping with a 'type' key")
        for name, spec in DATASET_LOADER_KEYS.items():
            check_key(section, name, spec, f"{key}.{name}")
        check_component(dataset_kwargs(section), "dataset", key)


# ---------------------------------------------------------------------- test option files
def validate_test_options(opt: Mapping[str, Any], notes: Optional[list] = None) -> dict:
    """Check a BasicSR-style test option file and fill defaults; raise naming the first bad key.

    A test file has no ``train`` section; its datasets are ``datasets.test*`` / ``datasets.val*``
    blocks, its weights ``path.pretrain_network_g`` (``param_key_g: ~`` for a bare state_dict)
    and its metrics ``val.metrics``. A training option file (it has ``train``) is checked as one,
    and its validation sets are the test sets. Foreign keys are translated as in training files.
    """
    if "train" in opt:
        return validate_options(opt, notes)
    out = copy.deepcopy(dict(opt))
    found = translate_foreign_keys(out)
    if notes is not None:
        notes.extend(found)
    datasets = out.pop("datasets", None)
    check_section(out, SCHEMA, "", OPTIONAL_SECTIONS)
    out["datasets"] = datasets
    _check_datasets(out, "datasets", test=True)
    _propagate_scale(out)
    if not (out.get("val") or {}).get("metrics"):
        raise OptionError("val.metrics: missing; name the metrics to test, e.g. val.metrics.psnr: "
                          "{type: calculate_psnr, crop_border: 0}")
    return out
