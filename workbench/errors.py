"""The two error kinds of the workbench.

``WorkbenchUserError`` is for what a researcher, reviewer or admin did wrong: its message is the
user interface (what happened, why, what to do next) and is shown without a traceback.
``WorkbenchError`` is an internal fault. Neither may ever carry a patient-level value.
"""

import logging
import traceback


class WorkbenchError(Exception):
    """An internal fault of the workbench (a bug or a broken installation)."""


class WorkbenchUserError(WorkbenchError):
    """A mistake by a user; ``reason`` is a short kebab-case label for logs and API errors."""

    def __init__(self, message: str, reason: str = "bad-request"):
        super().__init__(message)
        self.reason = reason


def did_you_mean(name: object, choices) -> str:
    """" (did you mean 'x'?)" for a name that is close to one the user may use, else "". Only
    for names the user may already see (a study's own views, a view's columns): never for what
    would reveal something they may not."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def log_fault(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an unexpected fault by its type and stack frames only. Its message may quote what the
    failing code was handling (a decrypted sum, a row, a kernel's output), which must not reach
    a log; the frames say where it failed."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: %s (message withheld)\n%s", what, type(exc).__name__, frames.rstrip())
