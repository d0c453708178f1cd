"""The data gateway: one Unix socket per study, serving only the views the study is granted."""

from __future__ import annotations

from pathlib import Path


def rerun_socket(space, study: str) -> Path:
    """The study's second socket (``Space.rerun_socket``)."""
    return space.rerun_socket(study)
