"""Dataset versions at a node (workbench/node/versions.py): every ingest is a new version with
its content hash, rows, quality score and time; the holder's ``retention`` rule decides which
old ones go, never the one served."""

from __future__ import annotations

import os
import pwd
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from tests.node import ingest_support as support
from workbench.node.versions import VersionStore


@pytest.fixture(scope="module")
def built():
    root, space = support.build("wb-versions-")
    yield root, space
    shutil.rmtree(root, ignore_errors=True)


def _rules(space, text: str) -> None:
    path = space.node_dir("insurer") / "rules.yaml"
    path.write_text(text)
    user = pwd.getpwnam("wbh-insurer")
    os.chown(path, user.pw_uid, user.pw_gid)


def _kept(space) -> list[str]:
    return [v["id"] for v in VersionStore(space.node_dir("insurer"), "insurer").versions()]


def test_every_ingest_is_a_version_and_retention_keeps_the_newest(built):
    root, space = built
    _rules(space, "retention: {versions: 2}\n")
    made = []
    for _ in range(3):
        done = support.ingest(space, "insurer", root / "src-insurer")
        assert done.returncode == 0, done.stderr
        made.append(support.version_json(space, "insurer"))
    # the adopted enrolled store and the first two ingests went; the newest two stay
    assert _kept(space) == [made[1]["id"], made[2]["id"]]
    assert "retention: removed version(s)" in done.stdout
    assert support.state(space, "insurer")["current"] == made[2]["id"]
    first = made[0]
    assert first["content_hash"] == made[2]["content_hash"]  # same files, new version
    assert len({v["id"] for v in made}) == 3
    assert {"rows", "quality_score", "created_at", "datasets"} <= set(first)
    assert 0 < first["quality_score"] <= 1 and first["rows"] > 0


def test_young_versions_are_kept_until_they_age(built):
    root, space = built
    _rules(space, "retention: {versions: 1, days: 30}\n")
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    kept = _kept(space)
    assert len(kept) == 3, "a version younger than 30 days was removed"
    store = VersionStore(space.node_dir("insurer"), "insurer")
    removed = store.prune(1, 30, now=datetime.now(UTC) + timedelta(days=31))
    assert removed == kept[:-1] and _kept(space) == kept[-1:] == [store.current()]


def test_a_bad_retention_rule_is_one_line_and_writes_nothing(built):
    root, space = built
    _rules(space, "studies: ['*']\nretention:\n  versions: 0\n")
    before = support.state(space, "insurer")
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert "\n" not in line and "rules.yaml, line 3, field retention.versions" in line, line
    assert support.state(space, "insurer") == before
    _rules(space, "retention: {versions: 2}\n")


def test_a_logged_view_version_is_traced_to_the_kept_version_it_read(built):
    from workbench.catalog.store import Catalog
    from workbench.run.rerun import view_version
    from workbench.run.versions import ran_on

    root, space = built
    _rules(space, "retention: {versions: 2}\n")
    done = support.ingest(space, "insurer", root / "src-insurer")
    assert done.returncode == 0, done.stderr
    old_id = support.version_json(space, "insurer")["id"]
    logged = view_version(Catalog.load(space), "cml_costs")  # what a run would have recorded
    changed = support.copy_sources(root, "insurer", "withdrawn")
    claims = changed / "claims.csv"
    lines = claims.read_text().splitlines(keepends=True)
    claims.write_text("".join(lines[:1] + lines[2:]))  # the holder withdrew one claim
    done = support.ingest(space, "insurer", changed)
    assert done.returncode == 0, done.stderr
    new_id = support.version_json(space, "insurer")["id"]
    catalog = Catalog.load(space)
    now = view_version(catalog, "cml_costs")
    assert now != logged
    assert ran_on(space, catalog, "cml_costs", logged) == {"insurer": old_id}
    assert ran_on(space, catalog, "cml_costs", now) == {"insurer": new_id}
    # once the holder's retention lets the old version go, nothing can give it back
    _rules(space, "retention: {versions: 1}\n")
    done = support.ingest(space, "insurer", changed)
    assert done.returncode == 0, done.stderr
    assert ran_on(space, Catalog.load(space), "cml_costs", logged) is None
