"""Fixtures: a space with a running collector, and a throw-away PostgreSQL provenance database."""

from __future__ import annotations

import pytest
from pgutil import postgres_log_database

from workbench.paths import Space
from workbench.provenance.service import start_collector


@pytest.fixture
def space(open_tmp):
    return Space(open_tmp)


@pytest.fixture
def collector(space):
    handle = start_collector(space, sign_interval=0.5)
    yield handle
    handle.stop()


@pytest.fixture
def pg_backend():
    with postgres_log_database() as info:
        yield info
