"""WorkspaceContentsManager: no read or write through a path whose real path leaves the root."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.web import HTTPError

from workbench.hub.contents import WorkspaceContentsManager

MODEL = {"type": "file", "format": "text", "content": "overwritten"}


@pytest.fixture
def layout(tmp_path):
    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (workspace / "inside.txt").write_text("inside")
    (workspace / "sub").mkdir()
    manager = WorkspaceContentsManager(root_dir=str(workspace))
    return manager, workspace, outside


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("link_target", [
    "{outside}/secret.txt",        # absolute link to a file
    "../outside/secret.txt",       # relative link climbing out
    "{outside}/missing.txt",       # dangling link: a write would create the file outside
    "/etc/passwd",
])
def test_links_leaving_the_workspace_are_refused_for_read_and_write(layout, link_target):
    manager, workspace, outside = layout
    os.symlink(link_target.format(outside=outside), workspace / "link.txt")
    for action in (lambda: manager.save(MODEL, "link.txt"), lambda: manager.get("link.txt"),
                   lambda: manager.rename("link.txt", "renamed.txt")):
        with pytest.raises(HTTPError) as caught:
            _run(action())
        assert caught.value.status_code == 403
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (outside / "missing.txt").exists()


def test_a_linked_directory_cannot_be_written_into(layout):
    manager, workspace, outside = layout
    os.symlink(outside, workspace / "sub" / "out")
    with pytest.raises(HTTPError):
        _run(manager.save(MODEL, "sub/out/new.txt"))
    with pytest.raises(HTTPError):
        _run(manager.get("sub/out"))
    assert not (outside / "new.txt").exists()


def test_a_chain_of_links_ending_outside_is_refused(layout):
    manager, workspace, outside = layout
    os.symlink(outside / "secret.txt", workspace / "b")
    os.symlink("b", workspace / "a")
    with pytest.raises(HTTPError):
        _run(manager.save(MODEL, "a"))
    assert (outside / "secret.txt").read_text() == "secret"


def test_files_and_links_inside_the_workspace_still_work(layout):
    manager, workspace, _ = layout
    os.symlink("inside.txt", workspace / "alias.txt")
    assert _run(manager.get("alias.txt"))["content"] == "inside"
    _run(manager.save(MODEL, "sub/new.txt"))
    assert (workspace / "sub" / "new.txt").read_text() == "overwritten"
    listing = _run(manager.get(""))
    assert {item["name"] for item in listing["content"]} >= {"inside.txt", "sub"}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", "sub", "out", "inside.txt", ".", "x"]), min_size=1,
                max_size=6))
def test_no_api_path_resolves_outside(layout, parts):
    manager, workspace, outside = layout
    if not (workspace / "out").is_symlink():
        os.symlink(outside, workspace / "out")
    path = "/".join(parts)
    try:
        os_path = manager._get_os_path(path)
    except HTTPError:
        return
    real = os.path.realpath(os_path)
    assert real == str(workspace.resolve()) or real.startswith(str(workspace.resolve()) + os.sep)


NOTEBOOK = {"type": "notebook", "format": "json",
            "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}


def test_a_linked_checkpoint_directory_receives_no_copy(layout):
    manager, workspace, outside = layout
    os.symlink(outside, workspace / ".ipynb_checkpoints")
    with pytest.raises(HTTPError) as caught:  # save creates the first checkpoint
        _run(manager.save(NOTEBOOK, "analysis.ipynb"))
    assert caught.value.status_code == 403
    with pytest.raises(HTTPError):
        _run(manager.create_checkpoint("analysis.ipynb"))
    assert not any(outside.glob("*checkpoint*"))


def test_a_linked_checkpoint_file_is_not_restored_into_the_workspace(layout):
    manager, workspace, outside = layout
    _run(manager.save(MODEL, "notes.txt"))
    _run(manager.create_checkpoint("notes.txt"))
    (workspace / ".ipynb_checkpoints" / "notes-checkpoint.txt").unlink()
    os.symlink(outside / "secret.txt", workspace / ".ipynb_checkpoints" / "notes-checkpoint.txt")
    with pytest.raises(HTTPError):
        _run(manager.restore_checkpoint("checkpoint", "notes.txt"))
    assert (workspace / "notes.txt").read_text() == "overwritten"


def test_a_write_racing_a_swap_to_a_link_never_reaches_the_target(layout):
    """The check passed, then the kernel swaps the file (or a directory) for a link: the write
    itself follows no link."""
    manager, workspace, outside = layout
    os_path = manager._get_os_path("inside.txt")  # checked while still a plain file
    (workspace / "inside.txt").unlink()
    os.symlink(outside / "secret.txt", workspace / "inside.txt")
    with manager.atomic_writing(os_path) as handle:
        handle.write("new")
    assert (outside / "secret.txt").read_text() == "secret"
    assert not (workspace / "inside.txt").is_symlink()  # the link itself was replaced
    assert (workspace / "inside.txt").read_text() == "new"

    nested = manager._get_os_path("sub/file.txt")
    (workspace / "sub").rmdir()
    os.symlink(outside, workspace / "sub")
    with pytest.raises(HTTPError) as caught, manager.atomic_writing(nested) as handle:
        handle.write("new")
    assert caught.value.status_code == 403
    assert not (outside / "file.txt").exists()


def test_chunked_upload_does_not_append_through_a_link(layout):
    manager, workspace, outside = layout
    os_path = manager._get_os_path("upload.bin")
    os.symlink(outside / "secret.txt", workspace / "upload.bin")
    with pytest.raises(HTTPError):
        _run(manager._save_large_file(os_path, "more", "text"))
    assert (outside / "secret.txt").read_text() == "secret"
    chunk = {"type": "file", "format": "text", "content": "part", "chunk": 1}
    _run(manager.save(chunk, "ok.bin"))
    _run(manager.save({**chunk, "chunk": -1}, "ok.bin"))
    assert (workspace / "ok.bin").read_text() == "partpart"


def test_a_listing_that_races_a_rename_still_lists_the_directory(layout):
    """JupyterLab renames a notebook on its first save while its file browser lists the
    directory; the stock listing awaits between an entry's stat and its model, so the rename
    can land in between: the directory must still be listed (with the new name), not answered
    with a 404 that JupyterLab shows as "Directory not found" (a flaky browser test's cause)."""
    manager, workspace, _ = layout
    (workspace / "Untitled.ipynb").write_text("{}")
    get, renamed = manager.get, []

    async def get_racing_a_rename(path, content=True, type=None, format=None, **kwargs):  # noqa: A002
        if path.endswith("Untitled.ipynb") and not renamed:  # the rename lands in the gap
            os.rename(workspace / "Untitled.ipynb", workspace / "egress-check.ipynb")
            renamed.append(path)
        return await get(path, content=content, type=type, format=format, **kwargs)

    manager.get = get_racing_a_rename
    listing = _run(manager.get(""))
    names = sorted(entry["name"] for entry in listing["content"])
    assert renamed and names == ["egress-check.ipynb", "inside.txt", "sub"]
    with pytest.raises(HTTPError) as caught:  # a directory that is gone is still a 404
        _run(manager.get("no-such-dir"))
    assert caught.value.status_code == 404
