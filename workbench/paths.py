"""Where things live in a data space: the one place that decides the on-disk layout.

See docs/architecture.md for the layout and who owns each part.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchUserError

ENV_VAR = "WORKBENCH_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The space's directory from ``--data-dir`` or ``$WORKBENCH_DATA_DIR``."""
    value = data_dir or os.environ.get(ENV_VAR)
    if not value:
        raise WorkbenchUserError(
            f"No data space given: pass --data-dir DIR or set {ENV_VAR}. "
            "Build one with 'workbench init --data-dir DIR'.",
            reason="no-data-dir",
        )
    return Path(value).resolve()


@dataclass(frozen=True)
class Space:
    """Paths inside one data space directory."""

    root: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike | None) -> Space:
        return cls(resolve_data_dir(data_dir))

    # -- written by `workbench init` -------------------------------------------------------
    @property
    def manifest(self) -> Path:  # public facts about the space (id, seed, holders)
        return self.root / "space.json"

    @property
    def keys(self) -> Path:  # root-only: certificate signing key and linkage key
        return self.root / "keys"

    @property
    def signing_key(self) -> Path:
        return self.keys / "signing.key"

    @property
    def signing_pub(self) -> Path:  # public half, readable by everyone
        return self.root / "signing.pub"

    @property
    def witnesses(self) -> Path:  # public: the provenance log's witnesses (ids, keys, quorum)
        return self.root / "witnesses.json"

    @property
    def admin_keys(self) -> Path:  # public, root-written: the keys that may sign the policy
        return self.root / "admins.json"

    @property
    def policy_dir(self) -> Path:  # public, root-written: the signed policy and its history
        return self.root / "policy"

    @property
    def policy(self) -> Path:  # the policy in force (+ ``.sig``), written by `policy apply`
        return self.policy_dir / "policy.yaml"

    @property
    def linkage_key(self) -> Path:
        return self.keys / "linkage.key"

    @property
    def holders(self) -> Path:  # owned by the gateway service: nobody else reads data
        return self.root / "holders"

    def holder_dir(self, holder: str) -> Path:
        return self.holders / holder

    @property
    def catalog(self) -> Path:  # owned by the gateway service
        return self.root / "catalog"

    # -- services ---------------------------------------------------------------------------
    @property
    def provenance(self) -> Path:  # owned by the collector uid only
        return self.root / "provenance"

    @property
    def he(self) -> Path:  # public.ctx readable by services; key shares and box key guarded
        return self.root / "he"

    @property
    def keyholder_state(self) -> Path:  # the release checker's ledgers (privacy budgets), 0700
        return self.root / "keyholder"

    @property
    def run(self) -> Path:  # Unix sockets of the services
        return self.root / "run"

    @property
    def collector_socket(self) -> Path:
        return self.run / "collector.sock"

    @property
    def keyholder_socket(self) -> Path:
        return self.run / "keyholder.sock"

    @property
    def aggregator_socket(self) -> Path:  # the HE aggregator: public context only
        return self.run / "aggregator.sock"

    @property
    def holder_registry(self) -> Path:  # holders' Ed25519 public keys, trusted by the key holder
        return self.he / "holders.json"

    @property
    def holder_keys(self) -> Path:  # holders' private signing keys, owned by the gateway account
        return self.he / "holder-keys"

    def gateway_socket(self, study: str) -> Path:
        return self.run / "gateway" / f"{study}.sock"

    def rerun_socket(self, study: str) -> Path:
        """The study's second gateway socket, bound into ``workbench rerun`` kernels: the same
        reads, release requests only checked (dry run). Study ids have no '.': no collision."""
        return self.run / "gateway" / f"{study}.rerun.sock"

    @property
    def kernel_launcher_socket(self) -> Path:  # the root kernel launcher (non-root servers)
        return self.run / "kernel-launcher.sock"

    @property
    def review_broker_socket(self) -> Path:  # the dashboards' privileged helper
        return self.run / "review-broker.sock"

    @property
    def airlock(self) -> Path:  # release requests and evidence, owned by the airlock uid
        return self.root / "airlock"

    @property
    def airlock_socket(self) -> Path:
        return self.run / "airlock.sock"

    @property
    def usage(self) -> Path:  # the usage ledger, written by the gateway
        return self.root / "usage"

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    def study_dir(self, study: str) -> Path:
        return self.studies / study

    def workspace(self, study: str) -> Path:  # the kernel's only writable directory
        return self.study_dir(study) / "workspace"

    def outbox(self, study: str) -> Path:  # released files: the airlock's own, 0700
        return self.airlock / "outbox" / study

    # -- holder nodes (workbench/node) --------------------------------------------------------
    @property
    def pki(self) -> Path:  # the space CA: ca.pem and crl.pem public, ca.key root only
        return self.root / "pki"

    @property
    def nodes(self) -> Path:  # on one machine, each holder node's own directory (0700 its uid)
        return self.root / "nodes"

    def node_dir(self, holder: str) -> Path:
        return self.nodes / holder

    @property
    def node_registry(self) -> Path:  # public: each node's address, written when nodes start
        return self.root / "nodes.json"

    def role_tls(self, role: str) -> Path:  # the coordinator's / aggregator's key and certificate
        return self.root / "tls" / role
