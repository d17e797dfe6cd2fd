"""User-facing errors: one clear line naming the bad key, file or name, and the fix."""
from __future__ import annotations

import errno
import os
import shutil


class LLCVError(Exception):
    """An error caused by the user's input (options, data, paths); printed without a traceback."""


class OptionError(LLCVError):
    """An option file or override is invalid; the message starts with the dotted key path."""


class DataError(LLCVError):
    """A data file or LMDB entry cannot be used; the message names the file or key."""


class ArgumentError(OptionError, ValueError):
    """A bad constructor argument of a component; the message starts with the argument name.

    It is a ``ValueError`` for code that builds components directly, and an ``OptionError`` so
    that building from options prefixes the dotted key (``network_g.widths: ...``).
    """


class StorageError(LLCVError):
    """A file cannot be written (disk full, read-only, quota, size limit); names the path."""


# What to do about the storage errors a run meets; others get the generic hint.
STORAGE_HINTS = {
    errno.ENOSPC: "free some space, or keep fewer checkpoints (logger.keep_checkpoints)",
    errno.EDQUOT: "the disk quota is used up: free some space or raise the quota",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit",
    errno.EROFS: "the file system is read-only: set path.experiments_root to a writable folder",
    errno.EACCES: "no permission to write there: set path.experiments_root to a writable folder",
    errno.EPERM: "no permission to write there: set path.experiments_root to a writable folder",
}


def storage_error(path: str, err: OSError) -> StorageError:
    """One line naming ``path``, the OS error (name and number) and the free space there."""
    code = errno.errorcode.get(err.errno, "unknown") if err.errno else "unknown"
    hint = STORAGE_HINTS.get(err.errno, "check the folder and the free space")
    return StorageError(f"cannot write '{path}': {err.strerror or err} ({code}, errno "
                        f"{err.errno}); {_free_space(path)} free on its file system; {hint}")


def _free_space(path: str) -> str:
    """Free space of the file system holding ``path`` (or its nearest existing folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    while free >= 1024 and len(units) > 1:
        free, units = free / 1024, units[1:]
    return f"{free:.1f} {units[0]}"
