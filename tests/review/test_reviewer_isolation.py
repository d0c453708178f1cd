"""The reviewer's side is out of the researcher's reach (issue 22 item 7).

A malicious researcher controls everything their study kernel can write: the study workspace.
These tests plant modules there (named like libraries the dashboards import, the kernel's own
extension, ``sitecustomize``) and then open a dashboard exactly as the review service does (its
hub service description, its Voila configuration and prelaunch hook, a real sandboxed kernel):
no planted module may run, the dashboard kernel must not run as the study's kernel account nor
start in, or import from, anything a study account can write, and no reviewer token or service
secret may be reachable from it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
import types
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from workbench import accounts
from workbench.release.airlock import airlock_socket
from workbench.release.http import UnixHTTP
from workbench.review import voila_app
from workbench.review.services import hub_services
from workbench.sandbox.launcher import (
    dashboard_kernel_user,
    dashboard_server_user,
    shared_dashboard_server_user,
)
from workbench.sandbox.provisioner import PER_VISIT, prepare_workspace

pytestmark = pytest.mark.slow

STUDY = "cml-tki"
DASHBOARDS = Path(__file__).parents[2] / "workbench" / "notebooks" / "dashboards"
# Each planted file writes a marker named after itself into the workspace when it is imported.
PLANTED = ("ipywidgets.py", "pandas.py", "workbench_kernel.py", "sitecustomize.py",
           "usercustomize.py", "ipykernel_launcher.py")
STEAL = '''
import json as _j, os as _o, sys as _s
_ctx = _s.modules.get("workbench.review.context")
_loaded = getattr(_ctx, "_LOADED", {{}}) if _ctx else {{}}
with open({marker!r}, "w") as _f:
    _f.write(_j.dumps({{"uid": _o.getuid(), "token": _loaded.get("token"),
                       "env": dict(_o.environ)}}))
# then step aside for the real module, so the dashboard works and nothing looks wrong
_here = _o.path.dirname(_o.path.abspath(__file__))
_s.path[:] = [p for p in _s.path if _o.path.abspath(p or ".") != _here]
if __name__ == "__main__":
    import runpy as _r
    _r.run_module(__spec__.name, run_name="__main__", alter_sys=True)
else:
    import importlib as _i
    del _s.modules[__name__]
    _s.modules[__name__] = _i.import_module(__name__)
'''
PROBE = r'''
import json, os, stat, sys
def owners(path):
    path = os.path.abspath(path or os.getcwd())
    while not os.path.exists(path):
        path = os.path.dirname(path)
    chain = []
    while True:
        info = os.stat(path)
        chain.append([path, info.st_uid, stat.S_IMODE(info.st_mode)])
        if path == "/":
            return chain
        path = os.path.dirname(path)
def environs():
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found[pid] = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        except OSError as exc:
            found[pid] = type(exc).__name__
    return found
_loaded = sys.modules["workbench.review.context"]._LOADED
print("PROBE" + json.dumps({"uid": os.getuid(), "cwd": os.getcwd(), "env": dict(os.environ),
                            "token": _loaded.get("token"), "environs": environs(),
                            "path": {p: owners(p) for p in sys.path}}))
'''


@pytest.fixture(scope="module")
def service(review_env):
    if not accounts.is_root():
        pytest.fail("the isolation tests run as root (per-study accounts and the sandbox)")
    services, _ = hub_services(review_env.policy, review_env.space, review_env.policy_file)
    return next(s for s in services if s["name"] == "review")  # the shared service


@pytest.fixture
def planted(review_env):
    """What a researcher's kernel leaves in the study workspace (owned by its kernel account)."""
    kernel_uid, server_gid = accounts.ensure_user(accounts.study_kernel_user(STUDY))
    workspace = prepare_workspace(review_env.space, STUDY, kernel_uid)
    made = []
    for name in PLANTED:
        path = workspace / name
        path.write_text(STEAL.format(marker=str(workspace / f"stolen-{name}.json")))
        os.chown(path, kernel_uid, server_gid)
        made.append(path)
    pth = workspace / "planted.pth"
    pth.write_text(f"import os; open({str(workspace / 'stolen-pth.json')!r}, 'w').write('{{}}')\n")
    os.chown(pth, kernel_uid, server_gid)
    made.append(pth)
    yield workspace
    for path in made + sorted(workspace.glob("stolen-*.json")):
        path.unlink(missing_ok=True)


def _args(service) -> types.SimpleNamespace:
    command = service["command"]

    def option(name):
        return command[command.index(name) + 1] if name in command else None

    study = PER_VISIT if "--all-studies" in command else option("--study")
    return types.SimpleNamespace(notebooks=option("--notebooks"), data_dir=option("--data-dir"),
                                 policy=option("--policy"), study=study,
                                 dashboards=option("--dashboards"))


VISIT_AS = """
import importlib.util, json, sys
import nbformat
spec = importlib.util.spec_from_file_location("isolation", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
nb = module._visit(json.loads(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5])
sys.stdout.write("NOTEBOOK" + nbformat.writes(nb))
"""


def _visit_as(account: str, service, reviewer: str, extra_cells=(), study: str = STUDY):
    """:func:`_visit` in a process of ``account`` (the hub runs the service so)."""
    import subprocess
    import sys

    uid, gid = accounts.ensure_user(account)
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
         sys.executable, "-c", VISIT_AS, __file__, json.dumps(service), reviewer,
         json.dumps(list(extra_cells)), study],
        capture_output=True, text=True, timeout=300, check=False, cwd="/",
        env={"PATH": os.environ["PATH"], "HOME": service["environment"]["HOME"]})
    assert "NOTEBOOK" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return nbformat.reads(done.stdout.split("NOTEBOOK", 1)[1], as_version=4)


def _visit(service, reviewer: str, extra_cells=(), study: str = STUDY):
    """Open ``study``'s release queue as the review service does for ``reviewer``: its
    environment, its
    Voila configuration (kernelspec manager, provisioner settings, prelaunch hook), a sandboxed
    kernel; then run ``extra_cells`` in that kernel. Returns the executed notebook."""
    args = _args(service)
    config = voila_app.build_config(args)
    ksm = config.VoilaConfiguration.kernel_spec_manager_class(
        kernel_dirs=[os.path.join(service["environment"]["JUPYTER_PATH"], "kernels")])
    notebook = nbformat.read(Path(args.notebooks) / "release_queue.ipynb", as_version=4)
    request = types.SimpleNamespace(
        request=types.SimpleNamespace(path="/services/review/voila/render/release_queue.ipynb"),
        current_user=types.SimpleNamespace(username=reviewer),
        get_query_argument=lambda name, default=None: study if name == "study" else default)
    saved = dict(os.environ)
    os.environ.update(service["environment"])
    os.environ["JUPYTERHUB_API_TOKEN"] = "service-secret-canary"  # noqa: S105 - a canary
    try:
        notebook = config.VoilaConfiguration.prelaunch_hook(request, notebook, args.notebooks)
        for source in extra_cells:
            notebook.cells.append(nbformat.v4.new_code_cell(source))
        km = KernelManager(kernel_name=notebook.metadata["kernelspec"]["name"],
                           kernel_spec_manager=ksm, config=config)
        client = NotebookClient(notebook, km=km, timeout=120, store_widget_state=True,
                                allow_errors=True,
                                resources={"metadata": {"path": args.notebooks}})
        try:
            client.execute(env=dict(os.environ))
        finally:
            if km.has_kernel:  # nbclient leaves a kernel it did not start running
                km.shutdown_kernel(now=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def _text(output) -> str:
    if output["output_type"] == "error":
        return f"{output['ename']}: {output['evalue']}"
    return output.get("text", "") or json.dumps(output.get("data", {}))


def _outputs(nb) -> str:
    return "\n".join(_text(o) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))


def _widget_text(nb) -> str:
    state = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return "\n".join(str(m.get("state", {}).get("value", "")) for m in state.values())


def _probe(nb) -> dict:
    text = _outputs(nb)
    assert "PROBE" in text, text[-2000:]
    return json.loads(text.split("PROBE", 1)[1].splitlines()[0])


def test_a_module_planted_in_the_study_workspace_never_runs_in_a_dashboard(
        review_env, service, planted):
    nb = _visit(service, "rita", [PROBE])
    stolen = sorted(p.name for p in planted.glob("stolen-*.json"))
    assert stolen == [], f"planted modules ran in the reviewer's kernel: {stolen}"
    assert "by_tki" in _widget_text(nb)  # the dashboard itself worked
    probe = _probe(nb)
    study_uid = pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    assert probe["uid"] == pwd.getpwnam(dashboard_kernel_user(STUDY)).pw_uid
    assert probe["uid"] not in (0, study_uid)
    assert probe["cwd"] == "/"
    assert not any(p and p.startswith(str(review_env.space.study_dir(STUDY)))
                   for p in probe["path"])


def test_the_dashboard_import_path_is_writable_by_nobody_else(review_env, service):
    """Every directory on the dashboard kernel's sys.path (and each of its parents) is owned by
    root and writable by no group or other account: no study account can put a module there.
    A root-owned sticky directory writable by all (``/tmp``, where a clone may live) is as safe:
    nobody but the owner of the root-owned entry below it may rename or remove that entry."""
    probe = _probe(_visit(service, "rita", [PROBE]))
    bad = [(entry, path, owner, oct(mode)) for entry, chain in probe["path"].items()
           for path, owner, mode in chain
           if owner != 0 or (mode & 0o022 and not mode & stat.S_ISVTX)]
    assert bad == []


def test_no_token_or_service_secret_is_reachable_from_the_dashboard_kernel(service):
    nb = _visit(service, "rita", [PROBE, "print('CELLS', [c for c in In if 'token' in c])"])
    probe = _probe(nb)
    assert probe["token"] is None
    assert "JUPYTERHUB_API_TOKEN" not in probe["env"]
    # every process the kernel can see (its pid namespace only) and read: no secret there
    assert probe["environs"] and not any("TOKEN" in text or "service-secret-canary" in text
                                         for text in probe["environs"].values())
    assert not any("TOKEN" in key or "SECRET" in key for key in probe["env"])
    assert "token=" not in _outputs(nb).split("CELLS", 1)[1]



DECIDE = '''
from workbench.release.http import UnixHTTP
import workbench.review as review
try:
    print("DECIDED", review.context().decide({rid!r}, "approve")["state"])
except Exception as exc:
    print("REFUSED", type(exc).__name__, exc)
# a kernel naming someone else: the relay takes nothing but the request and the decision
status, body, _ = UnixHTTP("/run/gateway.sock").request(
    "POST", "/release/requests/{rid}/decision", {{"decision": "approve"}},
    {{"X-Workbench-Actor": "rita", "X-Workbench-Reviewer-Token": "forged",
      "X-Workbench-Study": "lonely"}})
print("AS-RITA", status, body.decode()[:300])
'''


def test_decisions_travel_through_the_relay_for_this_visits_reviewer_only(review_env, service):
    rid = review_env.model["id"]
    # ada (admin) may see cml-tki's dashboards, not review them (another study's reviewer gets
    # no page at all: test_the_shared_service_runs_each_visit_in_its_own_studys_account_...)
    out = _outputs(_visit(service, "ada", [DECIDE.format(rid=rid)]))
    assert "REFUSED WorkbenchUserError" in out and "may not review-release" in out, out
    assert "AS-RITA 403" in out and "may not review-release" in out.split("AS-RITA", 1)[1]
    out = _outputs(_visit(service, "remy", [DECIDE.format(rid=rid)]))
    assert "DECIDED reviewed" in out, out
    # the kernel named rita; the airlock saw remy, who had just approved
    assert "AS-RITA 409" in out and "you already approved" in out.split("AS-RITA", 1)[1], out


@pytest.mark.parametrize(("caller", "dashboard"), [
    (accounts.study_server_user(STUDY), True),  # a study server cannot get a dashboard kernel
    (dashboard_server_user(STUDY), False),  # a review service cannot get a study kernel
    (dashboard_server_user("lonely"), True),  # nor another study's dashboard kernel
    (shared_dashboard_server_user(), False),  # the shared review service: no study kernel
    (dashboard_kernel_user(STUDY), True),
])
def test_the_launcher_gives_dashboard_kernels_to_the_studys_review_service_only(
        review_env, caller, dashboard):
    import socket

    from workbench.errors import WorkbenchUserError
    from workbench.sandbox.launcher import _Session

    here, there = socket.socketpair()
    try:
        session = _Session(review_env.space, here)
        request = {"study": STUDY, "kernel_dir": "/nonexistent", "dashboard": dashboard}
        with pytest.raises(WorkbenchUserError, match="is not the server of study"):
            session.start(request, accounts.ensure_user(caller)[0], os.getpid())
        assert session.process is None
    finally:
        here.close()
        there.close()


def test_the_launcher_wants_the_callers_own_relay(review_env):
    """The one socket bound into a dashboard kernel is one its server made itself."""
    import socket

    from workbench.errors import WorkbenchUserError
    from workbench.sandbox.launcher import RELAY_SOCKET, _Session

    server_uid, server_gid = accounts.ensure_user(dashboard_server_user(STUDY))
    kernel_dir = Path(tempfile.mkdtemp(prefix="wbk-", dir="/tmp"))
    relay = socket.socket(socket.AF_UNIX)
    here, there = socket.socketpair()
    try:
        (kernel_dir / "kernel.json").write_text("{}")
        relay.bind(str(kernel_dir / RELAY_SOCKET))  # made by root, not by the caller
        for path in (kernel_dir, kernel_dir / "kernel.json"):
            os.chown(path, server_uid, server_gid)
        session = _Session(review_env.space, here)
        with pytest.raises(WorkbenchUserError, match="relay.sock must be a socket owned"):
            session.start({"study": STUDY, "kernel_dir": str(kernel_dir), "dashboard": True},
                          server_uid, os.getpid())
        assert session.process is None
        assert kernel_dir.stat().st_uid == server_uid  # refused before anything was changed
    finally:
        relay.close()
        here.close()
        there.close()
        shutil.rmtree(kernel_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def privileged_services(review_env):
    """The root side an unprivileged review service relies on: the kernel launcher and the
    review broker (both stopped again)."""
    from workbench.hub.services import start_kernel_launcher
    from workbench.review.broker import start_review_broker

    launcher = start_kernel_launcher(review_env.space)
    try:
        broker = start_review_broker(review_env.space, review_env.policy_file)
        try:
            yield launcher, broker
        finally:
            broker.stop()
    finally:
        launcher.stop()


def test_an_unprivileged_review_service_gets_its_kernel_from_the_launcher(
        review_env, service, planted, privileged_services):
    """The service as the hub runs it (``wbv-review-studies``): snapshot from the broker, a
    sandboxed dashboard kernel from the root launcher, decisions through relay and broker."""
    launcher, broker = privileged_services
    assert service["user"] == shared_dashboard_server_user()
    rid = review_env.failed["id"]
    nb = _visit_as(service["user"], service, "rita", [PROBE, DECIDE.format(rid=rid)])
    assert sorted(p.name for p in planted.glob("stolen-*.json")) == []
    assert "by_tki" in _widget_text(nb), launcher.output() + broker.output()
    probe = _probe(nb)
    assert probe["uid"] == pwd.getpwnam(dashboard_kernel_user(STUDY)).pw_uid
    assert probe["cwd"] == "/" and probe["token"] is None
    assert not any("TOKEN" in text for text in probe["environs"].values())
    out = _outputs(nb)
    # the failed request cannot be approved (bad state): the airlock heard rita, through the
    # broker, and the kernel's claim to be rita in another study changed nothing
    assert "REFUSED WorkbenchUserError" in out and "only submitted or reviewed" in out, out
    assert "AS-RITA 409" in out and "bad-state" in out.split("AS-RITA", 1)[1], out


def test_the_shared_service_runs_each_visit_in_its_own_studys_account_and_study(
        review_env, service, privileged_services):
    """One service for every study, as the hub runs it: olga's visit of her study gets a kernel
    as that study's dashboard account whose relay acts in that study only, so naming a cml-tki
    request from it changes nothing; her visit of cml-tki is refused before anything starts."""
    launcher, broker = privileged_services
    rid = review_env.model["id"]  # a submitted request of cml-tki
    nb = _visit_as(service["user"], service, "olga", [PROBE, DECIDE.format(rid=rid)],
                   study="lonely")
    probe = _probe(nb)
    assert probe["uid"] == pwd.getpwnam(dashboard_kernel_user("lonely")).pw_uid
    assert probe["uid"] != pwd.getpwnam(dashboard_kernel_user(STUDY)).pw_uid
    out = _outputs(nb)
    assert "REFUSED WorkbenchUserError" in out and "DECIDED" not in out, out
    assert "AS-RITA 403" in out, out  # the relay spoke for olga in lonely, whatever it sent
    before = UnixHTTP(airlock_socket(review_env.space), headers={
        "X-Workbench-Actor": "remy"}).json("GET", f"/requests/{rid}")
    assert "olga" not in before["approvals"]
    import subprocess
    import sys

    uid, gid = accounts.ensure_user(service["user"])
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
         sys.executable, "-c", VISIT_AS, __file__, json.dumps(service), "olga", "[]", STUDY],
        capture_output=True, text=True, timeout=300, check=False, cwd="/",
        env={"PATH": os.environ["PATH"], "HOME": service["environment"]["HOME"]})
    assert "NOTEBOOK" not in done.stdout and "HTTP 403" in done.stderr, (
        done.stdout[-2000:] + done.stderr[-2000:])


def test_a_visit_is_recorded_as_review_views_not_study_cell_executions(review_env, service):
    """Voila runs the dashboard's cells through the audit proxy: each is recorded (first, fail
    closed) as a review-view of the visit's reviewer, never as a cell-execution of the study
    (which `workbench rerun` and the producing-code lookup read), and without its code: the
    injected first cell holds the snapshot, evidence counts included."""
    from workbench.provenance.reader import ProvenanceReader

    dashboard_uid = pwd.getpwnam(dashboard_kernel_user(STUDY)).pw_uid

    def kernels_and_records():
        with ProvenanceReader(review_env.space) as reader:
            records = list(reader.records(study=STUDY))
        kernels = {r.fields["kernel_id"] for r in records if r.kind == "kernel-lifecycle"
                   and r.fields.get("uid") == dashboard_uid}
        return kernels, records

    before, _ = kernels_and_records()
    _visit(service, "rita")
    kernels, records = kernels_and_records()
    visit = kernels - before
    assert len(visit) == 1
    mine = [r for r in records if r.fields.get("kernel_id") in visit]
    kinds = {r.kind for r in mine}
    assert "cell-execution" not in kinds and "review-view" in kinds, kinds
    views = [r for r in mine if r.kind == "review-view"]
    assert all(r.fields["user"] == "rita" for r in views)
    assert not any("code" in r.fields for r in views)
    assert any(r.fields.get("code_sha256") for r in views)
