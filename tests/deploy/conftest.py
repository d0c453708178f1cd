"""Kubernetes objects rendered without a cluster and checked against the OpenAPI schemas that
kubernetes-validate bundles (offline). KubeSpawner needs a kube config to be constructed: one
pointing at a port nothing listens on, never contacted (pod manifests are built locally)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest

POLICY = """
users:
  alice: {roles: [researcher]}
  bob: {roles: [researcher]}
studies:
  cml-tki:
    title: CML TKI
    purpose: deploy tests
    sponsor: tests
    members: [alice]
    views: [cml_cohort]
    expires: 2099-12-31
    resources: {cpu: 2, memory: 3G, max_kernels: 2}
  lung-validation:
    title: Lung validation
    purpose: deploy tests
    sponsor: tests
    members: [alice, bob]
    views: []
    expires: 2099-12-31
  old-study:
    title: An expired study
    purpose: deploy tests
    sponsor: tests
    members: [alice, bob]
    views: []
    expires: 2020-01-01
"""
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: never-sent}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: workbench}}]
current-context: none
"""
# the newest Kubernetes whose schemas the installed kubernetes-validate bundles
K8S_VERSION = kubernetes_validate.latest_version()


def validate(obj: dict) -> None:
    """Strict: an unknown or misspelt field is an error, as `kubectl apply --validate` makes it."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# kubernetes_asyncio reads $KUBECONFIG when it is imported: set before the test modules load.
_KUBE_DIR = Path(tempfile.mkdtemp(prefix="wb-kubeconfig-"))
(_KUBE_DIR / "config").write_text(KUBECONFIG)
_OLD_KUBECONFIG = os.environ.get("KUBECONFIG")
os.environ["KUBECONFIG"] = str(_KUBE_DIR / "config")


@pytest.fixture(scope="session", autouse=True)
def kubeconfig():
    yield _KUBE_DIR / "config"
    shutil.rmtree(_KUBE_DIR, ignore_errors=True)
    if _OLD_KUBECONFIG is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = _OLD_KUBECONFIG


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


def run(coro):
    return asyncio.run(coro)
