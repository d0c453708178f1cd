"""What a researcher sees in a real sandboxed study kernel (the demo policy over a small space,
the server spawned by the hub, the gateway and the HE services running): a figure drawn without
a Fontconfig complaint, a refused network call as one line naming what to do instead, a long
secure operation saying what runs and how many encrypted rounds it took, and a Kaplan-Meier
plot with its time unit and an at-risk table."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_hub(demo_hub):
    """alice_server (tests/hub/conftest.py) on the demo hub, with the key holder and the
    aggregator running: views and wb.secure answer."""
    from workbench.secure.process import start_aggregator, start_keyholder

    services = [start_keyholder(demo_hub.space, min_cell_floor=5)]
    try:
        services.append(start_aggregator(demo_hub.space))
        yield demo_hub
    finally:
        for service in reversed(services):
            service.stop()


@pytest.fixture(scope="module")
def kernel(alice_server):
    kernel_id = alice_server.start_kernel()
    yield lambda code: alice_server.execute(kernel_id, code, timeout=600)
    alice_server.request("DELETE", f"api/kernels/{kernel_id}")


def test_the_spawn_page_shows_each_step_while_the_server_starts(live_hub):
    """The events the hub's spawn page shows (its progress API, read while the server starts):
    the spawner's steps in order, then the ready event."""
    import threading
    import time

    import httpx

    from workbench.accounts import study_server_user

    token = live_hub.token_for("alice")
    # the hub answers the start request only after it is done or slow: read while it runs
    started = threading.Thread(target=live_hub.spawn, args=("alice", "lung-validation"))
    started.start()
    time.sleep(0.5)
    events = []
    with httpx.stream("GET", f"{live_hub.url}/hub/api/users/alice/servers/lung-validation/"
                             "progress", headers={"Authorization": f"token {token}"},
                      timeout=180) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    break
    started.join()
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready"), messages
    steps = ["Access checked: alice is a member of lung-validation",
             "Study workspace and the server's sealed configuration ready",
             "Start recorded in provenance",
             f"Starting the study server as {study_server_user('lung-validation')}",
             "Study server started; JupyterLab is loading"]
    found = [next(i for i, m in enumerate(messages) if m.startswith(step)) for step in steps]
    assert found == sorted(found), messages
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress), progress


@pytest.fixture(scope="module")
def lung_kernel(live_hub, alice_server):
    """alice's lung-validation server: the public NCCTG lung data, large enough for a Cox model
    and curves by sex (the demo's cml_cohort is small in a 300-patient test space)."""
    response = live_hub.spawn("alice", "lung-validation")  # 400: the spawn test started it
    assert response.status_code in (200, 201, 202, 400), response.text
    live_hub.wait_ready("alice", "lung-validation")
    server = type(alice_server)(live_hub, "alice", "lung-validation")
    kernel_id = server.start_kernel()
    yield lambda code: server.execute(kernel_id, code, timeout=600)
    server.request("DELETE", f"api/kernels/{kernel_id}")


def _text(result: dict) -> str:
    # a stream may arrive in several messages that split a line anywhere ('xlabel: Surv' +
    # 'ival time in days'), so each stream is joined as it was written, stdout then stderr
    streams = {"stdout": "", "stderr": ""}
    parts = []
    for out in result["outputs"]:
        if "name" in out:
            streams[out["name"]] = streams.get(out["name"], "") + out.get("text", "")
        parts += out.get("traceback", [])
        parts += [str(v) for v in out.get("data", {}).values()]
    return "\n".join([*streams.values(), *parts])


def test_a_figure_draws_without_a_fontconfig_error(kernel):
    result = kernel(
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        "from matplotlib import font_manager\n"
        "fig, ax = plt.subplots(); ax.set_xlabel('days since start'); fig.canvas.draw()\n"
        "print('font', font_manager.findfont('DejaVu Sans').rsplit('/', 1)[-1])")
    shown = _text(result)
    assert result["status"] == "ok", shown
    assert "Fontconfig" not in shown and "fontconfig" not in shown.lower(), shown
    assert "font DejaVuSans.ttf" in shown


@pytest.mark.parametrize("code", [
    "import urllib.request\nurllib.request.urlopen('http://example.org/', timeout=5)",
    "import socket\nsocket.create_connection(('203.0.113.7', 80), timeout=5)",
    "import pandas as pd\npd.read_csv('https://example.org/data.csv')",
])
def test_a_refused_network_call_is_one_line(kernel, code):
    result = kernel(code)
    assert result["status"] == "error"
    errors = [out for out in result["outputs"] if "traceback" in out]
    assert len(errors) == 1
    lines = "\n".join(errors[0]["traceback"]).splitlines()
    assert len(lines) == 1, lines
    assert "no network" in lines[0] and "wb.view" in lines[0] and "wb.secure" in lines[0]


def test_other_errors_keep_their_traceback(kernel):
    result = kernel("def f():\n    return open('/no/such/file')\nf()")
    assert result["status"] == "error"
    shown = _text(result)
    assert "FileNotFoundError" in shown and "f()" in shown  # frames still shown
    assert "no network" not in shown


def test_a_cox_model_says_what_runs_and_how_many_rounds_it_took(lung_kernel):
    result = lung_kernel('fit = wb.secure.cox_ph("lung_survival", "time", "status", '
                         'covariates=["age"])\nprint("coef", len(fit.params_))\nfit')
    shown = _text(result)
    assert result["status"] == "ok", shown
    lines = [line for line in shown.splitlines() if line.startswith("wb.secure.cox_ph")]
    assert lines[0] == "wb.secure.cox_ph on 'lung_survival': encrypted rounds running at the " \
                       "holders ..."
    assert lines[1].startswith("wb.secure.cox_ph: released after ") and "Newton steps" in lines[1]
    assert shown.index(lines[0]) < shown.index(lines[1]) < shown.index("coef 1")
    # shown as a notebook shows it: the fit and its coefficient table, not only a repr
    html = next(o["data"]["text/html"] for o in result["outputs"]
                if "text/html" in o.get("data", {}))
    assert "CoxPHResult: n=228, events=165" in html and "Newton steps" in html
    assert "<table" in html and "exp(coef)" in html and ">age<" in html


def test_a_kaplan_meier_plot_has_its_time_unit_and_an_at_risk_table(lung_kernel):
    result = lung_kernel(
        "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
        'km = wb.secure.kaplan_meier("lung_survival", "time", "status", by="sex")\n'
        "fig, ax = plt.subplots()\nkm.plot(ax=ax)\nfig.canvas.draw()\n"
        "print('xlabel:', ax.get_xlabel())\n"
        "texts = [t.get_text() for t in ax.texts]\n"
        "print('table:', texts[0], '|', ' '.join(texts[1:]))\n"
        "print('first counts:', [km[g].at_risk([0])[0] for g in km])\n"
        "print('n:', [km[g].n for g in km])\nkm")
    shown = _text(result)
    assert result["status"] == "ok", shown
    # the catalog's description of the duration column: its words and its unit
    assert "xlabel: Survival time in days" in shown
    assert "timeline" not in shown and "Fontconfig" not in shown
    assert "table: Number at risk |" in shown
    first = shown.split("first counts:")[1].splitlines()[0]
    assert first.strip() == shown.split("n:")[1].splitlines()[0].strip()  # all at risk at 0
    # the curves show as a table of what was released, not as a dict of reprs
    html = next(o["data"]["text/html"] for o in result["outputs"]
                if "text/html" in o.get("data", {}))
    assert ">sex=1<" in html and ">sex=2<" in html and "median survival" in html
