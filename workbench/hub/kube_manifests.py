"""The Kubernetes objects of a workbench deployment, rendered from the policy (docs/deployment.md).

One place for what every workbench pod must be (``POD_SECURITY``, ``container_security``), for
each study's numbers (uids, labels, the workspace claim) and for the objects beside the hub that
the z2jh chart does not make: per study a NetworkPolicy for its server pods and one for its
kernel pods, the kernel pod template, the workspace claim; once, the collector, gateway, airlock
and aggregator Deployments and Services. :class:`workbench.hub.kube.StudyKubeSpawner` builds the
server pod from the same constants; tests/deploy/ validates all of it against the Kubernetes
OpenAPI schemas. ``workbench deploy render --policy FILE`` prints the YAML.

Egress is allowed only where a study's pods must go: its server to the hub, the collector, the
airlock and its own kernels; its kernels to the gateway's port for that study and nowhere else,
not even DNS (a resolver is a way out: the kernel is given the gateway's address).
"""

from __future__ import annotations

import hashlib

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Policy

NAMESPACE = "workbench"
IMAGE = "ghcr.io/workbench/workbench:0.1.0"  # built from this repository (deploy/README.md)
LABEL_STUDY = "workbench.io/study"
LABEL_ROLE = "workbench.io/role"
SERVICE_PORT = 8443  # each service's mTLS listener (deploy/README.md: not built yet)
KERNEL_PORTS = (52000, 52005)  # the kernel's five ZeroMQ ports (shell, iopub, stdin, hb, control)
GATEWAY_BASE_PORT = 9000  # the study's gateway port: one per study, as one socket per study today
UID_BASE = 1_000_000  # study uids live above any node's own accounts
UID_SPAN = 1 << 20
SERVICES = {  # name -> (command, replicas): the space's services, each its own Deployment
    "collector": (["workbench", "collector", "--backend", "$(WORKBENCH_PROVENANCE_URL)"], 1),
    "gateway": (["workbench", "gateway", "--policy", "/etc/workbench/policy/policy.yaml"], 2),
    "airlock": (["workbench", "airlock", "--policy", "/etc/workbench/policy/policy.yaml"], 1),
    "aggregator": (["workbench", "aggregator"], 2),
}
# The collector appends to one hash chain: one writer (the chain's order is its lock);
# the gateway and the aggregator keep no state and scale out.

TMP = "/tmp"  # noqa: S108 - each pod's own emptyDir (the root file system is read-only)
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security(uid: int) -> dict:
    return {"runAsUser": uid, "runAsGroup": uid, "runAsNonRoot": True, "privileged": False,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def study_uids(policy: Policy) -> dict[str, tuple[int, int]]:
    """(server uid, kernel uid) of every study: a hash of its id, so that adding a study never
    renumbers another (the workspace files keep their owner). Two studies on one number would
    share files: refused, naming both."""
    uids: dict[str, tuple[int, int]] = {}
    seen: dict[int, str] = {}
    for study in sorted(policy.studies):
        slot = int.from_bytes(hashlib.sha256(study.encode()).digest()[:8], "big") % UID_SPAN
        server = UID_BASE + 2 * slot
        if server in seen:
            raise WorkbenchUserError(
                f"policy: studies {seen[server]!r} and {study!r} map to the same uid {server}; "
                "rename one of them.", reason="uid-collision")
        seen[server] = study
        uids[study] = (server, server + 1)
    return uids


def gateway_port(policy: Policy, study: str) -> int:
    return GATEWAY_BASE_PORT + sorted(policy.studies).index(study)


def study_labels(study: str, role: str) -> dict[str, str]:
    return {LABEL_STUDY: study, LABEL_ROLE: role}


def workspace_claim(study: str) -> str:
    return f"workbench-study-{study}"


def _meta(name: str, labels: dict | None = None) -> dict:
    return {"name": name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "workbench", **(labels or {})}}


def _peer(labels: dict, ports: list[int] | None = None) -> dict:
    rule = {"to": [{"podSelector": {"matchLabels": labels}}]}
    if ports:
        rule["ports"] = [{"protocol": "TCP", "port": p} for p in ports]
    return rule


def server_policy(policy: Policy, study: str) -> dict:
    """What the study's server pods may reach (added to z2jh's own singleuser policy, which
    allows the hub and, with every egressAllowRule off, nothing else)."""
    first, last = KERNEL_PORTS
    kernels = _peer(study_labels(study, "kernel"))
    kernels["ports"] = [{"protocol": "TCP", "port": first, "endPort": last}]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(f"study-{study}-server", study_labels(study, "server")),
        "spec": {
            "podSelector": {"matchLabels": study_labels(study, "server")},
            "policyTypes": ["Egress"],
            "egress": [_peer({LABEL_ROLE: "collector"}, [SERVICE_PORT]),
                       _peer({LABEL_ROLE: "airlock"}, [SERVICE_PORT]), kernels],
        },
    }


def kernel_policy(policy: Policy, study: str) -> dict:
    """The study's kernel pods: reached only by their own study's servers, reaching only the
    gateway's port for this study."""
    first, last = KERNEL_PORTS
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta(f"study-{study}-kernel", study_labels(study, "kernel")),
        "spec": {
            "podSelector": {"matchLabels": study_labels(study, "kernel")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": study_labels(study, "server")}}],
                         "ports": [{"protocol": "TCP", "port": first, "endPort": last}]}],
            "egress": [_peer({LABEL_ROLE: "gateway"}, [gateway_port(policy, study)])],
        },
    }


def kernel_pod(policy: Policy, study: str, kernel_id: str = "example",
               runtime_class: str | None = "gvisor") -> dict:
    """The template the kernel launcher fills in for one kernel of ``study`` (docs/deployment.md:
    a kernel is a pod of its own). No token, no writable root, the study's kernel uid, its
    workspace and nothing else; ``runtime_class`` puts it in gVisor where the nodes have it."""
    _server_uid, uid = study_uids(policy)[study]
    limits = policy.studies[study].resources
    spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no Service addresses in its environment
        "restartPolicy": "Never",
        "securityContext": {**POD_SECURITY, "fsGroup": uid},
        "containers": [{
            "name": "kernel", "image": IMAGE,
            "command": kernel_command("/run/kernel/connection.json"),
            "ports": [{"containerPort": p, "protocol": "TCP"}
                      for p in range(KERNEL_PORTS[0], KERNEL_PORTS[1] + 1)],
            "resources": {"limits": {"cpu": str(limits.cpu), "memory": str(limits.memory_bytes)},
                          "requests": {"cpu": str(limits.cpu / 4),
                                       "memory": str(limits.memory_bytes)}},
            "securityContext": container_security(uid),
            "env": [{"name": "WORKBENCH_STUDY", "value": study},
                    {"name": "HOME", "value": "/workspace"},
                    {"name": "PYTHONNOUSERSITE", "value": "1"}],
            "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"},
                             {"name": "tmp", "mountPath": TMP},
                             {"name": "connection", "mountPath": "/run/kernel",
                              "readOnly": True}],
        }],
        "volumes": [{"name": "workspace",
                     "persistentVolumeClaim": {"claimName": workspace_claim(study)}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "connection", "secret": {"secretName": f"kernel-{kernel_id}",
                                                      "defaultMode": 0o400}}],
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _meta(f"kernel-{study}-{kernel_id}", study_labels(study, "kernel")),
            "spec": spec}


def kernel_command(connection_file: str) -> list[str]:
    """The sealed kernelspec's own command line (workbench.sandbox.kernelspec), filled in."""
    from workbench.sandbox.kernelspec import kernelspec_dict

    return [connection_file if a == "{connection_file}" else a
            for a in kernelspec_dict()["argv"]]


def workspace_volume_claim(study: str, size: str = "20Gi") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(workspace_claim(study), {LABEL_STUDY: study}),
            "spec": {"accessModes": ["ReadWriteMany"],  # the server and its kernels' pods
                     "resources": {"requests": {"storage": size}}}}


def service_deployment(name: str, policy: Policy, uid: int) -> dict:
    command, replicas = SERVICES[name]
    labels = {LABEL_ROLE: name}
    ports = [{"name": "mtls", "containerPort": SERVICE_PORT, "protocol": "TCP"}]
    if name == "gateway":  # one port per study, as one socket per study on one machine
        ports += [{"name": f"study-{i}", "containerPort": gateway_port(policy, s),
                   "protocol": "TCP"} for i, s in enumerate(sorted(policy.studies))]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, labels),
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"} if replicas == 1 else {"type": "RollingUpdate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": {"app.kubernetes.io/part-of": "workbench",
                                                 **labels}},
                         "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {**POD_SECURITY, "fsGroup": uid},
                "containers": [{
                    "name": name, "image": IMAGE, "command": command, "ports": ports,
                    "securityContext": container_security(uid),
                    "env": _service_env(name),
                    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                  "limits": {"memory": "2Gi"}},
                    "volumeMounts": [
                        {"name": "policy", "mountPath": "/etc/workbench/policy", "readOnly": True},
                        {"name": "tls", "mountPath": "/etc/workbench/tls", "readOnly": True},
                        {"name": "tmp", "mountPath": TMP}],
                }],
                "volumes": [{"name": "policy", "configMap": {"name": "workbench-policy"}},
                            {"name": "tls", "secret": {"secretName": f"workbench-{name}-tls",
                                                       "defaultMode": 0o400}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
            }},
        },
    }


def _service_env(name: str) -> list[dict]:
    env = [{"name": "WORKBENCH_DATA_DIR", "value": "/srv/workbench"}]
    if name == "collector":  # its INSERT-only role's URL (docs/provenance.md), from a Secret
        env.append({"name": "WORKBENCH_PROVENANCE_URL", "valueFrom": {"secretKeyRef": {
            "name": "workbench-postgres", "key": "provenance-url"}}})
    return env


def service(name: str, policy: Policy) -> dict:
    ports = [{"name": "mtls", "port": SERVICE_PORT, "targetPort": SERVICE_PORT,
              "protocol": "TCP"}]
    if name == "gateway":
        ports += [{"name": f"study-{i}", "port": gateway_port(policy, s),
                   "targetPort": gateway_port(policy, s), "protocol": "TCP"}
                  for i, s in enumerate(sorted(policy.studies))]
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, {LABEL_ROLE: name}),
            "spec": {"type": "ClusterIP", "selector": {LABEL_ROLE: name}, "ports": ports}}


SERVICE_UIDS = {"collector": 990, "gateway": 991, "airlock": 992, "aggregator": 993}


def render(policy: Policy) -> list[dict]:
    """Every object beside the z2jh chart's own, in apply order."""
    objects: list[dict] = []
    for name in SERVICES:
        objects += [service_deployment(name, policy, SERVICE_UIDS[name]), service(name, policy)]
    for study in sorted(policy.studies):
        objects += [workspace_volume_claim(study), server_policy(policy, study),
                    kernel_policy(policy, study)]
    return objects

