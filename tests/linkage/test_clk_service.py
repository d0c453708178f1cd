"""The linkage unit's CLK endpoints on a real linkage service process (workbench/linkage/clk.py):
matching against the reference index, one-to-one, replacement per node account, persistence,
refusals, the quota, and what it keeps."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import struct

import pytest

from tests.linkage.conftest import enrol, needs_root, open_space, run_as
from workbench import linkage
from workbench.errors import WorkbenchUserError
from workbench.linkage import clk, fuzzy
from workbench.linkage.process import start_linkage
from workbench.unixhttp import UnixHTTPConnection

SECRET = bytes(range(32))
PEOPLE = [
    {"first_name": "Katharina", "last_name": "Schneider", "birth_date": "1961-09-08"},
    {"first_name": "Thomas", "last_name": "Müller", "birth_date": "1975-03-21"},
    {"first_name": "Maria", "last_name": "Wagner", "birth_date": "1988-12-01"},
]
NAMES = ["a1" * 12, "b2" * 12, "c3" * 12]


def encode(*records):
    return fuzzy.encode(records, SECRET)


def post(sock, route: str, body: bytes) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(str(sock), 10)
    try:
        conn.request("POST", route, body=body,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture()
def fresh():
    space = open_space()
    for holder in ("lt-hospital", "lt-insurer"):
        enrol(space, holder)
    handle = start_linkage(space, per_day=1000)
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(space.root, ignore_errors=True)


def test_a_match_answers_the_reference_pseudonym_or_none(fresh):
    space = fresh.space
    assert clk.upload_reference(space, NAMES, encode(*PEOPLE)) == {"entries": 3}
    typo = {**PEOPLE[0], "last_name": "Schnieder"}
    stranger = {"first_name": "Olga", "last_name": "Nowak", "birth_date": "1933-02-17"}
    names, scores, facts = clk.match(space, encode(PEOPLE[1], typo, stranger))
    assert names == [NAMES[1], NAMES[0], None]
    assert scores[0] == 1.0 and fuzzy.THRESHOLD <= scores[1] < 1.0 and scores[2] is None
    assert facts == {"threshold": fuzzy.THRESHOLD, "reference_persons": 3}


def test_matches_are_one_to_one_best_first(fresh):
    space = fresh.space
    clk.upload_reference(space, NAMES[:1], encode(PEOPLE[0]))
    typo = {**PEOPLE[0], "first_name": "Katarina"}
    names, _, _ = clk.match(space, encode(typo, PEOPLE[0]))
    assert names == [None, NAMES[0]]  # the exact spelling wins; the pseudonym is given once


def test_several_holders_entries_for_one_person_count_once(fresh):
    space = fresh.space
    clk.upload_reference(space, NAMES[:1], encode(PEOPLE[0]))  # as root
    run_as("wbh-lt-insurer", f"""
        import json
        from workbench.linkage import clk, fuzzy
        rec = {{"first_name": "Katharina", "last_name": "Schneidr", "birth_date": "1961-09-08"}}
        print(json.dumps(clk.upload_reference({str(space.root)!r}, [{NAMES[0]!r}],
                                              fuzzy.encode([rec], {SECRET!r}))))
    """)
    names, scores, facts = clk.match(space, encode(PEOPLE[0]))
    assert names == NAMES[:1] and scores == [1.0] and facts["reference_persons"] == 1


def test_an_upload_replaces_that_accounts_entries_only_and_survives_a_restart(fresh):
    space = fresh.space
    clk.upload_reference(space, NAMES[:2], encode(*PEOPLE[:2]))  # root's
    run_as("wbh-lt-insurer", f"""
        import json
        from workbench.linkage import clk, fuzzy
        print(json.dumps(clk.upload_reference({str(space.root)!r}, [{NAMES[2]!r}],
                                              fuzzy.encode([{PEOPLE[2]!r}], {SECRET!r}))))
    """)
    clk.upload_reference(space, NAMES[:1], encode(PEOPLE[0]))  # root again: one entry left
    assert clk.match(space, encode(*PEOPLE))[0] == [NAMES[0], None, NAMES[2]]
    folder = linkage.state_dir(space) / "clk"
    assert sorted(p.name for p in folder.iterdir()) == ["root.ref", "wbh-lt-insurer.ref"]
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
        assert pwd.getpwuid(path.stat().st_uid).pw_name == linkage.ACCOUNT
    assert (folder / "root.ref").read_bytes() == bytes.fromhex(NAMES[0]) + \
        encode(PEOPLE[0])[0].tobytes()  # pseudonyms and CLKs: nothing else
    fresh.stop()
    with start_linkage(space) as again:
        assert clk.match(again.space, encode(*PEOPLE))[0] == [NAMES[0], None, NAMES[2]]
        assert again.info()["clk"]["reference_persons"] == 2


def test_bad_parts_and_entries_are_refused_and_nothing_is_kept(fresh):
    space, sock = fresh.space, fresh.socket
    clk.upload_reference(space, NAMES[:1], encode(PEOPLE[0]))
    entry = bytes.fromhex(NAMES[1]) + encode(PEOPLE[1])[0].tobytes()
    refused = {
        "zero CLK": (clk.REFERENCE + "?part=0&final=1", bytes.fromhex(NAMES[1]) + bytes(128)),
        "zero pseudonym": (clk.REFERENCE + "?part=0&final=1", bytes(12) + entry[12:]),
        "not whole": (clk.REFERENCE + "?part=0&final=1", entry[:-1]),
        "out of order": (clk.REFERENCE + "?part=1&final=1", entry),
        "match not whole": (clk.MATCH + "?part=0&final=1", bytes(100)),
    }
    reasons = {}
    for label, (route, body) in refused.items():
        status, data = post(sock, route, body)
        assert status == 400, label
        reasons[label] = json.loads(data)["error"]["reason"]
    assert reasons == {"zero CLK": "invalid-entry", "zero pseudonym": "invalid-entry",
                       "not whole": "bad-batch", "out of order": "bad-part",
                       "match not whole": "bad-batch"}
    assert clk.match(space, encode(PEOPLE[0], PEOPLE[1]))[0] == [NAMES[0], None]


def test_parts_make_one_upload_and_one_match(fresh, monkeypatch):
    space = fresh.space
    monkeypatch.setattr(clk, "PART", 1)  # the client sends one CLK per part
    clk.upload_reference(space, NAMES, encode(*PEOPLE))
    answer = clk.match(space, encode(*reversed(PEOPLE)))
    assert answer[0] == list(reversed(NAMES))
    assert fresh.output().count('"event": "clk-match"') == 1  # one match, over three parts


def test_the_days_clk_quota_is_kept_per_node(fresh):
    space = fresh.space
    clk.upload_reference(space, NAMES, encode(*PEOPLE))
    many = encode(*PEOPLE) * 300  # 900 of the 1000 a day
    clk.match(space, many)
    with pytest.raises(WorkbenchUserError) as refused:
        clk.match(space, many)
    assert refused.value.reason == "quota-exhausted"
    state = linkage.state_dir(space) / "clk-state.json"
    counts = json.loads(state.read_text())["days"]
    (day, peers), = counts.items()
    assert peers["root"]["elements"] == 900
    from click.testing import CliRunner

    from workbench.cli import cli

    shown = CliRunner().invoke(cli, ["linkage", "usage", "--clk", "--data-dir",
                                     str(space.root)])
    assert shown.exit_code == 0
    assert shown.output.splitlines()[0].split() == ["day", "account", "clks", "parts"]
    assert shown.output.splitlines()[1].split() == [day, "root", "900", "1"]


@needs_root
def test_a_node_account_gets_no_oracle_below_the_threshold(fresh):
    """An unmatched CLK gets no score (a guess close below the threshold would otherwise tell
    the guesser how close it is)."""
    space = fresh.space
    clk.upload_reference(space, NAMES[:1], encode(PEOPLE[0]))
    near = {**PEOPLE[0], "birth_date": "1972-04-30"}  # a namesake: Dice about 0.75
    body = encode(near)[0].tobytes()
    status, data = post(fresh.socket, clk.MATCH + "?part=0&final=1", body)
    assert status == 200 and 0.5 < fuzzy.dice(encode(near)[0], encode(PEOPLE[0])[0]) < 0.8
    assert data == bytes(12) + struct.pack(">H", 0)
    assert os.path.exists(fresh.socket)
