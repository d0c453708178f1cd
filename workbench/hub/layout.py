"""Where the hub keeps its files inside a data space (the hub's part of the on-disk layout).

```
DATA_DIR/hub/                    0755 root
  state/                         0700 root: hub database, cookie secret, pid file
  singleuser/<study>/<user>/      0755 root: JUPYTER_CONFIG_DIR of one server (read-only to it)
  singleuser/<study>/<user>/data 0755 root: JUPYTER_DATA_DIR (kernelspecs)
  servers/<study>/<user>/        0700 server uid: runtime files, JupyterLab settings, workspaces
```
Nothing under ``hub/`` is writable by a study's kernel; only ``servers/<study>/`` by its servers.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from workbench.accounts import is_root
from workbench.errors import WorkbenchUserError
from workbench.paths import Space


@dataclass(frozen=True)
class HubLayout:
    space: Space

    @property
    def root(self) -> Path:
        return self.space.root / "hub"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def database(self) -> Path:
        return self.state / "jupyterhub.sqlite"

    @property
    def default_db_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def cookie_secret(self) -> Path:
        return self.state / "jupyterhub_cookie_secret"

    def config_dir(self, study: str, user: str) -> Path:
        return self.root / "singleuser" / study / user

    def data_dir(self, study: str, user: str) -> Path:
        return self.config_dir(study, user) / "data"

    def server_state(self, study: str, user: str) -> Path:
        return self.root / "servers" / study / user

    def ensure(self) -> None:
        """Create the hub's root-owned directories with their modes."""
        for path, mode in ((self.root, 0o755), (self.state, 0o700),
                           (self.root / "singleuser", 0o755), (self.root / "servers", 0o755)):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)


def unreachable_dirs(path: str | os.PathLike) -> list[Path]:
    """Ancestors of ``path`` that other uids cannot traverse (no o+x)."""
    blocked = []
    for parent in reversed(Path(os.path.realpath(path)).parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            blocked.append(parent)
    return blocked


def ensure_interpreter_reachable(fix: bool) -> list[Path]:
    """Study servers run this Python as their own uid, so its installation must be traversable.

    Returns the directories that blocked it; with ``fix`` (root only) they get o+x (traverse,
    not list), otherwise a WorkbenchUserError says what to do."""
    blocked = sorted({p for target in (sys.executable, sys.prefix, sys.base_prefix)
                      for p in unreachable_dirs(target)})
    if not blocked:
        return []
    if fix and is_root():
        for path in blocked:
            os.chmod(path, os.stat(path).st_mode | stat.S_IXOTH)
        return blocked
    names = " ".join(str(p) for p in blocked)
    raise WorkbenchUserError(
        f"The Python environment ({sys.executable}) cannot be run by the study server accounts: "
        f"{names} is closed to other users. Run 'chmod o+x {names}' (traverse only) or build the "
        "environment under a world-readable directory such as /opt.",
        reason="interpreter-unreachable",
    )
