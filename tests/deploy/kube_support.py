"""What the deploy tests share: the test policy, an offline kube config and the schema check.

KubeSpawner needs a kube config to be constructed: this one points at a port nothing listens on
and is never contacted (pod manifests are built locally). kubernetes_asyncio reads $KUBECONFIG
when it is first imported, so this module sets it on import (conftest.py imports it first)."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import kubernetes_validate

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

_KUBE_DIR = Path(tempfile.mkdtemp(prefix="wb-kubeconfig-"))
atexit.register(shutil.rmtree, _KUBE_DIR, True)
(_KUBE_DIR / "config").write_text(KUBECONFIG)
os.environ["KUBECONFIG"] = str(_KUBE_DIR / "config")


def validate(obj: dict) -> None:
    """Strict: an unknown or misspelt field is an error, as `kubectl apply --validate` makes it."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def run(coro):
    return asyncio.run(coro)
