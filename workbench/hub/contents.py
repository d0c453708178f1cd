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

Writes do not trust the check alone (a kernel could swap a checked file or directory for a link
between check and write): they walk from the workspace root one directory at a time with
O_NOFOLLOW, write a new file beside the target with O_EXCL|O_NOFOLLOW and rename it into place
relative to that directory, so no link is ever followed by a write. Beyond that, the server uid
owns nothing of value outside its own state (tests/hub/test_file_modes.py).
"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager

from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from tornado.web import HTTPError
from traitlets import default

LISTING_ATTEMPTS = 3  # a directory listing that raced a rename or delete (``_dir_model``)


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

    async def _dir_model(self, path, content=True):
        """The stock listing, listed again when an entry vanished under it. The stock listing
        awaits between its stat of an entry and its model of that entry, so a rename or delete
        served in between (JupyterLab renames a notebook on its first save while the file
        browser refreshes) turned the whole directory into a 404, which JupyterLab shows as a
        "Directory not found" dialog over the page. The directory itself still exists, so
        its listing is tried again; a missing directory is still a 404."""
        for attempt in range(LISTING_ATTEMPTS):
            try:
                return await super()._dir_model(path, content)
            except HTTPError as exc:
                if exc.status_code != 404 or not content or attempt == LISTING_ATTEMPTS - 1 \
                        or not os.path.isdir(self._get_os_path(path)):
                    raise
                self.log.info("an entry of %r vanished while it was listed: listing again",
                              path)
        raise AssertionError("unreachable")

    def _open_parent(self, os_path: str) -> int:
        """A descriptor of ``os_path``'s directory, reached from the root without following
        any link (a link anywhere on the way is refused)."""
        root = os.path.abspath(self.root_dir)
        relative = os.path.relpath(os.path.dirname(os.path.abspath(os_path)), root)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in ([] if relative == "." else relative.split(os.sep)):
                if part in ("", ".", ".."):
                    raise HTTPError(403, "path leaves the study workspace")
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                                os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = child
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise HTTPError(403, "a directory on this path is a link; the workbench does "
                                     "not write through links") from None
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def atomic_writing(self, os_path, text=True, encoding="utf-8", **kwargs):
        kwargs.pop("log", None)
        with self.perm_to_403(os_path):
            dir_fd = self._open_parent(os_path)
            name = os.path.basename(os_path)
            temporary = f".~{name}.{secrets.token_hex(6)}"
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                             os.O_CLOEXEC, 0o664, dir_fd=dir_fd)
                if text:
                    kwargs.setdefault("newline", "\n")
                    handle = open(fd, "w", encoding=encoding, **kwargs)  # noqa: SIM115
                else:
                    handle = open(fd, "wb", **kwargs)  # noqa: SIM115
                try:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
                except BaseException:
                    handle.close()
                    os.unlink(temporary, dir_fd=dir_fd)
                    raise
                handle.close()
                # replaces a link at ``name`` itself, never the file it points to
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            finally:
                os.close(dir_fd)

    async def _save_large_file(self, os_path, content, format):
        """Chunked uploads: append through the same link-free directory descriptor."""
        import base64

        if format not in {"text", "base64"}:
            raise HTTPError(400, "Must specify format of file contents as 'text' or 'base64'")
        try:
            data = content.encode("utf8") if format == "text" else base64.b64decode(
                content.encode("ascii"))
        except Exception as exc:
            raise HTTPError(400, f"Encoding error saving {os.path.basename(os_path)}") from exc
        with self.perm_to_403(os_path):
            dir_fd = self._open_parent(os_path)
            try:
                fd = os.open(os.path.basename(os_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND |
                             os.O_NOFOLLOW | os.O_CLOEXEC, 0o664, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise HTTPError(403, "the workbench does not write through links") from None
                raise
            finally:
                os.close(dir_fd)
            with open(fd, "ab") as handle:
                handle.write(data)
