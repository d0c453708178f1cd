"""Spaces for the catalog tests: one full small space per session, public-only ones per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from workbench.space.build import init_space

PATIENTS, SEED, CHUNK = 2_000, 7, 800
BUILD_LOG: list[str] = []  # progress lines printed while building the session space


@pytest.fixture(scope="session")
def built_space():
    parent = Path(tempfile.mkdtemp(prefix="wb-space-", dir="/tmp"))
    os.chmod(parent, 0o755)  # other uids must reach the space to be refused by its own modes
    lines: list[str] = []
    space = init_space(parent / "space", patients=PATIENTS, seed=SEED, chunk_size=CHUNK,
                       echo=lines.append)
    BUILD_LOG[:] = lines
    yield space
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def public_only_space(open_tmp):
    """A fresh space with only the public datasets: cheap enough to build per test."""
    return init_space(open_tmp / "space", patients=0, echo=lambda _line: None)
