"""Shared command-line plumbing: user errors (and storage errors) become one line and a
non-zero exit."""
from __future__ import annotations

import sys
from typing import Callable

from llcv.errors import STORAGE_HINTS, LLCVError, storage_error

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def error_line(err: BaseException) -> str:
    """The user-facing line of ``err``, also when a DataLoader worker re-raised it with its traceback."""
    text = str(err)
    if "Original Traceback" in text:  # torch wraps worker exceptions as "<Type>: <msg>" last line
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; an :class:`LLCVError` prints ``error: ...`` and exits 2, no traceback."""
    from llcv.engine.runner import RunInterrupted

    try:
        main()
    except RunInterrupted as err:
        print(f"stopped: {error_line(err)}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except LLCVError as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as err:  # a log or metrics write on a full or read-only disk
        if err.errno not in STORAGE_HINTS:
            raise
        print(f"error: {storage_error(err.filename or 'a file', err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
