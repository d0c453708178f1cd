"""Fixtures shared by every test category."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def open_tmp():
    """A temporary directory that other uids can traverse (pytest's tmp_path is 0700 under root,
    which would hide a space from the service accounts that must read it)."""
    path = Path(tempfile.mkdtemp(prefix="wb-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
