"""The data gateway: one Unix socket per study, serving only the views the study is granted."""

from __future__ import annotations

from pathlib import Path


def rerun_socket(space, study: str) -> Path:
    """The study's second socket, bound into ``workbench rerun`` kernels instead of the study
    socket: the same reads, but release requests are only checked (dry run). Study ids cannot
    contain '.', so this never collides with a study's own socket."""
    return space.gateway_socket(study).with_name(f"{study}.rerun.sock")
