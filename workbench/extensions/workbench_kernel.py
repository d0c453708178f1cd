"""IPython extension loaded in every study kernel (``--IPKernelApp.extensions=workbench_kernel``).

Puts the ``wb`` helpers in the namespace and shows a ``WorkbenchUserError`` as its message alone,
without a traceback: the message says what happened and what to do next. This is a convenience
inside the untrusted kernel, not a control: the sandbox and the audit proxy are the controls.
"""

from __future__ import annotations

import workbench
from workbench.errors import WorkbenchUserError


def _show_user_error(shell, etype, value, tb, tb_offset=None):
    # one line, no frames and no source: the message is the interface
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # ipykernel turns this into the iopub error message
    return stb


def load_ipython_extension(shell) -> None:
    shell.push({"wb": workbench})
    shell.set_custom_exc((WorkbenchUserError,), _show_user_error)
    shell._workbench_errors = True  # workbench.client keeps this handler instead of its own


def unload_ipython_extension(shell) -> None:
    shell.set_custom_exc((), None)
