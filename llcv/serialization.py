"""Checkpoint files on disk: written atomically, read with ``weights_only=True``.

Every llcv file holds only tensors and plain Python values, so loading never runs pickled code.
A file is written to a ``.tmp_*`` file in its folder, fsynced and renamed over the target, with
the mode a plain ``open`` gives (0644 under the usual umask). A failed write (disk full,
read-only, quota, ``ulimit -f``) leaves the target as it was and raises a
:class:`~llcv.errors.StorageError` naming the path, the error and the free space.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import secrets
import shutil
import tempfile
import warnings
from typing import Any, Mapping

import torch
import yaml

from llcv.errors import LLCVError, storage_error

TMP_PREFIX = ".tmp_"
ZIP_MAGIC = b"PK\x03\x04"


def current_umask() -> int:
    """The process's umask, read without changing it where ``/proc`` shows it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _RecordingWriter:
    """Passes writes to a file and keeps the ``OSError`` of a failed one (``torch.save``
    reports it only as "unexpected pos")."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_save(obj: Mapping[str, Any], path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix="_" + os.path.basename(path),
                                   dir=folder)
    except OSError as err:
        raise storage_error(path, err) from None
    writer = None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingWriter(f)
            torch.save(obj, writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _remove_quietly(tmp)
        cause = writer.error if writer is not None and writer.error is not None else err
        if isinstance(cause, OSError):
            raise storage_error(path, cause) from None
        raise


def atomic_link(src: str, dst: str) -> None:
    """Make ``dst`` the file ``src`` is (a hard link, or a copy where the file system has
    none), replacing ``dst`` atomically: the weights are written once per checkpoint."""
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(folder, f"{TMP_PREFIX}{secrets.token_hex(4)}_{os.path.basename(dst)}")
    try:
        try:
            os.link(src, tmp)
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            _copy_synced(src, tmp)
        os.replace(tmp, dst)
    except OSError as err:
        _remove_quietly(tmp)
        raise storage_error(dst, err) from None


def _copy_synced(src: str, dst: str) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
        fout.flush()
        os.fsync(fout.fileno())


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def remove_temp_files(folder: str) -> list[str]:
    """Delete the ``.tmp_*`` files a killed writer left in ``folder``; returns their names."""
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX))
    for name in names:
        _remove_quietly(os.path.join(folder, name))
    return names


def load_checkpoint(path: str, key: str) -> dict:
    """Load a checkpoint with ``weights_only=True``; failures name the option ``key``, the file
    and what is wrong with it."""
    if not os.path.isfile(path):
        raise LLCVError(f"{key}: file '{path}' does not exist")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a checkpoint, truncated, pickled objects, ...
        raise LLCVError(f"{key}: cannot load '{path}': {_why_unloadable(path, err)}") from None


def _why_unloadable(path: str, err: Exception) -> str:
    """What keeps ``path`` from loading, in words (never torch's advice to unpickle objects)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if not head:
        return "the file is empty; use another checkpoint"
    if not head.startswith(ZIP_MAGIC) and head[:1] != b"\x80":
        return (f"it is not a PyTorch checkpoint (it starts with {head!r}); give a "
                f"models/net_g_<iter>.pth or training_states/<iter>.state file")
    if isinstance(err, pickle.UnpicklingError):
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f" (e.g. {found.group(1)})" if found else ""
        return (f"it holds pickled Python objects{what}, and llcv loads only tensors and plain "
                f"values so that loading never runs code; save the weights as a state_dict "
                f"(torch.save(model.state_dict(), path)) and give that file")
    return (f"the file is truncated or corrupt ({str(err).split('. ')[0].strip()}); use an "
            f"earlier checkpoint")


def yaml_text(data: Mapping[str, Any]) -> str:
    """``data`` as YAML text, keys in their order (lists of scalars on one line)."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


def save_yaml(data: Mapping[str, Any], path: str) -> None:
    """Write ``data`` (e.g. the resolved options a run used) as YAML."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(yaml_text(data))
    except OSError as err:
        raise storage_error(path, err) from None
