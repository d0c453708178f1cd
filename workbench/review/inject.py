"""Putting the snapshot into a dashboard notebook before it runs: what the review service's Voila
prelaunch hook does on every visit. Nothing secret goes in: the cell is code, so the audit proxy
records it, and the kernel needs no token (decisions go through its relay)."""

from __future__ import annotations

import nbformat

from workbench.review.snapshot import encode


def inject(notebook, snapshot: dict, kernel_name: str | None = None):
    """Return ``notebook`` with a first cell that loads the snapshot. The literal is the Python
    repr of a base64 string, so nothing in the snapshot can become code."""
    cell = nbformat.v4.new_code_cell(
        "import workbench.review as _wb_review\n"
        f"_wb_review.load_snapshot({encode(snapshot)!r})")
    cell.metadata["tags"] = ["injected-snapshot"]
    notebook.cells.insert(0, cell)
    if kernel_name:
        notebook.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Workbench",
                                           "language": "python"}
    return notebook
