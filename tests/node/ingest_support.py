"""A small space whose insurer and pharma are enrolled nodes, the generator's raw files of those
holders as their sources, and ``workbench node ingest`` run as a real process (as root, which
drops to the node's account)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATIENTS, SEED = 300, 3


def build(prefix: str):
    from workbench.node.enroll import enroll_node
    from workbench.node.ingest import write_sources
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    space = init_space(root / "space", patients=PATIENTS, seed=SEED, echo=lambda _l: None)
    for holder in ("insurer", "pharma"):
        enroll_node(space, holder)
    write_sources(root / "src-insurer", "insurer", PATIENTS, SEED, "csv")
    write_sources(root / "src-pharma", "pharma", PATIENTS, SEED, "parquet")
    for holder in ("insurer", "pharma"):
        give(root / f"src-{holder}", holder)
    return root, space


def give(folder: Path, holder: str) -> None:
    """The holder's files belong to its node's account, as at its own site."""
    user = pwd.getpwnam(f"wbh-{holder}")
    os.chmod(folder, 0o700)
    for path in [folder, *folder.iterdir()]:
        os.chown(path, user.pw_uid, user.pw_gid)


def copy_sources(root: Path, holder: str, name: str) -> Path:
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(root / f"src-{holder}", target)
    give(target, holder)
    return target


def ingest(space, holder: str, sources: Path, *extra: str, **popen) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "workbench.cli", "node", "ingest", "--data-dir",
               str(space.root), "--holder", holder, "--sources", str(sources), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                          **popen)


def state(space, holder: str) -> dict:
    """What the node serves and keeps: the current version, every version and the files."""
    versions = space.node_dir(holder) / "versions"
    current = os.readlink(versions / "current") if (versions / "current").is_symlink() else None
    return {
        "current": current,
        # the ingest lock's empty file is not a version
        "entries": sorted(p.name for p in versions.iterdir() if p.name != ".lock")
        if versions.is_dir() else [],
        "store": {p.name: p.read_bytes() for p in (space.node_dir(holder) / "holders" /
                                                    holder).glob("*.parquet")},
    }


def version_json(space, holder: str, version: str | None = None) -> dict:
    versions = space.node_dir(holder) / "versions"
    return json.loads((versions / (version or "current") / "version.json").read_text())


def versions(space, holder: str) -> list[dict]:
    from workbench.node.versions import VersionStore

    return VersionStore(space.node_dir(holder), holder).versions()
