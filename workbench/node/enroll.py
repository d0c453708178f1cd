"""Turning a space's holders into nodes: ``workbench node enroll``.

On one machine (``make demo``, the tests) enrolment moves each holder's store, its signing key,
its MAC key, the holders' round-weight key and the study re-keying key out of the gateway's reach
into the node's own directory (``Space.node_dir``, 0700, owned by ``wbh-<holder>``), and gives
the node a certificate from the space CA. The coordinator (gateway) and the aggregator get their
own certificates. Afterwards the gateway holds no store and no holder key: it reaches the data
only by asking the nodes over mTLS. At a holder's site the same files are made by the holder's
IT and the certificate is issued from a CSR (docs/nodes.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from workbench import accounts
from workbench.catalog.store import Catalog
from workbench.errors import WorkbenchUserError
from workbench.node import pki
from workbench.node.config import NodeConfig
from workbench.paths import Space
from workbench.secure.keys import PUBLIC_FILE, write_key_file
from workbench.secure.signing import WEIGHTS_FILE, mac_dir
from workbench.space.linkage import study_rekey_key_path

RULES_TEMPLATE = """\
# What this node serves, on top of the space's policy (it may only narrow it).
# Errors in this file name its line and field; the node re-reads it on every request.
studies: ["*"]          # or a list of study ids
views: ["*"]            # or a list of view ids
thresholds: {}          # floors, e.g. {min_cell_count: 20, min_holders: 3}
rounds_per_day: 2000    # secure rounds per study per UTC day
"""


def space_holders(space: Space) -> list[str]:
    return sorted(json.loads(space.manifest.read_text())["holders"])


def authority(space: Space) -> pki.Authority:
    ca = pki.Authority(space.pki)
    if not ca.exists():
        ca.create(json.loads(space.manifest.read_text())["space_id"])
    return ca


def enroll_role(space: Space, role: str, account: str) -> Path:
    """A certificate for the coordinator or the aggregator, in ``Space.role_tls(role)``, owned
    by ``account`` (0700)."""
    key, cert = authority(space).issue(role, role)
    folder = space.role_tls(role)
    folder.mkdir(parents=True, exist_ok=True)
    owner = accounts.ensure_user(account) if accounts.is_root() else None
    write_key_file(folder / "key.pem", key, 0o600, owner)
    write_key_file(folder / "cert.pem", cert, 0o644, owner)
    os.chmod(folder.parent, 0o755)  # noqa: S103 - only lists the roles' 0700 folders
    os.chmod(folder, 0o700)
    if owner:
        os.chown(folder, *owner)
    return folder


def enroll_node(space: Space, holder: str) -> NodeConfig:
    """Give ``holder`` its node: account, directory, store, keys, certificate, rules."""
    if holder not in space_holders(space):
        raise WorkbenchUserError(f"{holder!r} is not a holder of this space; the holders are "
                                 f"{', '.join(space_holders(space))}.", reason="bad-holder")
    ca = authority(space)
    root = space.node_dir(holder)
    space.nodes.mkdir(exist_ok=True)
    os.chmod(space.nodes, 0o755)  # noqa: S103 - only lists the nodes' 0700 folders
    root.mkdir(exist_ok=True)
    os.chmod(root, 0o700)
    (root / "tls").mkdir(exist_ok=True)
    (root / "keys").mkdir(exist_ok=True)
    (root / "holders").mkdir(exist_ok=True)
    config = NodeConfig(root, holder, ca.cert_path, ca.crl_path, space.root / "admins.json",
                        space.he / PUBLIC_FILE)
    _move_store(space, holder, root)
    _move_keys(space, holder, config)
    key, cert = ca.issue("node", holder)
    config.key.write_bytes(key)
    config.cert.write_bytes(cert)
    if not config.rules.exists():
        config.rules.write_text(RULES_TEMPLATE)
    config.write()
    if accounts.is_root():
        uid, gid = accounts.ensure_user(accounts.holder_node_user(holder))
        for folder, dirs, files in os.walk(root):
            os.chown(folder, uid, gid)
            os.chmod(folder, 0o700)
            for name in files:
                path = Path(folder) / name
                os.chown(path, uid, gid, follow_symlinks=False)
                os.chmod(path, 0o600)
            for name in dirs:
                os.chown(Path(folder) / name, uid, gid, follow_symlinks=False)
    return config


def _move_store(space: Space, holder: str, root: Path) -> None:
    """The holder's parquet files, the study re-keying key and a catalog of its own datasets
    and the space's views."""
    source = space.holder_dir(holder)
    target = root / "holders" / holder
    if source.is_dir():
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(source), str(target))
    rekey = study_rekey_key_path(space)
    if rekey.exists():
        shutil.copy2(rekey, root / "holders" / rekey.name)
    catalog = Catalog.load(space)
    node_space = Space(root)
    for dataset in catalog.datasets.values():
        if dataset.holder == holder:
            Catalog.write(node_space, dataset)
    for view in catalog.views.values():
        Catalog.write(node_space, view)


def _move_keys(space: Space, holder: str, config: NodeConfig) -> None:
    """The holder's signing key leaves the gateway's key folder; its MAC key and the round-weight
    key are copied (the key holder keeps its own copies to verify)."""
    signing = space.holder_keys / f"{holder}.key"
    if signing.exists():
        shutil.copy2(signing, config.keys / "signing.key")
        signing.unlink()
    shutil.copy2(mac_dir(space.he) / f"{holder}.key", config.keys / "mac.key")
    shutil.copy2(mac_dir(space.he) / WEIGHTS_FILE, config.keys / "weights.key")


def finish(space: Space) -> None:
    """After every holder is a node: the gateway loses what it read the stores and keys with.
    The MAC keys stay with the key holder alone; the re-keying key and the emptied store folder
    go."""
    if accounts.is_root():
        keyholder = accounts.ensure_user(accounts.KEYHOLDER)
        folder = mac_dir(space.he)
        os.chown(folder, *keyholder)
        os.chmod(folder, 0o700)
        for path in folder.iterdir():
            os.chown(path, *keyholder)
            os.chmod(path, 0o600)
    rekey = study_rekey_key_path(space)
    if rekey.exists():
        rekey.unlink()
    for path in space.holders.iterdir() if space.holders.is_dir() else ():
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def enroll_space(space: Space) -> list[NodeConfig]:
    """Every holder of the space becomes a node; the coordinator and aggregator get their
    certificates. Idempotent for nodes already enrolled (their store stays where it is)."""
    configs = [enroll_node(space, holder) for holder in space_holders(space)]
    enroll_role(space, "coordinator", accounts.GATEWAY)
    enroll_role(space, "aggregator", accounts.AGGREGATOR)
    finish(space)
    return configs


def is_node_space(space: Space) -> bool:
    return space.nodes.is_dir() and any(space.nodes.iterdir())


def ensure_witnesses(space: Space) -> list[str]:
    """Make every enrolled node a witness of the central provenance log (once the collector's
    tree-head key exists, i.e. after its first start) and list it in the space's witness list
    (endpoint ``node:<holder>``), with a majority of the nodes as the quorum; give the cosigner
    (the collector's account) its certificate. Returns the holders made witnesses now."""
    from workbench.node import witness
    from workbench.provenance import cosign, heads

    log_key = heads.public_key_path(space)
    if not log_key.exists() or not is_node_space(space):
        return []
    if not (space.role_tls("collector") / "cert.pem").exists():
        enroll_role(space, "collector", accounts.COLLECTOR)
    listing = cosign.load_witnesses(space.witnesses) or cosign.WitnessList({}, 1)
    witnesses, endpoints, made = dict(listing.witnesses), dict(listing.endpoints), []
    for root in sorted(p for p in space.nodes.iterdir() if (p / "node.json").exists()):
        config = NodeConfig.load(root)
        if (config.witness_dir / "witness.key").exists():
            continue
        key = witness.enroll(config.witness_dir, config.holder, log_key.read_bytes())
        witnesses[config.holder] = key.public_key()
        endpoints[config.holder] = f"node:{config.holder}"
        if accounts.is_root():
            uid, gid = accounts.ensure_user(accounts.holder_node_user(config.holder))
            for path in [config.witness_dir, *config.witness_dir.iterdir()]:
                os.chown(path, uid, gid)
        made.append(config.holder)
    if made:  # a majority of the holders must cosign every head
        cosign.save_witnesses(space, dataclasses.replace(
            listing, witnesses=witnesses, endpoints=endpoints, quorum=len(witnesses) // 2 + 1))
    return made
