"""Every synthetic holder's raw files, as CSV and as Parquet, ingested at its node give the very
bytes ``workbench init`` built centrally from the same generator output (same pseudonyms, same
mapping): the node's reading of the files loses nothing (a product code keeps its leading zero,
day-first dates stay dates, integer claims dates stay integers)."""

from __future__ import annotations

import shutil

import pytest

from tests.node import ingest_support as support

HOLDERS = ("hospital-a", "hospital-b", "insurer", "insurer-b", "pharma")


@pytest.fixture(scope="module")
def built():
    import os
    import tempfile
    from pathlib import Path

    from workbench.node.enroll import enroll_node
    from workbench.node.ingest import write_sources
    from workbench.space.build import init_space

    root = Path(tempfile.mkdtemp(prefix="wb-ingest-sources-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = init_space(root / "space", patients=400, seed=8, echo=lambda _l: None)
    for holder in HOLDERS:
        enroll_node(space, holder)
        for fmt in ("csv", "parquet"):
            write_sources(root / f"{holder}-{fmt}", holder, 400, 8, fmt)
            support.give(root / f"{holder}-{fmt}", holder)
    yield root, space
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("holder", HOLDERS)
def test_an_ingest_rebuilds_the_central_store_byte_for_byte(built, holder, fmt):
    root, space = built
    done = support.ingest(space, holder, root / f"{holder}-{fmt}")
    assert done.returncode == 0, done.stderr
    versions = support.versions(space, holder)
    central = next(v for v in versions if v.get("adopted"))
    ingested = support.version_json(space, holder)
    assert ingested["quarantined_rows"] == 0
    assert {d: v["version"] for d, v in ingested["datasets"].items()} == \
        {d: v["version"] for d, v in central["datasets"].items()}
    assert ingested["content_hash"] == central["content_hash"]
