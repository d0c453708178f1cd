"""The researcher's JupyterLab extension, prebuilt: study banner, catalog panel, "My release
requests" and "Request release" on an output (source: ``labextension/`` at the repository root).

Shipped built, so installing the package and ``make demo`` need no node: a study server finds it
through ``LabApp.extra_labextensions_path = [LABEXTENSIONS]`` (workbench.hub.singleuser), which
holds ``workbench-lab/`` with the ``package.json`` and ``static/`` that ``jupyter builder build``
wrote. ``make labextension`` rebuilds it and records the digest of the source it was built from
in ``build.json``; tests/hub/test_labextension.py fails when the source changed since.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

NAME = "workbench-lab"
LABEXTENSIONS = Path(__file__).resolve().parent  # a labextensions dir: it holds NAME/
PREBUILT = LABEXTENSIONS / NAME
BUILD_RECORD = LABEXTENSIONS / "build.json"
# what the build reads: the extension's own files, not node_modules or the compiled lib/
SOURCE_FILES = ("package.json", "package-lock.json", "tsconfig.json", "src", "style")


def source_digest(source: Path) -> str:
    """SHA-256 over the extension's source files (path and bytes of each, in path order)."""
    digest = hashlib.sha256()
    files = []
    for name in SOURCE_FILES:
        path = source / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def record_build(source: Path) -> dict:
    """After a build: write which source (digest) and JupyterLab the prebuilt output is of."""
    from jupyterlab import __version__ as jupyterlab_version

    built = json.loads((PREBUILT / "package.json").read_text())["jupyterlab"]["_build"]
    record = {"name": NAME, "source_sha256": source_digest(source),
              "jupyterlab": jupyterlab_version, "load": built["load"]}
    BUILD_RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _jupyter_labextension_paths():
    """Where the prebuilt extension is, for ``jupyter labextension develop`` and friends."""
    return [{"src": NAME, "dest": NAME}]  # src: relative to this package

