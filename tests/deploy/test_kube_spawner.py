"""StudyKubeSpawner: the study pod comes from KubeSpawner's own get_pod_manifest, is valid
against the Kubernetes OpenAPI schema, and keeps the rules whatever the configuration or the
user's options try; starts are refused exactly as StudySpawner refuses them, before any call
to Kubernetes."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from kubernetes_asyncio.client import ApiClient
from tornado.web import HTTPError
from traitlets.config import Config

from tests.deploy.kube_support import run, validate
from workbench.hub import kube_manifests as km
from workbench.hub.kube import StudyKubeSpawner


async def _spawner(space, policy_path, user="alice", study="cml-tki", config=None):
    """A spawner as the hub makes one: a real User from an ORM row, its named server's row."""
    db = orm.new_session_factory("sqlite://")()
    orm_user = orm.User(name=user)
    db.add(orm_user)
    db.add(orm.Spawner(user=orm_user, name=study))
    db.commit()
    config = config or Config()
    config.StudyKubeSpawner.policy_file = str(policy_path)
    config.StudyKubeSpawner.data_dir = str(space)
    hub_user = User(orm_user, settings={"spawner_class": StudyKubeSpawner, "hub": Hub(),
                                        "config": config, "allow_named_servers": True})
    return hub_user.spawners[study]


async def _pod(space, policy_path, policy, config=None, user_options=None, study="cml-tki"):
    spawner = await _spawner(space, policy_path, study=study, config=config)
    spawner.user_options = user_options or {}
    spawner.apply_study(policy)
    await spawner.load_user_options()  # what KubeSpawner's start does next
    async with ApiClient() as api:
        return api.sanitize_for_serialization(await spawner.get_pod_manifest())


def _assert_locked_down(pod: dict, uid: int) -> None:
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("serviceAccountName")
    assert spec["enableServiceLinks"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not spec.get("initContainers")
    assert [c["name"] for c in spec["containers"]] == ["notebook"]
    context = spec["containers"][0]["securityContext"]
    assert context["runAsUser"] == uid and context["runAsGroup"] == uid and uid >= 1000
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all("hostPath" not in v for v in spec["volumes"])


def test_member_pod_is_valid_and_locked_down(space_and_policy, policy):
    space, policy_path = space_and_policy
    pod = run(_pod(space, policy_path, policy))
    validate(pod)
    uid, kernel_uid = km.study_uids(policy)["cml-tki"]
    _assert_locked_down(pod, uid)
    assert kernel_uid != uid
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": 2.0, "memory": 3 * 2**30}
    assert container["resources"]["requests"] == {"cpu": 0.5, "memory": 3 * 2**30}
    assert pod["metadata"]["labels"][km.LABEL_STUDY] == "cml-tki"
    assert pod["metadata"]["labels"][km.LABEL_ROLE] == "server"
    # the labels the study's NetworkPolicy selects are on the pod
    selector = km.server_policy(policy, "cml-tki")["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == [km.workspace_claim("cml-tki")]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WORKBENCH_STUDY"] == "cml-tki" and env["PYTHONNOUSERSITE"] == "1"


def test_each_study_gets_its_own_uid_and_claim(space_and_policy, policy):
    space, policy_path = space_and_policy
    pods = {s: run(_pod(space, policy_path, policy, study=s))
            for s in ("cml-tki", "lung-validation")}
    uids = {s: p["spec"]["containers"][0]["securityContext"]["runAsUser"]
            for s, p in pods.items()}
    assert len(set(uids.values())) == 2
    for study, pod in pods.items():
        _assert_locked_down(pod, uids[study])
        validate(pod)


def test_configuration_and_user_options_cannot_loosen_the_pod(space_and_policy, policy):
    """An admin's (or an attacker's) config and a user's options try every knob that would
    open the pod; the study's rules are set again at every start."""
    space, policy_path = space_and_policy
    config = Config()
    loose = config.StudyKubeSpawner
    loose.privileged = True
    loose.allow_privilege_escalation = True
    loose.automount_service_account_token = True
    loose.service_account = "default"
    loose.uid = 0
    loose.container_security_context = {"privileged": True, "runAsUser": 0}
    loose.pod_security_context = {"runAsUser": 0}
    loose.extra_pod_config = {"hostNetwork": True, "hostPID": True}
    loose.extra_container_config = {"securityContext": {"privileged": True}}
    loose.init_containers = [{"name": "root", "image": "busybox",
                              "securityContext": {"privileged": True}}]
    loose.volumes = [{"name": "host", "hostPath": {"path": "/"}}]
    loose.volume_mounts = [{"name": "host", "mountPath": "/host"}]
    loose.mem_limit = "64G"
    loose.profile_list = [{"display_name": "root", "slug": "root", "default": True,
                           "kubespawner_override": {"privileged": True, "uid": 0,
                                                    "automount_service_account_token": True}}]
    pod = run(_pod(space, policy_path, policy, config=config,
                   user_options={"profile": "root", "image": "evil:latest"}))
    validate(pod)
    _assert_locked_down(pod, km.study_uids(policy)["cml-tki"][0])
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == 3 * 2**30
    assert "evil" not in str(pod)


@pytest.mark.parametrize(("user", "study", "status", "words"), [
    ("bob", "cml-tki", 403, "may not spawn-server"),  # not a member
    ("alice", "old-study", 403, "expired"),
    ("alice", "no-such-study", 403, ""),
    ("alice", "", 403, "no default server"),
])
def test_start_refused_before_any_kubernetes_call(space_and_policy, user, study, status, words):
    space, policy_path = space_and_policy

    async def attempt():
        spawner = await _spawner(space, policy_path, user=user, study=study)
        with pytest.raises(HTTPError) as refused:
            await spawner.start()
        return refused.value, spawner

    error, spawner = run(attempt())
    assert error.status_code == status and words.lower() in error.log_message.lower()
    assert spawner._start_future is None  # KubeSpawner's start (the pod request) never ran


def test_start_fails_closed_without_the_collector(space_and_policy):
    """A member's start that cannot be recorded makes no pod (503)."""
    space, policy_path = space_and_policy

    async def attempt():
        spawner = await _spawner(space, policy_path)
        with pytest.raises(HTTPError) as refused:
            await spawner.start()
        return refused.value, spawner

    error, spawner = run(attempt())
    assert error.status_code == 503 and "provenance collector" in error.log_message
    assert spawner._start_future is None


def test_unreadable_policy_refuses_every_start(space_and_policy):
    space, policy_path = space_and_policy
    policy_path.write_text("studies: [this is not a policy\n")

    async def attempt():
        spawner = await _spawner(space, policy_path)
        with pytest.raises(HTTPError) as refused:
            await spawner.start()
        return refused.value

    assert run(attempt()).status_code == 503


def test_registered_as_a_jupyterhub_spawner():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="jupyterhub.spawners")
                if e.name == "workbench-kube-study"]
    assert entry.load() is StudyKubeSpawner
