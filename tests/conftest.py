"""Fixtures shared by every test category."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from space_support import BUILD_LOG, CHUNK, PATIENTS, SEED

from workbench.space.build import init_space


@pytest.fixture
def open_tmp():
    """A temporary directory that other uids can traverse (pytest's tmp_path is 0700 under root,
    which would hide a space from the service accounts that must read it)."""
    path = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built_space():
    """A small space built once per session (the synthetic part in several chunks)."""
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
