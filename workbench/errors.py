"""The two error kinds of the workbench.

``WorkbenchUserError`` is for what a researcher, reviewer or admin did wrong: its message is the
user interface (what happened, why, what to do next) and is shown without a traceback.
``WorkbenchError`` is an internal fault. Neither may ever carry a patient-level value.
"""


class WorkbenchError(Exception):
    """An internal fault of the workbench (a bug or a broken installation)."""


class WorkbenchUserError(WorkbenchError):
    """A mistake by a user; ``reason`` is a short kebab-case label for logs and API errors."""

    def __init__(self, message: str, reason: str = "bad-request"):
        super().__init__(message)
        self.reason = reason
