"""Who may read what in a space (security boundary, guarded by tests/space/test_permissions.py).

When run as root: the data (``holders/``) and the catalog belong to the gateway account and are
closed to every other uid; the space's own keys are root-only; only the manifest and the public
signing key are world-readable. Without root nothing can be chowned: development only.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench import accounts
from workbench.paths import Space


def _own_tree(top: Path, uid: int, gid: int, dir_mode: int, file_mode: int) -> None:
    for folder, _dirs, files in os.walk(top):
        for name in files:
            path = os.path.join(folder, name)
            os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, file_mode)
        os.chown(folder, uid, gid, follow_symlinks=False)
        os.chmod(folder, dir_mode)


def apply(space: Space) -> None:
    os.chmod(space.root, 0o755)  # noqa: S103 - the root only lists; each part guards itself
    for public in (space.manifest, space.signing_pub):
        if public.exists():
            os.chmod(public, 0o644)
    me = (os.getuid(), os.getgid())  # root when run as root, as the builder must be
    _own_tree(space.keys, *me, 0o700, 0o600)
    gateway = accounts.ensure_user(accounts.GATEWAY)  # the current user when not root
    _own_tree(space.holders, *gateway, 0o700, 0o600)
    _own_tree(space.catalog, *gateway, 0o750, 0o640)
    _own_tree(space.usage, *gateway, 0o700, 0o600)
    for shared in (space.run, space.studies):
        os.chown(shared, *me)
        os.chmod(shared, 0o755)  # noqa: S103 - sockets and study dirs guard themselves
