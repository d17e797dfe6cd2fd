"""Shared command-line plumbing: user errors become one line and a non-zero exit."""
from __future__ import annotations

import sys
from typing import Callable

from llcv.errors import LLCVError

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
