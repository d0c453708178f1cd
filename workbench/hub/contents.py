"""A contents manager that never follows a path out of the study workspace.

The stock file contents manager checks the *lexical* path only: a kernel can plant a symlink in the
workspace and have the contents API read or overwrite whatever the server uid can reach through
it (DESIGN pitfalls; reproduced in the reference sketch, where it wiped the audit log). Here every
API path is resolved with ``realpath`` (all symlinks, including dangling ones and symlinked parent
directories) and refused unless the result is inside the workspace.

The same rule covers checkpoints: the stock checkpoint manager follows a ``.ipynb_checkpoints``
link and would copy each saved notebook out of the workspace (or an outside file in, on revert).

SECURITY BOUNDARY. Guarded by tests/hub/test_contents.py (unit) and tests/hub/test_server_live.py
(a symlink planted by the kernel uid, written through the server's contents API).

A kernel that swaps a checked file for a link between the check and the write (a race) is not
stopped here: that is why the server uid owns nothing of value outside its own state
(tests/hub/test_file_modes.py), which bounds what such a race could reach.
"""

from __future__ import annotations

import os

from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado.web import HTTPError
from traitlets import default


def ensure_inside(root_dir: str, os_path: str, shown: str, log) -> str:
    """``os_path`` if its real path is ``root_dir`` or below it, else a 403."""
    root = os.path.realpath(root_dir)
    real = os.path.realpath(os_path)
    if real != root and not real.startswith(root + os.sep):
        log.warning("refused contents path %r: it resolves outside the workspace", shown)
        raise HTTPError(
            403,
            f"'{shown}' is a link that leads outside the study workspace; the workbench "
            "refuses to read or write through it. Remove the link from a notebook cell "
            "(os.unlink) and work on files inside the workspace.",
        )
    return os_path


class WorkspaceCheckpoints(AsyncFileCheckpoints):
    """Checkpoints (``.ipynb_checkpoints/``) under the same rule: a kernel that replaces that
    directory, or a checkpoint file, with a link must not make the server copy a notebook out
    of the workspace, nor copy an outside file in on "revert to checkpoint"."""

    def checkpoint_path(self, checkpoint_id, path):
        cp_path = super().checkpoint_path(checkpoint_id, path)
        return ensure_inside(self.root_dir, cp_path, f"{self.checkpoint_dir}/{path}", self.log)


class WorkspaceContentsManager(AsyncLargeFileManager):
    """AsyncLargeFileManager (the Jupyter Server default) confined to ``root_dir`` by real path."""

    @default("checkpoints_class")
    def _checkpoints_class_default(self):
        return WorkspaceCheckpoints

    def _get_os_path(self, path):
        return ensure_inside(self.root_dir, super()._get_os_path(path), path, self.log)
