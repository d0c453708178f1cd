"""``workbench init``."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import click

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import ENV_VAR, Space


def existing_space(data_dir: str | os.PathLike | None) -> Space:
    """The space at ``data_dir`` (or $WORKBENCH_DATA_DIR), checked before any service starts for
    it: it was built by `workbench init`, and, as root, the services' accounts can reach it
    (every parent directory traversable by others, which root itself would not notice; without
    root the services run as the caller, who reaches what they do)."""
    space = Space.at(data_dir)
    for parent in reversed(space.root.parents if accounts.is_root() else ()):
        mode = _mode(parent)
        if mode is not None and not mode & stat.S_IXOTH:
            raise WorkbenchUserError(
                f"{parent} (a parent of the data space {space.root}) is not traversable by other "
                "users, so the workbench's service accounts cannot reach the space: run "
                f"'chmod o+x {parent}' or build the space elsewhere.",
                reason="data-dir-not-traversable")
    if not space.manifest.is_file():
        raise WorkbenchUserError(
            f"{space.root} is not a data space (no space.json): build one with "
            f"'workbench init --data-dir {space.root}'.", reason="no-data-space")
    return space


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:  # missing or unreadable: the manifest check says so
        return None


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


@click.command("init")
@click.option("--data-dir", envvar=ENV_VAR, help=f"where to build the space (or ${ENV_VAR})")
@click.option("--patients", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="synthetic patients (0: public validation datasets only)")
@click.option("--seed", type=int, default=42, show_default=True,
              help="seed of the synthetic generator")
@click.option("--chunk-size", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="patients generated and written per chunk (bounds memory)")
@click.option("--force", is_flag=True,
              help="replace a non-empty DIR (deleted only once the new space is complete)")
@click.option("--admin-key", type=click.Path(dir_okay=False), default=None,
              help="create an admin signing key here (0600) and register it: the services then "
                   "act only on a signed policy ('workbench policy apply')")
@click.option("--admin-name", default="admin", show_default=True,
              help="the admin the --admin-key belongs to")
def init(data_dir: str | None, patients: int, seed: int, chunk_size: int, force: bool,
         admin_key: str | None, admin_name: str) -> None:
    """Build a data space: holders' stores, catalog, keys. Built aside, then renamed into place."""
    from workbench.space.build import init_space

    # SIGTERM unwinds like Ctrl-C, so the half-built aside directory is removed
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        init_space(data_dir, patients=patients, seed=seed, force=force, chunk_size=chunk_size,
                   echo=click.echo, admin_key=admin_key, admin_name=admin_name)
    finally:
        signal.signal(signal.SIGTERM, previous)


commands = [init]
