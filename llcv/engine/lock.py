"""One run per folder: ``<run folder>/.lock`` says which process owns the folder.

The file holds the owner's PID, host and start time. Ownership is an exclusive ``flock`` on it,
which the kernel drops when the owner ends in any way (``kill -9`` included), so the lock of a
dead run is stale by construction and the next run takes it over; a clean end removes the file.
Where the file system has no ``flock``, the PID decides: a lock whose process is gone (same
host) is stale.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import weakref
from typing import Any, Optional

from llcv.errors import LLCVError

LOCK_NAME = ".lock"
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
ORPHAN_WAIT_S = 30.0  # how long the forked children of a dead owner may keep its lock


class RunLockedError(LLCVError):
    """Another live process owns the run folder."""


class RunLock:
    """Holds ``<folder>/.lock`` (creating ``folder``) until :meth:`release`.

    ``stale`` describes the dead owner whose lock was taken over, else it is None.
    """

    def __init__(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self.folder, self.path = folder, os.path.join(folder, LOCK_NAME)
        self.fd, previous = self._acquire()
        self._close_at_exit = weakref.finalize(self, os.close, self.fd)  # dropped unreleased
        self.stale = describe(previous) if previous else None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps(owner_record()).encode() + b"\n")
        os.fsync(self.fd)

    def _acquire(self) -> tuple[int, Optional[dict]]:
        """An open, locked descriptor of the lock file and what the file said before.

        A lock whose owner is gone but which is still held was inherited by the owner's forked
        children (data-loader workers), which end within seconds of it: that is waited for.
        """
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            previous = read_owner(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                alive = previous is not None and is_alive(previous)
                if err.errno in NO_FLOCK and not alive:
                    pass  # no flock on this file system: the PID decided
                elif previous is not None and not alive and time.monotonic() < deadline:
                    os.close(fd)
                    time.sleep(0.1)
                    continue
                else:
                    os.close(fd)
                    raise RunLockedError(self._refusal(previous)) from None
            if _same_file(fd, self.path):  # not removed by its owner's release meanwhile
                return fd, read_owner(fd) or None
            os.close(fd)

    def _refusal(self, owner: Optional[dict]) -> str:
        who = describe(owner) if owner else "another process"
        if owner and not is_alive(owner):
            who += ", which has ended, but processes it started still hold the lock"
        return (f"run folder '{self.folder}' is in use by {who}; wait for that run to end (then "
                f"--auto_resume continues it), or give this run another name "
                f"(--set name=<new name>); a lock left by a machine that went down can be "
                f"removed by hand: {self.path}")

    def moved_to(self, folder: str) -> None:
        """The locked folder was renamed to ``folder`` (the lock file went with it)."""
        self.folder, self.path = folder, os.path.join(folder, LOCK_NAME)

    def release(self) -> None:
        """Remove the lock file and let go of it (a second call does nothing)."""
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):
            os.unlink(self.path)
        self._close_at_exit.detach()
        os.close(self.fd)
        self.fd = None


def owner_record() -> dict[str, Any]:
    """What the lock file says about this process."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def read_owner(fd: int) -> Optional[dict]:
    """The owner record in an open lock file; None when empty or unreadable."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        owner = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict) -> str:
    """``pid N on host H (since T)``."""
    return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} (since "
            f"{owner.get('started', '?')})")


def is_alive(owner: dict) -> bool:
    """True unless ``owner`` is a process of this host that no longer runs (a process on
    another host cannot be checked, so it counts as alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
