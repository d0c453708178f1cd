"""Dataset versions at a holder node: each ingest is built aside and served after one rename.

    nodes/<holder>/versions/<id>/             one version (never changed once it is there):
                   holders/<holder>/*.parquet   the harmonised, pseudonymised store
                   datasets/ quality/ certificates/   its catalog entries, quality reports and
                                                ownership certificates (signed by the holder)
                   quarantine.jsonl             rows left out: file, row, field, reason (no value)
                   version.json                 content hash, rows, quality score, time, sources
    nodes/<holder>/versions/current -> <id>   the version served
    nodes/<holder>/holders/<holder>   -> ../versions/current/holders/<holder>
    nodes/<holder>/catalog/datasets   -> ../versions/current/datasets   (and quality/,
                                                certificates/)

The node's server, the view engine and the certificates keep reading ``holders/<holder>/`` and
``catalog/datasets/``; they follow the links. Switching versions is ``rename(2)`` of a new
``current`` link over the old one: a reader sees the old version or the new one, never a mix,
and an ingest killed at any point (SIGKILL, power loss) leaves the previous version serving. Its
half-built ``.building-*`` folder is removed by the next ingest, under the same lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workbench.errors import WorkbenchUserError

VERSIONS, CURRENT, VERSION_FILE = "versions", "current", "version.json"
CATALOG_PARTS = ("datasets", "quality", "certificates")
_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths atomically
_AT_FDCWD = -100


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(top: Path) -> None:
    """Every file and folder under ``top`` on disk before it is switched to."""
    for folder, _dirs, files in os.walk(top):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the kernel cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    if call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


class VersionStore:
    """The versions of one node's store (``root`` is the node's directory)."""

    def __init__(self, root: Path, holder: str):
        self.root, self.holder = Path(root), holder
        self.dir = self.root / VERSIONS

    # -- paths ------------------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        return self.dir / version

    def store_in(self, version_dir: Path) -> Path:
        return version_dir / "holders" / self.holder

    def current(self) -> str | None:
        try:
            return os.readlink(self.dir / CURRENT)
        except FileNotFoundError:
            return None

    def versions(self) -> list[dict]:
        """Every kept version's ``version.json``, oldest first."""
        found = []
        for path in self.dir.glob("*/" + VERSION_FILE) if self.dir.is_dir() else ():
            if path.parent.name.startswith(".") or path.parent.is_symlink():
                continue
            found.append(json.loads(path.read_text()))
        return sorted(found, key=lambda v: (v["created_at"], v["id"]))

    # -- building ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One ingest at a time per node; the kernel drops the lock of a killed one."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkbenchUserError(
                    f"{self.root}: another ingest is running at this node; wait for it to "
                    "finish.", reason="ingest-running") from None
            for stale in self.dir.glob(".building-*"):  # left by a killed ingest
                shutil.rmtree(stale, ignore_errors=True)
            for stale in self.root.rglob(".wb-old-*"):  # a real folder swapped for a link
                shutil.rmtree(stale, ignore_errors=True)
            yield
        finally:
            os.close(fd)

    def aside(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=".building-", dir=self.dir))

    def publish(self, aside: Path, version: str) -> None:
        """Make the finished ``aside`` folder version ``version`` and serve it."""
        fsync_tree(aside)
        final = self.path(version)
        os.rename(aside, final)
        link = self.dir / f".current-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(version, link)
        os.replace(link, self.dir / CURRENT)  # the switch: atomic
        _fsync(self.dir)
        self.link()

    def link(self) -> None:
        """The store and catalog paths the node reads, as links through ``current``."""
        links = {self.root / "holders" / self.holder:
                 Path("..") / VERSIONS / CURRENT / "holders" / self.holder}
        for part in CATALOG_PARTS:
            links[self.root / "catalog" / part] = Path("..") / VERSIONS / CURRENT / part
        for path, target in links.items():
            if path.is_symlink() and os.readlink(path) == str(target):
                continue
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".wb-link-{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(target, tmp)
            if path.is_dir() and not path.is_symlink():
                # an enrolled node's real folder (its first version was adopted from it): swap it
                # for the link in one step, so no reader ever finds the path missing
                if _exchange(tmp, path):
                    old = path.with_name(f".wb-old-{path.name}")
                    os.rename(tmp, old)
                    shutil.rmtree(old)
                    continue
                os.rename(path, path.with_name(f".wb-old-{path.name}"))
                shutil.rmtree(path.with_name(f".wb-old-{path.name}"))
            os.replace(tmp, path)
        _fsync(self.root)

    # -- retention --------------------------------------------------------------------------------
    def prune(self, keep_versions: int, keep_days: int, now: datetime | None = None) -> list[str]:
        """Delete the versions the holder's retention rule lets go; never the one served."""
        now = now or datetime.now(UTC)
        versions = self.versions()
        newest = {v["id"] for v in versions[-keep_versions:]}
        cutoff = now - timedelta(days=keep_days)
        current, removed = self.current(), []
        for version in versions:
            made = datetime.fromisoformat(version["created_at"])
            if version["id"] in newest or version["id"] == current or made >= cutoff:
                continue
            gone = self.dir / f".building-pruned-{version['id']}"  # swept by the next ingest
            os.rename(self.path(version["id"]), gone)
            shutil.rmtree(gone, ignore_errors=True)
            removed.append(version["id"])
        return removed


def engine_at(root: Path, holder: str, version: str | None):
    """(version id, a function building the view engine over that version of the node's store).
    ``None`` is the one served now: the ``current`` link is re-read, so a running node follows
    each ingest, and the engine is built from the version's own folder, never through the link,
    so an engine is always the version it is cached under even when an ingest switches
    mid-load. A named version must be one the node keeps (retention may have let it go), else
    one refusal line. The study re-keying key and the view definitions stay the node's own."""
    from workbench.paths import Space
    from workbench.views import ViewEngine

    store = VersionStore(root, holder)
    if version is None:
        version = store.current()
        if version is None:  # an enrolled store never ingested: no versions yet
            return None, lambda: ViewEngine(Space(root))
    elif not isinstance(version, str) or "/" in version or version.startswith(".") \
            or version not in {v["id"] for v in store.versions()}:
        raise WorkbenchUserError(
            f"holder {holder} does not keep dataset version {str(version)[:64]!r} (its "
            "retention let it go, or it never existed); re-run on today's data instead.",
            reason="unknown-version")
    folder = store.path(version)

    def build():
        from workbench.catalog.models import Dataset
        from workbench.catalog.store import Catalog, _load_dir
        from workbench.space.linkage import study_rekey_key

        node = Space(root)
        catalog = Catalog(datasets=_load_dir(folder / "datasets", Dataset),
                          views=Catalog.load(node).views)
        # Space(folder).holder_dir(holder) is the version's own holders/<holder>/
        return ViewEngine(Space(folder), catalog, rekey_key=study_rekey_key(node))
    return version, build
