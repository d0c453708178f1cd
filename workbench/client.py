"""The notebook side of the gateway: ``import workbench as wb`` in a study kernel.

    wb.views()                      # the views this study may read (a DataFrame)
    wb.describe("cml_cohort")       # schema with descriptions and sensitivity, quality, version
    wb.view("cml_cohort", columns=["person_id", "tki"], limit=1000)   # a pandas DataFrame
    wb.catalog()                    # an ipywidgets browser of the granted views

Runs inside the sandbox (untrusted): it only talks HTTP to the gateway socket
($WORKBENCH_GATEWAY_SOCKET, default /run/gateway.sock). It sets the X-Workbench-* identity headers
from the environment for the record; the gateway trusts only the socket's study and peer uid.
A refused request raises WorkbenchUserError, shown in a notebook without a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pandas as pd
import pyarrow as pa

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.unixhttp import UnixHTTPConnection

DEFAULT_SOCKET = "/run/gateway.sock"
TIMEOUT = 600.0  # seconds: a large view or a Cox model may take a while


def _segment(name: str) -> str:
    return quote(str(name), safe="")


def _socket() -> str:
    return os.environ.get("WORKBENCH_GATEWAY_SOCKET", DEFAULT_SOCKET)


def _study() -> str:
    return os.environ.get("WORKBENCH_STUDY", "this study")


def _current_msg_id() -> str | None:
    """The msg_id of the cell being executed, so a read can be tied to the audited cell."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    kernel = getattr(shell, "kernel", None)
    try:
        return kernel.get_parent()["header"]["msg_id"] if kernel else None
    except (AttributeError, KeyError, TypeError):
        return None


def _headers() -> dict:
    """Identity *claims* for the record; the gateway trusts only the socket and the peer uid."""
    claims = {
        "X-Workbench-User": os.environ.get("WORKBENCH_USER") or os.environ.get("JUPYTERHUB_USER"),
        "X-Workbench-Kernel": os.environ.get("WORKBENCH_KERNEL_ID"),
        "X-Workbench-Msg-Id": os.environ.get("WORKBENCH_MSG_ID") or _current_msg_id(),
    }
    return {k: v for k, v in claims.items() if v}


def _hide_traceback() -> None:
    """In IPython, show user errors as one line (what happened, what to do), not a traceback."""
    ipython = sys.modules.get("IPython")
    ip = ipython.get_ipython() if ipython else None
    if ip is None or getattr(ip, "_workbench_errors", False):
        return

    def _show(self, etype, value, tb, tb_offset=None):
        print(f"{etype.__name__}: {value}", file=sys.stderr)

    ip.set_custom_exc((WorkbenchUserError,), _show)
    ip._workbench_errors = True


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def _raise_for(response: _Response, view: str | None = None) -> None:
    if response.status < 400:
        return
    try:
        error = response.json()["error"]
        reason, message = error["reason"], error["message"]
    except (ValueError, KeyError, TypeError):
        raise WorkbenchError(f"the gateway answered {response.status} without an error "
                             "body") from None
    if reason == "access-denied" and view:
        message = f"study {_study()}: view '{view}': {message}"
    raise WorkbenchUserError(message, reason=reason) from None


def _request(method: str, path: str, view: str | None = None, params: dict | None = None,
             body: bytes | None = None, headers: dict | None = None) -> _Response:
    _hide_traceback()
    target = path + ("?" + urlencode(params) if params else "")
    connection = UnixHTTPConnection(_socket(), TIMEOUT, host="gateway")
    try:
        connection.request(method, target, body=body, headers={**_headers(), **(headers or {})})
        raw = connection.getresponse()
        response = _Response(raw.status, dict(raw.getheaders()), raw.read())
    except (OSError, http.client.HTTPException) as exc:
        raise WorkbenchUserError(
            f"cannot reach the data gateway at {_socket()} ({type(exc).__name__}); the study's "
            "server may be starting or the gateway is down: try again, then ask the admin.",
            reason="gateway-unavailable") from None
    finally:
        connection.close()
    _raise_for(response, view)
    return response


# Secure operations that run encrypted rounds long enough to want a word before and after.
LONG_OPERATIONS = ("kaplan_meier", "logrank_test", "cox_ph", "logistic_regression")


def request_json(method: str, path: str, payload: dict | None = None) -> dict:
    """One JSON request to the gateway (used by wb.secure and wb.release)."""
    view = payload.get("view") if isinstance(payload, dict) else None
    op = path.removeprefix("/secure/") if path.startswith("/secure/") else None
    if op in LONG_OPERATIONS:
        _say(f"wb.secure.{op} on '{view}': encrypted rounds running at the holders ...")
    response = _request(method, path, view=view,
                        body=None if payload is None else json.dumps(payload).encode(),
                        headers={"Content-Type": "application/json"})
    body = response.json()
    if op in LONG_OPERATIONS:
        _say(_finished(op, body))
    return body


def _say(line: str) -> None:
    """A progress line, printed at once. The gateway answers an operation in one response, so
    this says what runs and, after, how many encrypted rounds it took; no elapsed times, so a
    cell's output (and its digest in provenance) is the same when ``workbench rerun`` runs it."""
    print(line, flush=True)


def _finished(op: str, body: dict) -> str:
    meta = body.get("meta") if isinstance(body, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    result = body.get("result") if isinstance(body, dict) else None
    rounds, holders = meta.get("rounds"), meta.get("holders") or []
    line = f"wb.secure.{op}: released"
    if isinstance(rounds, int):
        line += f" after {rounds} encrypted round{'s' if rounds != 1 else ''}"
    if holders:
        line += f" across {len(holders)} holders"
    steps = result.get("iterations") if isinstance(result, dict) else None
    return line + (f" ({steps} Newton steps)." if isinstance(steps, int) else ".")


def views() -> pd.DataFrame:
    """The views this study is granted: id, title, version, description."""
    listing = _request("GET", "/views").json()
    return pd.DataFrame([{k: v[k] for k in ("id", "title", "version", "description")}
                         for v in listing["views"]],
                        columns=["id", "title", "version", "description"])


def describe(name: str) -> dict:
    """A granted view's schema (with description and sensitivity per column), quality and
    version. Columns with plaintext=False are reachable only through wb.secure."""
    return _request("GET", f"/views/{_segment(name)}", view=name).json()


def view(name: str, columns: list[str] | None = None, limit: int | None = None,
         seed: int = 0) -> pd.DataFrame:
    """A granted view as a DataFrame: pseudonyms are per study, dates shifted or coarsened as the
    view says; sensitive columns are not available (use wb.secure).

    If the study sees the view as ``aggregates``, this is the view's SYNTHETIC TWIN: the same
    columns and types with made-up values (no real row; ``seed`` picks another twin), to write
    and test code on; ``df.attrs["workbench_synthetic"]`` is True and a banner says so. Real
    numbers come from wb.secure and leave through the airlock (wb.release)."""
    params = {}
    if columns is not None:
        params["columns"] = ",".join(columns)
    if limit is not None:
        params["limit"] = str(int(limit))
    if seed:
        params["seed"] = str(int(seed))
    response = _request("GET", f"/views/{_segment(name)}/arrow", view=name, params=params)
    with pa.ipc.open_stream(response.body) as reader:
        frame = to_frame(reader.read_all())
    synthetic = response.headers.get("X-Workbench-Synthetic") == "twin"
    frame.attrs["workbench_synthetic"] = synthetic
    if synthetic:
        _say(f"SYNTHETIC TWIN of '{name}' ({len(frame)} made-up rows, no real row): study "
             f"{_study()} sees this view as aggregates. Write and test code on it; real numbers "
             "come from wb.secure and leave through the airlock.")
    return frame


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas the way pandas 3 does by default: text as the pyarrow-backed ``string``
    dtype (zero-copy, ~10x faster than Python str objects), dates as datetime64."""
    strings = pd.StringDtype("pyarrow")
    mapping = {pa.string(): strings, pa.large_string(): strings}
    return table.to_pandas(types_mapper=mapping.get, date_as_object=False)


def catalog():
    """An ipywidgets browser of the study's granted views: search, schema with descriptions and
    sensitivity, quality and version."""
    import ipywidgets as widgets

    listing = _request("GET", "/views").json()["views"]
    wide = widgets.Layout(width="34em")  # the default 300 px cuts most view titles short
    search = widgets.Text(placeholder="search views and columns", description="Search",
                          layout=wide)
    choice = widgets.Select(options=[], rows=8, description="Views", layout=wide)
    detail = widgets.HTML(layout=widgets.Layout(margin="0 0 0 1em"))

    def matches(item: dict, text: str) -> bool:
        haystack = " ".join([item["id"], item["title"], item.get("description", "")] +
                            [c["name"] + " " + c.get("description", "") for c in item["columns"]])
        return text.lower() in haystack.lower()

    def refresh(*_):
        found = [v for v in listing if matches(v, search.value)]
        shown = choice.value
        choice.options = [(f"{v['title']} ({v['id']})", v["id"]) for v in found]
        if found:  # keep the view shown if it still matches, else show the first match
            choice.value = shown if shown in {v["id"] for v in found} else found[0]["id"]

    def show(*_):
        item = next((v for v in listing if v["id"] == choice.value), None)
        detail.value = "" if item is None else _view_html(item)

    search.observe(refresh, names="value")
    choice.observe(show, names="value")
    refresh()
    show()
    return widgets.VBox([search, widgets.HBox([choice, detail])])


def _view_html(item: dict) -> str:
    from html import escape

    rows = "".join(
        f"<tr><td><code>{escape(c['name'])}</code></td><td>{escape(c['type'])}</td>"
        f"<td>{escape(c['sensitivity'])}{'' if c['plaintext'] else ' (wb.secure only)'}</td>"
        f"<td>{escape(c.get('description', ''))}</td></tr>" for c in item["columns"])
    quality = ", ".join(f"{escape(k)}: {v:.2f}" for k, v in sorted(item.get("quality", {}).items()))
    return (f"<h4>{escape(item['title'])} <code>{escape(item['id'])}</code></h4>"
            f"<p>{escape(item.get('description', ''))}</p>"
            f"<p>version <code>{escape(item['version'])}</code>; holders "
            f"{escape(', '.join(item.get('holders', [])))}; dates: "
            f"{escape(item.get('date_policy', 'none'))}; quality {quality or '-'}</p>"
            "<table><tr><th>column</th><th>type</th><th>sensitivity</th><th>description</th></tr>"
            f"{rows}</table>")
