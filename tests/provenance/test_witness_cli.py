"""The witness commands as an operator and an admin run them: `workbench provenance witness init /
serve / show`, `witnesses add / list / remove`, `cosign` and `verify`; mistakes get one line."""

from __future__ import annotations

import json
import re
import subprocess

from workbench.provenance.service import start_collector
from workbench.runtime import socket_answers, start_service, workbench_command


def wb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(workbench_command(*args), capture_output=True, text=True, check=False)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_operator_and_admin_commands(space, open_tmp):
    data = ("--data-dir", str(space.root))
    handle = start_collector(space, sign_every=3, sign_interval=3600)
    try:
        client = handle.client()
        for i in range(7):
            client.append("login", {"user": f"u{i}", "event": "login"})
        client.close()
        assert "no witnesses listed" in wb("provenance", "witnesses", "list", *data).stdout
        state = open_tmp / "hospital-a"
        created = wb("provenance", "witness", "init", "--state", str(state), "--id", "hospital-a",
                     *data)
        assert created.returncode == 0, created.stderr
        key = re.search(r"--key (\S+)", created.stdout).group(1)
        one_line_error(wb("provenance", "witnesses", "add", "hospital-a", "--key", "AAAA", *data),
                       "--key for hospital-a", "Ed25519")
        one_line_error(wb("provenance", "witnesses", "add", "hospital-a", "--key", key,
                          "--quorum", "2", *data), "quorum", "between 1 and")
        socket_path = open_tmp / "w.sock"
        added = wb("provenance", "witnesses", "add", "hospital-a", "--key", key, "--endpoint",
                   f"unix:{socket_path}", "--grace", "120", *data)
        assert added.returncode == 0 and "quorum 1 of 1, grace 120 s" in added.stdout, added
        assert oct(space.witnesses.stat().st_mode & 0o777) == "0o644"
        listed = wb("provenance", "witnesses", "list", *data).stdout
        assert "hospital-a" in listed and f"unix:{socket_path}" in listed
        with start_service("witness", workbench_command(
                "provenance", "witness", "serve", "--state", str(state), "--socket",
                str(socket_path)), lambda _h: socket_answers(socket_path), (socket_path,)):
            rounds = wb("provenance", "cosign", *data)
        assert rounds.returncode == 0 and "witness hospital-a cosigned the head at size 6" in \
            rounds.stdout, rounds
    finally:
        handle.stop()
    verified = wb("provenance", "verify", "--json", *data)
    report = json.loads(verified.stdout)
    assert verified.returncode == 0 and report["witnessed_size"] == 6, verified
    shown = wb("provenance", "witness", "show", "--state", str(state))
    assert shown.returncode == 0 and json.loads(shown.stdout)["tree_size"] == 6
    # a broken list is one line naming the file and the field, for every reader of it
    space.witnesses.write_text(json.dumps({"witnesses": [{"id": "hospital-a",
                                                          "public_key": key}], "quorum": 3}))
    one_line_error(wb("provenance", "verify", *data), str(space.witnesses), "'quorum'")
    space.witnesses.write_text("{not json")
    one_line_error(wb("provenance", "cosign", *data), str(space.witnesses))
    space.witnesses.write_text(json.dumps({"witnesses": [{"id": "hospital-a",
                                                          "public_key": key}], "quorum": 1}))
    removed = wb("provenance", "witnesses", "remove", "hospital-a", *data)
    assert "not witnessed" in removed.stdout and not space.witnesses.exists()
    assert "no witnesses listed" in wb("provenance", "verify", *data).stdout
    one_line_error(wb("provenance", "witness", "show", "--state", str(open_tmp / "nothing")),
                   "witness init")
