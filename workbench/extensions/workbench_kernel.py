"""IPython extension loaded in every study kernel (``--IPKernelApp.extensions=workbench_kernel``).

Puts the ``wb`` helpers in the namespace; shows a ``WorkbenchUserError`` as its message alone,
without a traceback (the message says what happened and what to do next), and a connection the
sandbox refused (the kernel has no network) as one line saying so; gives fontconfig a
configuration (the sandbox has no /etc/fonts, and matplotlib's font search would print a
"Fontconfig error" in the first cell that draws). A convenience inside the untrusted kernel, not
a control: the sandbox and the audit proxy are the controls.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import workbench
from workbench.errors import WorkbenchUserError

NO_NETWORK = ("this study kernel has no network: the sandbox lets it reach only the study's "
              "data gateway, so the connection was refused. Read granted views with "
              "wb.view(...) (wb.catalog() lists them) and compute across holders with "
              "wb.secure.*; packages are those installed in the environment.")
# What the sandbox's missing network looks like from inside: no name resolution, no route.
_REFUSED_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}
_FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <dir>/usr/share/fonts</dir>
  <cachedir>{cache}</cachedir>
</fontconfig>
"""


def _refused_connection(value: BaseException) -> bool:
    """Whether ``value`` or anything it wraps (causes, contexts, urllib's and urllib3's
    ``reason``, requests' first argument) is a name that cannot resolve or a network that is
    unreachable."""
    seen, stack = set(), [value]
    while stack and len(seen) < 32:
        exc = stack.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror) or (
                isinstance(exc, OSError) and exc.errno in _REFUSED_ERRNOS):
            return True
        stack += [exc.__cause__, exc.__context__, getattr(exc, "reason", None),
                  *[arg for arg in exc.args if isinstance(arg, BaseException)]]
    return False


def _show_error(shell, etype, value, tb, tb_offset=None):
    """One line for the errors whose message is the interface; every other error is shown as
    IPython shows it, frames and all."""
    if isinstance(value, WorkbenchUserError):
        line = f"{value}"
    elif _refused_connection(value):
        line = NO_NETWORK
    else:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
        return []
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {line}"]
    shell._showtraceback(etype, value, stb)  # ipykernel turns this into the iopub error message
    return stb


def _configure_fontconfig() -> None:
    home = Path(os.environ.get("HOME") or "/tmp/home")  # noqa: S108 - the sandbox's tmpfs
    if "FONTCONFIG_FILE" in os.environ or not os.access(home, os.W_OK):
        return
    conf = home / ".config" / "fontconfig" / "workbench-fonts.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(_FONTS_CONF.format(cache=home / ".cache" / "fontconfig"))
    os.environ["FONTCONFIG_FILE"] = str(conf)


def load_ipython_extension(shell) -> None:
    _configure_fontconfig()
    shell.push({"wb": workbench})
    # network errors arrive as OSError, or wrapped by httpx and others in plain Exceptions
    shell.set_custom_exc((Exception,), _show_error)
    shell._workbench_errors = True  # workbench.client keeps this handler instead of its own


def unload_ipython_extension(shell) -> None:
    shell.set_custom_exc((), None)
