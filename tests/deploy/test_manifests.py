"""Every object of workbench.hub.kube_manifests, rendered from a policy: valid against the
Kubernetes OpenAPI schema, and the network rules and pod rules that the deployment's security
rests on, asserted on the objects themselves."""

from __future__ import annotations

import itertools

import pytest

from tests.deploy.kube_support import validate
from workbench.errors import WorkbenchUserError
from workbench.hub import kube_manifests as km
from workbench.sandbox.kernelspec import kernelspec_dict


def _by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_every_rendered_object_is_valid(policy):
    objects = km.render(policy) + [km.kernel_pod(policy, s) for s in policy.studies]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy", "Pod"}
    for obj in objects:
        validate(obj)
    assert len(_by_kind(objects, "NetworkPolicy")) == 2 * len(policy.studies)


def test_validation_catches_a_misspelt_field(policy):
    """The schema check is strict: a typo in a security field would not pass unnoticed."""
    import kubernetes_validate

    pod = km.kernel_pod(policy, "cml-tki")
    pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(pod)


def _egress_targets(netpol) -> list[tuple[dict, list]]:
    out = []
    for rule in netpol["spec"].get("egress", []):
        for peer in rule["to"]:
            assert set(peer) == {"podSelector"}, f"{peer}: only pods in this namespace"
            out.append((peer["podSelector"]["matchLabels"], rule.get("ports", [])))
    return out


def test_kernels_reach_only_their_study_gateway_port(policy):
    for study in policy.studies:
        netpol = km.kernel_policy(policy, study)
        assert set(netpol["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        targets = _egress_targets(netpol)
        assert targets == [({km.LABEL_ROLE: "gateway"},
                            [{"protocol": "TCP", "port": km.gateway_port(policy, study)}])]
        # no DNS (port 53), no address block, no other namespace: nothing else is allowed
        (ingress,) = netpol["spec"]["ingress"]
        assert ingress["from"] == [{"podSelector": {"matchLabels": km.study_labels(study,
                                                                                   "server")}}]


def test_studies_are_kept_apart(policy):
    ports = {s: km.gateway_port(policy, s) for s in policy.studies}
    assert len(set(ports.values())) == len(ports)
    for a, b in itertools.permutations(policy.studies, 2):
        allowed = [p["port"] for _labels, ports_ in _egress_targets(km.kernel_policy(policy, a))
                   for p in ports_]
        assert ports[b] not in allowed
        # b's servers cannot reach a's kernels: a's kernel ingress names a's servers only
        (ingress,) = km.kernel_policy(policy, a)["spec"]["ingress"]
        assert ingress["from"][0]["podSelector"]["matchLabels"][km.LABEL_STUDY] == a
        kernels = [labels for labels, _ in _egress_targets(km.server_policy(policy, a))
                   if labels.get(km.LABEL_ROLE) == "kernel"]
        assert kernels == [km.study_labels(a, "kernel")]


def test_servers_reach_collector_airlock_and_own_kernels_only(policy):
    for study in policy.studies:
        netpol = km.server_policy(policy, study)
        assert netpol["spec"]["podSelector"]["matchLabels"] == km.study_labels(study, "server")
        roles = sorted(labels[km.LABEL_ROLE] for labels, _ in _egress_targets(netpol))
        assert roles == ["airlock", "collector", "kernel"]


def test_the_gateway_serves_one_port_per_study(policy):
    gateway = next(o for o in km.render(policy)
                   if o["kind"] == "Service" and o["metadata"]["name"] == "gateway")
    served = {p["port"] for p in gateway["spec"]["ports"]}
    assert {km.gateway_port(policy, s) for s in policy.studies} <= served


def test_kernel_pod_rules(policy):
    uids = km.study_uids(policy)
    for study in policy.studies:
        pod = km.kernel_pod(policy, study, kernel_id="k1")
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["runtimeClassName"] == "gvisor"
        assert spec["securityContext"]["runAsNonRoot"] is True
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["runAsUser"] == uids[study][1] != uids[study][0]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["command"][:4] == kernelspec_dict()["argv"][:4]  # the sealed kernel
        assert pod["metadata"]["labels"] == {"app.kubernetes.io/part-of": "workbench",
                                             **km.study_labels(study, "kernel")}
    assert "runtimeClassName" not in km.kernel_pod(policy, "cml-tki", runtime_class=None)["spec"]


def test_service_deployments_rules(policy):
    deployments = _by_kind(km.render(policy), "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == set(km.SERVICES)
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["runAsUser"] > 0 and context["readOnlyRootFilesystem"]
        assert context["allowPrivilegeEscalation"] is False
    collector = next(d for d in deployments if d["metadata"]["name"] == "collector")
    # one writer per hash chain; never two collectors side by side during a rollout either
    assert collector["spec"]["replicas"] == 1
    assert collector["spec"]["strategy"] == {"type": "Recreate"}


def test_study_uids_are_stable_and_collisions_refused(policy, monkeypatch):
    uids = km.study_uids(policy)
    assert len({u for pair in uids.values() for u in pair}) == 2 * len(uids)
    assert all(u >= km.UID_BASE for pair in uids.values() for u in pair)
    smaller = policy.model_copy(update={"studies": {"cml-tki": policy.studies["cml-tki"]}})
    assert km.study_uids(smaller)["cml-tki"] == uids["cml-tki"]  # no renumbering
    monkeypatch.setattr(km, "UID_SPAN", 1)  # every study on one number
    with pytest.raises(WorkbenchUserError, match="same uid"):
        km.study_uids(policy)
