"""Kubernetes objects rendered without a cluster and checked against the OpenAPI schemas that
kubernetes-validate bundles (offline): see kube_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kube_support import POLICY  # first: sets $KUBECONFIG before kubespawner loads


@pytest.fixture
def space_and_policy(tmp_path) -> tuple[Path, Path]:
    space = tmp_path / "space"
    space.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return space, policy


@pytest.fixture
def policy(space_and_policy):
    from workbench.policy import load_policy

    return load_policy(space_and_policy[1])
