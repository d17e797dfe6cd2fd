"""Checkpoint files: plain tensors and values only, written atomically, loaded weights-only.

``models/net_g_<iter>.pth`` holds the weights (``params``, ``params_ema``) and the network
options that built them; ``training_states/<iter>.state`` holds everything needed to continue
exactly: weights, optimizer, iteration, every RNG state, hook states and the options.
"""
from __future__ import annotations

import glob
import os
import random
import re
from typing import Any, Mapping

import numpy as np
import torch

from llcv.errors import LLCVError


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
