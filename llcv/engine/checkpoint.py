"""Checkpoint files: plain tensors and values only, written atomically, loaded weights-only.

``models/net_g_<iter>.pth`` holds the weights (``params``, ``params_ema``) and the network
options that built them; ``net_g_latest.pth`` is a hard link to (or, where the file system has
none, a copy of) the newest one, made once that checkpoint's training state is written.
``training_states/<iter>.state`` holds everything needed to continue exactly: weights,
optimizer, iteration, every RNG state, hook states and the training options they came from.
On resume the option file's hyper-parameters win over the saved ones (:func:`apply_options`).
"""
from __future__ import annotations

import glob
import os
import random
import re
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.optim.optimizers import build_optimizer
from llcv.serialization import atomic_link, atomic_save, remove_temp_files

MODELS_DIR, STATES_DIR = "models", "training_states"
#: options under ``train`` a training state records; on resume the option file's values win
RECORDED_TRAIN_KEYS = ("optim_g", "scheduler", "total_iter", "warmup_iter")


def rng_state() -> dict:
    """Every global RNG state as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": np_state["bit_generator"],
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def latest_state(states_dir: str) -> str | None:
    """Path of the training state with the highest iteration in ``states_dir``, if any."""
    found = []
    for path in glob.glob(os.path.join(states_dir, "*.state")):
        match = re.fullmatch(r"(\d+)\.state", os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def check_training_state(state: Mapping[str, Any], path: str, key: str) -> None:
    """Refuse anything that is not a training state, saying what to use instead."""
    if "iter" in state and "optimizer" in state:
        return
    if "params" in state or "params_ema" in state:
        raise LLCVError(
            f"{key}: '{path}' holds network weights, not a training state; resume from "
            f"experiments/<name>/training_states/<iter>.state, or load these weights with "
            f"path.pretrain_network_g")
    if "optimizers" in state and "schedulers" in state:
        raise LLCVError(
            f"{key}: '{path}' is a BasicSR training state, which llcv cannot continue (its "
            f"optimizer and scheduler objects differ); start from its weights instead with "
            f"path.pretrain_network_g: <its experiments folder>/models/"
            f"net_g_{state.get('iter', '<iter>')}.pth")
    raise LLCVError(f"{key}: '{path}' is not an llcv training state (no 'iter'/'optimizer')")


# ---------------------------------------------------------------------- files of a run folder
def write_checkpoint(exp_dir: str, it: int, weights: Mapping[str, Any],
                     state: Mapping[str, Any]) -> None:
    """Write ``net_g_<it>.pth`` and ``<it>.state``, then point ``net_g_latest.pth`` at the new
    weights (the weights are serialized once; a failed write leaves earlier files as they were)."""
    models = os.path.join(exp_dir, MODELS_DIR)
    weights_path = os.path.join(models, f"net_g_{it}.pth")
    atomic_save(weights, weights_path)
    atomic_save(state, os.path.join(exp_dir, STATES_DIR, f"{it}.state"))
    atomic_link(weights_path, os.path.join(models, "net_g_latest.pth"))


def _iterations(folder: str, pattern: str) -> dict[int, str]:
    """Iteration -> path of the files in ``folder`` whose names match ``pattern``."""
    found = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        match = re.fullmatch(pattern, name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name)
    return found


def remove_old_checkpoints(exp_dir: str, keep: int, protect: Iterable[int] = ()) -> list[int]:
    """Delete the weights and states of checkpoints older than the last ``keep`` training
    states, except the iterations in ``protect`` (the best one); returns those deleted."""
    states = _iterations(os.path.join(exp_dir, STATES_DIR), r"(\d+)\.state")
    weights = _iterations(os.path.join(exp_dir, MODELS_DIR), r"net_g_(\d+)\.pth")
    last = sorted(states)[-keep:]
    if not last:
        return []
    kept = set(last) | set(protect)
    removed = sorted(it for it in set(states) | set(weights) if it < last[0] and it not in kept)
    for it in removed:
        for path in (states.get(it), weights.get(it)):
            if path is not None:
                os.remove(path)
    return removed


def remove_stale_temp_files(exp_dir: str) -> list[str]:
    """Delete the ``.tmp_*`` files a killed run left among the checkpoints; returns them."""
    return [os.path.join(sub, name) for sub in (MODELS_DIR, STATES_DIR)
            for name in remove_temp_files(os.path.join(exp_dir, sub))]


# ---------------------------------------------------------------------- resume semantics
def recorded_train_options(train: Mapping[str, Any]) -> dict[str, Any]:
    """The training options a state records (plain values, for a weights-only load)."""
    return {k: train[k] for k in RECORDED_TRAIN_KEYS if k in train}


def apply_options(optimizer: torch.optim.Optimizer, train: Mapping[str, Any],
                  saved: Mapping[str, Any] | None) -> list[str]:
    """After a saved optimizer state was loaded, set every param group's hyper-parameters to
    what ``train.optim_g`` says (the base LR as ``initial_lr``, which the closed-form schedule
    scales). Returns ``key: saved -> now`` for every option that differs from the state's,
    the schedule and ``total_iter`` included (those are built from the options anyway)."""
    saved = saved or {}
    cfg = train["optim_g"]
    old_type = (saved.get("optim_g") or {}).get("type", cfg["type"])
    if old_type != cfg["type"]:
        raise OptionError(f"train.optim_g.type: the resumed state was trained with {old_type}, "
                          f"whose state {cfg['type']} cannot continue; resume with type "
                          f"{old_type}, or start a new run from its weights "
                          f"(path.pretrain_network_g)")
    changes = _set_hyperparameters(optimizer, cfg)
    for key in ("scheduler", "total_iter", "warmup_iter"):
        if key in saved and _plain(saved[key]) != _plain(train.get(key)):
            changes.append(f"train.{key}: {_plain(saved[key])} -> {_plain(train.get(key))}")
    return changes


def _set_hyperparameters(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]) -> list[str]:
    """Give every param group the hyper-parameters ``cfg`` builds; 'name: old -> new' each."""
    wanted = build_optimizer([nn.Parameter(torch.zeros(1))], cfg).defaults
    changes: dict[str, str] = {}
    for group in optimizer.param_groups:
        for name, value in wanted.items():
            key = "initial_lr" if name == "lr" and "initial_lr" in group else name
            if key in group and _plain(group[key]) != _plain(value):
                changes[name] = f"train.optim_g.{name}: {_plain(group[key])} -> {_plain(value)}"
                group[key] = value
    return list(changes.values())


def _plain(value: Any) -> Any:
    """Tuples as lists, so a value read from YAML compares equal to the optimizer's."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
