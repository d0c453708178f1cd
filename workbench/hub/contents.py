"""A contents manager that never follows a path out of the study workspace.

The stock file contents manager checks the *lexical* path only: a kernel can plant a symlink in the
workspace and have the contents API read or overwrite whatever the server uid can reach through
it (DESIGN pitfalls; reproduced in the reference sketch, where it wiped the audit log). Here every
API path is resolved with ``realpath`` (all symlinks, including dangling ones and symlinked parent
directories) and refused unless the result is inside the workspace.

SECURITY BOUNDARY. Guarded by tests/hub/test_contents.py (unit) and tests/hub/test_hub_live.py
(a symlink planted by the kernel uid, written through the server's contents API).

A kernel that swaps a checked file for a link between the check and the write (a race) is not
stopped here: that is why the server uid owns nothing of value outside its own state
(tests/hub/test_file_modes.py), which bounds what such a race could reach.
"""

from __future__ import annotations

import os

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado.web import HTTPError


class WorkspaceContentsManager(AsyncLargeFileManager):
    """AsyncLargeFileManager (the Jupyter Server default) confined to ``root_dir`` by real path."""

    def _get_os_path(self, path):
        os_path = super()._get_os_path(path)
        root = os.path.realpath(self.root_dir)
        real = os.path.realpath(os_path)
        if real != root and not real.startswith(root + os.sep):
            self.log.warning("refused contents path %r: it resolves outside the workspace", path)
            raise HTTPError(
                403,
                f"'{path}' is a link that leads outside the study workspace; the workbench "
                "refuses to read or write through it. Remove the link from a notebook cell "
                "(os.unlink) and work on files inside the workspace.",
            )
        return os_path
