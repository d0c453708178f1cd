"""The producing code a reviewer sees comes from the audit proxy's records, never from the ids the
kernel put in its release request (workbench.review.snapshot.producing_cells)."""

from __future__ import annotations

import pytest

from workbench import accounts
from workbench.provenance.reader import ProvenanceRecord
from workbench.review.snapshot import producing_cells, study_executions

STUDY = "cml-tki"
PROXY = {"uid": 0, "user": "root"}


@pytest.fixture(scope="module")
def kernel_uid():
    return accounts.ensure_user(accounts.study_kernel_user(STUDY))[0]


class Log:
    """A provenance log in the making: records in order, as the collector numbers them."""

    def __init__(self):
        self.records: list[ProvenanceRecord] = []

    def add(self, kind: str, writer: dict = PROXY, **fields) -> ProvenanceRecord:
        seq = len(self.records) + 1
        record = ProvenanceRecord(seq, f"{seq:064x}", kind, 1, f"t{seq:04d}", writer,
                                  {"study": STUDY, **fields})
        self.records.append(record)
        return record

    def kernel(self, kernel_id: str, uid: int, writer: dict = PROXY) -> None:
        self.add("kernel-lifecycle", writer, kernel_id=kernel_id, event="start", uid=uid)

    def cell(self, kernel_id: str, msg_id: str, code: str, writer: dict = PROXY) -> None:
        self.add("cell-execution", writer, kernel_id=kernel_id, msg_id=msg_id, code=code,
                 status="submitted", user="alice")

    def comm(self, kernel_id: str, msg_id: str) -> None:
        """A widget's comm message as the audit proxy records it: its type, a digest, no code
        and no completion (``proxy.py``)."""
        self.add("cell-execution", kernel_id=kernel_id, msg_id=msg_id, status="submitted",
                 user="alice", source="browser", reason="comm-msg", code_sha256="0" * 64)

    def done(self, kernel_id: str, msg_id: str) -> None:
        self.add("cell-execution", kernel_id=kernel_id, msg_id=msg_id, status="ok")

    def request(self, request_id: str = "rq-1",
                writer: dict = {"uid": 990, "user": accounts.AIRLOCK}) -> None:  # noqa: B006
        self.add("release-request", writer, request_id=request_id, status="ok")

    def resolve(self, claimed: dict | None = None, request_id: str = "rq-1") -> dict:
        return producing_cells(self.records, study_executions(self.records, STUDY), request_id,
                               claimed or {})


def test_the_running_cell_is_the_producer_whatever_the_kernel_claims(kernel_uid):
    log = Log()
    log.kernel("k-1", kernel_uid)
    log.cell("k-1", "m-benign", "print('hello')")
    log.done("k-1", "m-benign")
    log.cell("k-1", "m-evil", "wb.release.request(leak)")
    log.add("view-read", {"uid": 991, "user": accounts.GATEWAY}, view="cml_cohort", rows=5)
    log.request()
    log.done("k-1", "m-evil")
    found = log.resolve({"kernel_id": "k-1", "msg_id": "m-benign"})
    assert found["status"] == "resolved" and not found["claim_matches"]
    assert [c["msg_id"] for c in found["cells"]] == ["m-benign", "m-evil"]
    assert found["cells"][-1]["code"] == "wb.release.request(leak)"
    assert "claimed cell m-benign" in found["note"] and "show cell m-evil" in found["note"]
    assert [r["view"] for r in found["reads"]] == ["cml_cohort"]
    honest = log.resolve({"kernel_id": "k-1", "msg_id": "m-evil"})
    assert honest["claim_matches"] and honest["note"] == ""


def test_nothing_running_is_said_plainly(kernel_uid):
    log = Log()
    log.kernel("k-1", kernel_uid)
    log.cell("k-1", "m-1", "x = 1")
    log.done("k-1", "m-1")
    log.request()
    found = log.resolve({"kernel_id": "k-1", "msg_id": "m-1"})  # a claim is not a record
    assert found["status"] == "not-found" and found["cells"] == []
    assert "not known" in found["note"]
    assert log.resolve(request_id="rq-unknown")["status"] == "not-found"


def test_a_widgets_comm_messages_are_not_cells_running_for_ever(kernel_uid):
    """JupyterLab's widget manager talks to a widget (``wb.catalog()``) by comm messages. Each
    has a submitted record and never a completion: counted as cells, they made every later
    request ambiguous and its requester unknown (found in the browser)."""
    log = Log()
    log.kernel("k-1", kernel_uid)
    log.cell("k-1", "m-catalog", "wb.catalog()")
    log.done("k-1", "m-catalog")
    for i in range(5):
        log.comm("k-1", f"m-comm-{i}")
    log.cell("k-1", "m-km", "wb.release.request(km)")
    log.request()
    log.done("k-1", "m-km")
    found = log.resolve({"kernel_id": "k-1", "msg_id": "m-km"})
    assert found["status"] == "resolved" and found["requester"] == "alice"
    assert [c["msg_id"] for c in found["cells"]] == ["m-catalog", "m-km"]
    assert found["claim_matches"]


def test_two_kernels_running_at_once_is_ambiguous(kernel_uid):
    log = Log()
    log.kernel("k-1", kernel_uid)
    log.kernel("k-2", kernel_uid)
    log.cell("k-1", "m-1", "a()")
    log.cell("k-2", "m-2", "b()")
    log.request()
    found = log.resolve({"kernel_id": "k-1", "msg_id": "m-1"})
    assert found["status"] == "ambiguous"
    assert sorted(c["msg_id"] for c in found["cells"]) == ["m-1", "m-2"]


def test_records_not_written_by_the_audit_proxy_or_the_airlock_do_not_count(kernel_uid):
    log = Log()
    other = {"uid": 4242, "user": "wbv-cml-tki"}  # e.g. the review service: not a study server
    dashboard_uid = kernel_uid + 100000  # a kernel started under another account
    log.kernel("k-dash", dashboard_uid)
    log.cell("k-dash", "m-dash", "dashboards.release_queue(ctx)")
    log.kernel("k-fake", kernel_uid, writer=other)
    log.cell("k-fake", "m-fake", "print('benign')", writer=other)
    log.kernel("k-1", kernel_uid)
    log.cell("k-1", "m-forged-writer", "print('benign')", writer=other)
    log.request()
    assert log.resolve()["status"] == "not-found"
    log.cell("k-1", "m-real", "wb.release.request(x)")
    log.request("rq-2", writer=other)  # an arrival the airlock did not write
    assert log.resolve(request_id="rq-2")["status"] == "not-found"


def test_the_person_is_the_audited_cells_user_and_a_missing_claim_is_no_disagreement(
        kernel_uid):
    """The request's acting account is the study kernel's: the person who asked is the hub user
    the audit proxy recorded for the producing cell. A kernel that sent no kernel id (only its
    cell's message id) does not contradict the records."""
    log = Log()
    log.kernel("k-1", kernel_uid)
    log.cell("k-1", "m-1", "wb.release.request(km, 'km', 'd')")
    log.request()
    log.done("k-1", "m-1")
    found = log.resolve({"kernel_id": None, "msg_id": "m-1"})
    assert found["status"] == "resolved" and found["claim_matches"] and found["note"] == ""
    assert found["requester"] == "alice"
    wrong = log.resolve({"kernel_id": None, "msg_id": "m-other"})
    assert not wrong["claim_matches"] and "claimed cell m-other" in wrong["note"]
    assert "kernel None" not in wrong["note"]
