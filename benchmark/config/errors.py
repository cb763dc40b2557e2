"""How a command ends on a user's error: one sentence and exit status 2, never a traceback.

``ConfigError`` is the configuration's own error; ``USER_ERRORS`` are every error a user's input
or environment can cause (a bad option, a task's refusal, a damaged results file, a place that
cannot be written). ``exit_on_user_error`` runs a command's body under that rule, and
``CommandParser`` makes argparse's own errors follow it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn

from benchmark.infra.results import ResultFormatError
from tasks.base import TaskError
from tasks.fileio import WriteError


class ConfigError(ValueError):
    """A user-caused configuration error; its message is one sentence."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, TaskError, ResultFormatError, WriteError)
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130  # 130: the shell's status for Ctrl-C (128 + SIGINT)
INTERRUPTED_NOTE = "interrupted; every file is written whole or not at all, so none was left half-written."


class CommandParser(argparse.ArgumentParser):
    """A command's argument parser whose own errors (an unknown flag, a non-integer) are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message}.\n")


def quiet_interrupts() -> None:
    """Ignore further Ctrl-C from now on: a command that is already ending on one ends with its one line."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def exit_on_user_error(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` the way a command ends it: a user error (``USER_ERRORS``: ``ConfigError``,
    ``TaskError``, a damaged results file, a place that cannot be written) is one sentence on
    stderr and exit status 2; Ctrl-C is one line and exit status 130 (a second Ctrl-C meanwhile
    changes nothing: the writes are atomic); anything else keeps its traceback."""
    try:
        return fn(*args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        quiet_interrupts()
        print(INTERRUPTED_NOTE, file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
