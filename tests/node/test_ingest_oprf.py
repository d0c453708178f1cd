"""Ingest with the OPRF linkage service's pseudonyms (workbench/linkage): the node blinds, the
service evaluates, the node's store gets pseudonyms that link across holders exactly as the
space's HMAC ones did; without the service, ``auto`` falls back to the HMAC scheme and says so."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from tests.node import ingest_support as support


@pytest.fixture(scope="module")
def built():
    from workbench.linkage.process import start_linkage

    root, space = support.build("wb-ingest-oprf-")
    service = start_linkage(space)
    try:
        yield root, space, service
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def _persons(space, holder: str, version: str, table: str) -> set[str]:
    path = (space.node_dir(holder) / "versions" / version / "holders" / holder /
            f"{table}.parquet")
    return set(pq.read_table(path, columns=["person_id"]).column(0).to_pylist())


def test_oprf_pseudonyms_link_holders_as_the_hmac_ones_did(built):
    root, space, _service = built
    made = {}
    for holder in ("insurer", "pharma"):
        done = support.ingest(space, holder, root / f"src-{holder}", "--pseudonyms", "oprf")
        assert done.returncode == 0, done.stderr
        assert "pseudonyms: oprf" in done.stdout
        made[holder] = support.version_json(space, holder)
        assert made[holder]["pseudonyms"] == "oprf"
    adopted = {h: next(v["id"] for v in support.versions(space, h) if v.get("adopted"))
               for h in made}
    oprf = (_persons(space, "insurer", made["insurer"]["id"], "person"),
            _persons(space, "pharma", made["pharma"]["id"], "drug_exposure"))
    hmac = (_persons(space, "insurer", adopted["insurer"], "person"),
            _persons(space, "pharma", adopted["pharma"], "drug_exposure"))
    assert not (oprf[0] & hmac[0]), "the OPRF pseudonyms are the HMAC ones"
    assert [len(s) for s in oprf] == [len(s) for s in hmac]
    assert len(oprf[0] & oprf[1]) == len(hmac[0] & hmac[1]) > 0


def test_an_id_the_service_gives_no_pseudonym_for_stops_the_ingest(built):
    """The OPRF client takes placeholder text ('None') for a missing id: such a row would be
    stored without a pseudonym, so the ingest refuses instead."""
    root, space, _service = built
    folder = support.copy_sources(root, "insurer", "placeholder-id")
    members = folder / "members.csv"
    lines = members.read_text().splitlines(keepends=True)
    lines[2] = '"None"' + lines[2][lines[2].index(","):]
    members.write_text("".join(lines))
    support.give(folder, "insurer")
    before = support.state(space, "insurer")
    done = support.ingest(space, "insurer", folder, "--pseudonyms", "oprf")
    assert done.returncode == 2 and "gave no pseudonym for 1 distinct ids" in done.stderr
    assert support.state(space, "insurer") == before


def test_auto_falls_back_to_hmac_without_the_service(built):
    root, space, service = built
    service.stop()
    done = support.ingest(space, "insurer", root / "src-insurer")  # --pseudonyms auto
    assert done.returncode == 0, done.stderr
    assert support.version_json(space, "insurer")["pseudonyms"] == "hmac"
    refused = support.ingest(space, "insurer", root / "src-insurer", "--pseudonyms", "oprf")
    assert refused.returncode == 2 and "OPRF linkage service" in refused.stderr
