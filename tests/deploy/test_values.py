"""deploy/z2jh-values.yaml: the chart settings the security rules depend on, and every hub
setting in it a real, configurable trait (a misspelt one would be silently ignored by the hub)."""

from __future__ import annotations

from pathlib import Path

import yaml
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator

from workbench.hub.database import is_postgres
from workbench.hub.kube import StudyKubeSpawner

VALUES = Path(__file__).resolve().parents[2] / "deploy" / "z2jh-values.yaml"


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_hub_runs_study_pods_on_postgresql():
    hub = _values()["hub"]
    assert hub["db"]["type"] == "postgres"
    assert is_postgres(hub["db"]["url"]) and hub["db"]["url"].startswith("postgresql+psycopg://")
    assert hub["config"]["JupyterHub"]["spawner_class"] == "workbench-kube-study"
    assert hub["config"]["JupyterHub"]["admin_access"] is False


def test_hub_settings_are_real_traits():
    classes = {"JupyterHub": JupyterHub, "StudyKubeSpawner": StudyKubeSpawner,
               "Authenticator": Authenticator}
    config = _values()["hub"]["config"]
    assert set(config) <= set(classes)
    for section, settings in config.items():
        traits = classes[section].class_traits(config=True)
        unknown = set(settings) - set(traits)
        assert not unknown, f"hub.config.{section}: {unknown} are not settings of {section}"


def test_study_pods_get_no_way_out_from_the_chart():
    singleuser = _values()["singleuser"]
    netpol = singleuser["networkPolicy"]
    assert netpol["enabled"] is True and netpol["egress"] == []
    assert netpol["egressAllowRules"] and not any(netpol["egressAllowRules"].values())
    assert singleuser["cloudMetadata"]["blockWithIptables"] is False  # no privileged init
    assert singleuser["allowPrivilegeEscalation"] is False
    assert not singleuser["serviceAccountName"]
    assert singleuser["storage"]["type"] == "none"


def test_hub_pod_is_locked_down():
    hub = _values()["hub"]
    assert hub["podSecurityContext"]["runAsNonRoot"] is True
    assert hub["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = hub["containerSecurityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert _values()["cull"]["removeNamedServers"] is False
