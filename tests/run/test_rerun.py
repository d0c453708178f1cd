"""`workbench rerun` from the provenance log: a changed dataset makes the cells that read it (and
what follows from them) stale, with exit code 3; --until stops at a record; a non-deterministic
cell is reported, not hidden; a logged release request is checked but not sent to the airlock
again; the view versions rerun computes are the gateway's."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import pyarrow.parquet as pq
import pytest
from run_support import NOTEBOOKS, workbench

from workbench.catalog.store import Catalog
from workbench.provenance.reader import ProvenanceReader
from workbench.run.rerun import view_version
from workbench.services import socket_answers, space_services
from workbench.views.engine import ViewEngine

pytestmark = pytest.mark.slow
STUDY = "lung-validation"


def _args(env: dict) -> list[str]:
    return ["--data-dir", env["space"].root, "--policy", env["policy"]]


def _rerun(env: dict, *extra: str) -> tuple[int, dict]:
    result = workbench("rerun", "--study", STUDY, "--json", *extra, *_args(env))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def change_dataset(space, dataset_id: str) -> None:
    """What a holder's new release does: a rewritten parquet file and a new catalog version."""
    catalog = Catalog.load(space)
    dataset = catalog.datasets[dataset_id]
    path = catalog.dataset_path(space, dataset)
    stat = path.stat()
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # the holder withdrew one patient
    os.chown(path, stat.st_uid, stat.st_gid)
    os.chmod(path, stat.st_mode & 0o777)
    Catalog.write(space, dataset.model_copy(
        update={"version": hashlib.sha256(path.read_bytes()).hexdigest()}))


@contextlib.contextmanager
def _services(env: dict):
    """The space's services up, as ``workbench demo`` leaves them: a run or re-run finds them
    answering and leaves them alone, so they start once, not once per command (``workbench run``
    starting and stopping its own: test_run_headless.py; a re-run doing so: the staleness test)."""
    with space_services(env["space"], env["policy"], echo=lambda _l: None) as up:
        assert up == ["provenance collector", "data gateway", "key holder", "aggregator",
                      "airlock"]
        yield env


@pytest.fixture
def running(public_space):
    with _services(public_space) as env:
        yield env


def _shared(result) -> None:
    """The command used the running services (it started none of its own)."""
    assert "started (pid" not in result.stdout + result.stderr, result.stdout[-2000:]


def test_rerun_reports_staleness_after_a_dataset_changes(public_space):
    space = public_space["space"]
    with _services(public_space):  # the run and the first re-run share one start
        run = workbench("run", NOTEBOOKS / "lung_validation.ipynb", "--study", STUDY, "--user",
                        "alice", *_args(public_space))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        _shared(run)
        code, report = _rerun(public_space)
        assert code == 0 and report["counts"]["match"] == len(report["cells"])
    other = workbench("rerun", "--study", "cml-tki", *_args(public_space))
    assert other.returncode == 2 and "has no logged cells" in other.stderr

    change_dataset(space, "ncctg_inst_01.lung")
    assert not socket_answers(space.collector_socket)
    code, report = _rerun(public_space)
    assert not socket_answers(space.collector_socket)  # rerun stopped what it started
    assert code == 3, report
    statuses = [c["status"] for c in report["cells"]]
    reading = [c for c in report["cells"] if "lung_survival" in c["views"]]
    assert reading and all(c["status"] == "stale" for c in reading)
    assert all("lung_survival" in c["detail"] for c in reading)
    assert statuses[0] == "match"  # the parameters: no data read
    # the imports cell describes the view (a recorded read of its version): stale, same output
    assert statuses[1] == "stale" and "outputs still match" in report["cells"][1]["detail"]
    assert report["counts"]["differs"] == 0


def test_until_stops_at_a_record_and_unreproducible_output_is_reported(running):
    public_space = running
    notebook = public_space["base"] / "clock.ipynb"
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "total = sum(range(10))\ntotal",
        "import time\ntime.time_ns()",  # differs on every run
        "total * 2")]
    nbformat.write(nb, notebook)
    run = workbench("run", notebook, "--study", STUDY, "--user", "alice", *_args(public_space))
    assert run.returncode == 0, run.stderr[-2000:]
    _shared(run)
    with ProvenanceReader(public_space["space"]) as reader:
        submitted = [r.id for r in reader.records(study=STUDY, kinds=["cell-execution"])
                     if r.fields.get("status") == "submitted"]
    code, report = _rerun(public_space)
    assert code == 1
    assert [c["status"] for c in report["cells"]] == ["match", "differs", "match"]
    assert "not deterministic" in report["cells"][1]["detail"]
    code, report = _rerun(public_space, "--until", submitted[0])
    assert code == 0 and len(report["cells"]) == 1
    unknown = workbench("rerun", "--study", STUDY, "--until", "ab" * 32, *_args(public_space))
    assert unknown.returncode == 2 and "no logged cell" in unknown.stderr


def _airlock_requests(space) -> list[tuple[str, str]]:
    from workbench.release.store import AirlockStore

    store = AirlockStore(space.airlock / "airlock.sqlite")
    try:
        return [(r["id"], r["state"]) for r in store.list(STUDY)]
    finally:
        store.close()


def test_a_rerun_checks_release_requests_without_submitting_them(running):
    """A logged release request is checked again in the re-run (same rules, output digest
    compared) but nothing new reaches the airlock's queue, and the report says so."""
    import nbformat

    public_space = running

    space, notebook = public_space["space"], public_space["base"] / "release.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in (
        "import workbench as wb",
        'km = wb.secure.kaplan_meier("lung_survival", duration_col="time", event_col="status")\n'
        "curve = wb.release.coarsen_survival(km, k=5)",
        'req = wb.release.request(curve, "lung_km", "NCCTG lung survival, coarsened",\n'
        '                         view="lung_survival")\nprint(req.state)')]
    nbformat.write(nb, notebook)
    run = workbench("run", notebook, "--study", STUDY, "--user", "alice", *_args(public_space))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    _shared(run)
    requests = _airlock_requests(space)
    assert len(requests) == 1 and requests[0][1] == "submitted"
    request_id = requests[0][0]

    code, report = _rerun(public_space)
    assert _airlock_requests(space) == requests  # no new request, none changed
    assert code == 0, report
    release_cell = report["cells"][2]
    assert release_cell["status"] == "match"
    (release,) = release_cell["releases"]
    assert release["request"] == request_id and release["name"] == "lung_km"
    assert release["resubmitted"] is False and release["same"]
    assert release["check"].startswith("rerun-")
    assert "not re-submitted" in release_cell["detail"]
    assert report["release_requests_not_resubmitted"] == 1
    assert all(c["releases"] == [] for c in report["cells"][:2])

    # a second re-run compares with the original again, not with the first re-run's check
    text = workbench("rerun", "--study", STUDY, *_args(public_space))
    assert text.returncode == 0, text.stdout[-2000:] + text.stderr[-2000:]
    _shared(text)
    assert f"release request {request_id} 'lung_km' not re-submitted" in text.stdout
    assert _airlock_requests(space) == requests
    with ProvenanceReader(space) as reader:
        checks = [r.fields for r in reader.records(study=STUDY, kinds=["release-request"])
                  if r.fields.get("reason") == "rerun-not-submitted"]
    assert len(checks) == 2 and all(c["status"] == "denied" for c in checks)


def test_a_rerun_kernel_does_not_start_without_the_rerun_socket(public_space):
    """Fail closed: no re-run socket (no gateway, or one that predates it), no re-run kernel -
    it never falls back to the study socket, where release requests would be submitted."""
    import asyncio

    from workbench.errors import WorkbenchUserError
    from workbench.gateway import rerun_socket
    from workbench.run.kernel import sandbox_kernel_manager

    space = public_space["space"]
    assert not rerun_socket(space, STUDY).exists()
    with sandbox_kernel_manager(space, STUDY, rerun=True) as km:
        with pytest.raises(WorkbenchUserError) as refused:
            asyncio.run(km.start_kernel())
    assert refused.value.reason == "rerun-unavailable"
    assert not km.has_kernel


def test_rerun_without_a_log_is_a_user_error(public_space):
    result = workbench("rerun", "--study", "cml-tki", *_args(public_space))
    assert result.returncode == 2 and "No provenance store" in result.stderr
    assert "Traceback" not in result.stderr


def test_view_versions_are_computed_as_the_view_engine_computes_them(public_space):
    space = public_space["space"]
    engine = ViewEngine(space)
    catalog = Catalog.load(space)
    assert engine.versions and all(view_version(catalog, v) == version
                                   for v, version in engine.versions.items())
    assert view_version(catalog, "no_such_view") is None
