"""Putting the snapshot (and the reviewer token) into a dashboard notebook before it runs: what
the review service's Voila prelaunch hook does on every visit."""

from __future__ import annotations

import nbformat

from workbench.review.snapshot import encode

SANDBOX_KERNEL = "workbench-python"  # the sandbox engineer's kernelspec (provisioner: sandbox)


def inject(notebook, snapshot: dict, token: str | None, kernel_name: str | None = None):
    """Return ``notebook`` with a first cell that loads the snapshot. The literals are Python
    reprs of base64/ASCII strings, so nothing in the snapshot can become code."""
    cell = nbformat.v4.new_code_cell(
        "import workbench.review as _wb_review\n"
        f"_wb_review.load_snapshot({encode(snapshot)!r}, token={token!r})")
    cell.metadata["tags"] = ["injected-snapshot"]
    notebook.cells.insert(0, cell)
    if kernel_name:
        notebook.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Workbench",
                                           "language": "python"}
    return notebook
