"""Checkpoint files on disk: written atomically, read with ``weights_only=True``.

Every llcv file holds only tensors and plain Python values, so loading never runs pickled code.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping

import torch
import yaml

from llcv.errors import LLCVError


def atomic_save(obj: Mapping[str, Any], path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str, key: str) -> dict:
    """Load a checkpoint with ``weights_only=True``; failures name the option ``key`` and file."""
    if not os.path.isfile(path):
        raise LLCVError(f"{key}: file '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, foreign pickle, ...
        raise LLCVError(f"{key}: cannot load '{path}' as an llcv checkpoint ({err})") from None


def yaml_text(data: Mapping[str, Any]) -> str:
    """``data`` as YAML text, keys in their order (lists of scalars on one line)."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


def save_yaml(data: Mapping[str, Any], path: str) -> None:
    """Write ``data`` (e.g. the resolved options a run used) as YAML."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(yaml_text(data))
