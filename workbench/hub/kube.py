"""StudyKubeSpawner: StudySpawner's rules for one pod per (user, study) on Kubernetes.

SECURITY BOUNDARY, the same decision as :mod:`workbench.hub.spawner` (borrowed from
StudySpawner, not copied): at every start the server name (= the study id) is checked against the
policy as it is now (membership, expiry; 403 otherwise, 503 when the policy cannot be read) and
the start is recorded (``server-spawn``; no record, no pod). Then the pod is made to be what
every study pod must be, whatever the hub's configuration or ``user_options`` say (a
``profile_list`` or ``kubespawner_override`` cannot loosen it, so both are emptied): the study's
server uid (workbench.hub.kube_manifests.study_uids), ``runAsNonRoot``, seccomp
``RuntimeDefault``, a read-only root file system, no privilege escalation, no capabilities, no
service-account token, no Service addresses in its environment, the study's CPU and memory as
limits, labels that the study's NetworkPolicy selects (egress: the hub, the collector, the
airlock, its own kernels). Kernels are pods of their own (docs/deployment.md).

Guarded by tests/deploy/test_kube_spawner.py (the pod rendered by KubeSpawner's own
``get_pod_manifest`` and validated against the Kubernetes OpenAPI schema).
"""

from __future__ import annotations

from kubespawner import KubeSpawner
from traitlets import Float, Unicode

from workbench.hub import kube_manifests as km
from workbench.hub.spawner import StudySpawner
from workbench.paths import Space

STATE = "/tmp/state"  # noqa: S108 - the pod's own emptyDir: runtime files, settings, caches
JUPYTER_CONFIG = "/etc/workbench/jupyter"  # the root-owned server config (ConfigMap)


class StudyKubeSpawner(KubeSpawner):
    """Starts ``jupyterhub-singleuser`` in a pod for the study named by the server name."""

    policy_file = Unicode(
        config=True, help="The hub policy file (YAML), re-read at every start, "
                          "e.g. '/etc/workbench/policy/policy.yaml'.")
    data_dir = Unicode(config=True, help="The hub's data space directory (its collector socket "
                                         "and policy history), e.g. '/srv/workbench'.")
    cpu_request_fraction = Float(
        0.25, config=True,
        help="CPU requested per pod as a fraction of the study's CPU limit (memory is requested "
             "in full: a study server must not be killed for a neighbour's use), e.g. 0.5.")

    # The decision and its records: StudySpawner's, so there is one place for each.
    study = StudySpawner.study
    check_access = StudySpawner.check_access
    _refuse = StudySpawner._refuse
    _record_denied = StudySpawner._record_denied
    _record = StudySpawner._record

    def apply_study(self, policy) -> None:
        """Set every pod setting that the rules decide, from the policy entry of the study."""
        study = policy.studies[self.study]
        uid, _kernel_uid = km.study_uids(policy)[self.study]
        limits = study.resources
        self.profile_list = []
        self.uid = self.gid = self.fs_gid = uid
        self.supplemental_gids = []
        self.privileged = False
        self.allow_privilege_escalation = False
        self.container_security_context = km.container_security(uid)
        self.pod_security_context = {**km.POD_SECURITY, "fsGroup": uid}
        self.service_account = None
        self.automount_service_account_token = False
        self.extra_pod_config = {"enableServiceLinks": False}
        self.extra_container_config = {}
        self.extra_containers = []
        self.init_containers = []
        self.lifecycle_hooks = {}
        self.cpu_limit = float(limits.cpu)
        self.cpu_guarantee = float(limits.cpu) * self.cpu_request_fraction
        self.mem_limit = self.mem_guarantee = limits.memory_bytes
        self.extra_labels = km.study_labels(self.study, "server")
        self.storage_pvc_ensure = False  # the study's claim is the admin's (kube_manifests)
        self.volumes = [
            {"name": "workspace",
             "persistentVolumeClaim": {"claimName": km.workspace_claim(self.study)}},
            {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "jupyter-config", "configMap": {"name": "workbench-singleuser"}},
        ]
        self.volume_mounts = [
            {"name": "workspace", "mountPath": "/workspace"},
            {"name": "state", "mountPath": STATE},
            {"name": "jupyter-config", "mountPath": JUPYTER_CONFIG, "readOnly": True},
        ]
        self.working_dir = "/workspace"
        self.environment = {
            "HOME": "/workspace", "LANG": "C.UTF-8", "SHELL": "/usr/sbin/nologin",
            "JUPYTER_CONFIG_DIR": JUPYTER_CONFIG, "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG,
            "JUPYTER_RUNTIME_DIR": f"{STATE}/runtime", "IPYTHONDIR": f"{STATE}/ipython",
            "XDG_CONFIG_HOME": f"{STATE}/xdg-config", "XDG_DATA_HOME": f"{STATE}/xdg-data",
            "XDG_CACHE_HOME": f"{STATE}/xdg-cache", "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "WORKBENCH_STUDY": self.study,
        }

    async def load_user_options(self):
        """Nothing about a study pod is the user's to choose (the server name picks the study):
        options such as a profile or an image are dropped, not applied."""
        if self.user_options:
            self.log.warning("ignored user_options %s of %s/%s", sorted(self.user_options),
                             self.user.name, self.name)
        self.user_options = {}

    async def start(self):
        policy = self.check_access()
        self.apply_study(policy)
        uid, _kernel_uid = km.study_uids(policy)[self.study]
        resources = policy.studies[self.study].resources
        # Fail closed: a pod whose start cannot be recorded is not created.
        await self._record(Space.at(self.data_dir or None), {
            "study": self.study, "user": self.user.name, "server_name": self.study,
            "event": "spawn", "status": "ok", "uid": uid,
            "resources": {"cpu": resources.cpu, "memory_bytes": resources.memory_bytes,
                          "max_kernels": resources.max_kernels, "enforced_by": "kubernetes"},
        })
        return await super().start()
