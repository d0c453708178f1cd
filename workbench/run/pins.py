"""Which kept dataset versions a ``workbench rerun`` kernel reads: a small file root writes.

``run/gateway/<study>.rerun-versions.json`` = ``{view: {"holders": {holder: version id},
"view_version": the version the cell logged}}``, written by ``workbench rerun`` (root) before
each replayed cell and removed afterwards. Only the gateway's *re-run* socket reads it
(``gateway/app.py``), so a study kernel on its normal socket always reads today's data, and a
re-run kernel cannot choose what it reads: the file is root's, not the kernel's. A file that is
not root's, or is writable by others, is refused (fail closed), never ignored. It holds version
ids only, never a value.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

from workbench.errors import WorkbenchUserError
from workbench.paths import Space


def pins_path(space: Space, study: str):
    return space.run / "gateway" / f"{study}.rerun-versions.json"


def write_pins(space: Space, study: str, pins: dict) -> None:
    path = pins_path(space, study)
    if not pins:
        clear_pins(space, study)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(pins, sort_keys=True))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def clear_pins(space: Space, study: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        pins_path(space, study).unlink()


def read_pin(space: Space, study: str, view: str) -> dict | None:
    """The pin of ``view`` for the study's re-run socket, or None (today's data)."""
    path = pins_path(space, study)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        raise _refused() from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise _refused()
        try:
            pins = json.loads(handle.read(1 << 20))
        except ValueError:
            raise _refused() from None
    pin = pins.get(view) if isinstance(pins, dict) else None
    if pin is None:
        return None
    if not (isinstance(pin, dict) and isinstance(pin.get("holders"), dict)
            and isinstance(pin.get("view_version"), str)):
        raise _refused()
    return pin


def _refused() -> WorkbenchUserError:
    return WorkbenchUserError("the re-run's version pins are not root's or are malformed; "
                              "nothing is served. Re-run with 'workbench rerun' as root.",
                              reason="access-denied")
