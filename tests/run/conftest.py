"""Fixtures of the run tests: real spaces built by ``workbench init`` (the demo space once per
session). Everything runs as root: real sandbox, real collector, gateway, key holder, airlock."""

from __future__ import annotations

import shutil

import pytest
from run_support import open_dir, write_policy

from workbench.space.build import init_space


@pytest.fixture(scope="session")
def demo_space():
    """The demo space (10 000 synthetic patients, as `workbench demo` builds it)."""
    base = open_dir("wb-run-demo-")
    space = init_space(base / "space", patients=10_000, echo=lambda _line: None)
    yield {"space": space, "policy": write_policy(base)}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def public_space():
    """A space with the public validation datasets only (seconds to build), fresh per test."""
    base = open_dir("wb-run-public-")
    space = init_space(base / "space", patients=0, echo=lambda _line: None)
    yield {"space": space, "policy": write_policy(base), "base": base}
    shutil.rmtree(base, ignore_errors=True)


