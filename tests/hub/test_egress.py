"""The browser's ways out of a real study server (spawned by the hub, reached through the proxy
with alice's token), each tried: downloads, views and exports refused with the airlock message
and no byte of the file; the contents API (which JupyterLab needs to open a notebook) answering,
with each read on the record before its bytes leave, and refusing binary files that are not
images. See workbench/hub/egress.py."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

pytestmark = pytest.mark.slow

MARKER = "ROW-LEVEL-MARKER-7f3a"  # stands for what a notebook's outputs show
NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [{"cell_type": "code", "id": "c1", "execution_count": 1, "metadata": {},
               "source": "wb.view('cml_cohort').head()",
               "outputs": [{"output_type": "stream", "name": "stdout", "text": MARKER}]}],
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
PARQUET = b"PAR1" + MARKER.encode() + bytes(range(256)) + b"PAR1"


@pytest.fixture(scope="module")
def workspace_files(alice_server):
    """A notebook with a marked output, a binary data file and an image, written through the
    contents API as JupyterLab saves them."""
    for path, model in {
        "analysis.ipynb": {"type": "notebook", "content": NOTEBOOK},
        "rows.parquet": {"type": "file", "format": "base64",
                         "content": base64.b64encode(PARQUET).decode()},
        "plot.png": {"type": "file", "format": "base64",
                     "content": base64.b64encode(PNG).decode()},
        "disguised.png": {"type": "file", "format": "base64",  # a name is not a format
                          "content": base64.b64encode(PARQUET).decode()},
    }.items():
        response = alice_server.request("PUT", f"api/contents/{path}", json=model)
        assert response.status_code in (200, 201), response.text
    return alice_server


def _file_access(records, space) -> list[dict]:
    return [r["fields"] for r in records(space) if r.get("kind") == "file-access"]


REFUSED = [
    ("GET", "files/analysis.ipynb"),                        # File > Download, Open in New Tab
    ("GET", "files/analysis.ipynb?download=1"),
    ("GET", "files/rows.parquet"),
    ("GET", "files/plot.png"),
    ("HEAD", "files/analysis.ipynb"),
    ("GET", "view/analysis.ipynb"),
    ("GET", "nbconvert/html/analysis.ipynb?download=true"),  # Save and Export Notebook As
    ("GET", "nbconvert/script/analysis.ipynb?download=true"),
    ("GET", "nbconvert/notebook/analysis.ipynb"),
    ("GET", "nbconvert/webpdf/analysis.ipynb?download=1"),
    ("POST", "nbconvert/html"),                              # convert a posted notebook
]


@pytest.mark.parametrize(("method", "path"), REFUSED)
def test_download_and_export_routes_are_refused(workspace_files, method, path):
    kwargs = {"json": {"content": NOTEBOOK}} if method == "POST" else {}
    response = workspace_files.request(method, path, **kwargs)
    assert response.status_code == 403, (path, response.status_code)
    assert MARKER not in response.text and PNG not in response.content
    if method != "HEAD":
        assert "wb.release.request" in response.text  # the way that does exist


@pytest.mark.parametrize("path", [
    "files//analysis.ipynb", "files/./analysis.ipynb", "%66iles/analysis.ipynb",
    "files/%61nalysis.ipynb", "lab/files/analysis.ipynb", "lab/api/files/analysis.ipynb",
    "nbconvert/html//analysis.ipynb", "api/nbconvert/html/analysis.ipynb",
    "tree/analysis.ipynb", "notebooks/analysis.ipynb", "edit/analysis.ipynb",
    "api/contents/analysis.ipynb/checkpoints", "kernelspecs/../files/analysis.ipynb",
])
def test_no_other_route_hands_the_file_out(workspace_files, path):
    response = workspace_files.request("GET", path, follow_redirects=True)
    assert MARKER not in response.text, (path, response.status_code)


def test_contents_read_is_recorded_before_its_bytes_leave(live_hub, workspace_files, records):
    response = workspace_files.request("GET", "api/contents/analysis.ipynb?content=1")
    assert response.status_code == 200 and MARKER in response.text  # JupyterLab opens it
    sent = hashlib.sha256(response.content).hexdigest()
    mine = [f for f in _file_access(records, live_hub.space) if f.get("sha256") == sent]
    assert len(mine) == 1, _file_access(records, live_hub.space)
    assert mine[0] | {"size": len(response.content)} == {
        "study": "cml-tki", "user": "alice", "path": "analysis.ipynb", "route": "contents",
        "method": "get", "type": "notebook", "format": "json", "status": "ok",
        "sha256": sent, "size": len(response.content)}
    # a listing or a model without content hands over no file and is not a file read
    before = len(_file_access(records, live_hub.space))
    assert workspace_files.request("GET", "api/contents/").status_code == 200
    assert workspace_files.request("GET", "api/contents/analysis.ipynb?content=0").status_code \
        == 200
    assert len(_file_access(records, live_hub.space)) == before


@pytest.mark.parametrize("name", ["rows.parquet", "disguised.png"])
@pytest.mark.parametrize("query", ["?content=1&format=base64", "?type=file&format=base64",
                                   "?type=file", ""])
def test_binary_files_are_not_handed_out_through_the_contents_api(workspace_files, name, query):
    response = workspace_files.request("GET", f"api/contents/{name}{query}")
    assert response.status_code == 403, response.status_code
    assert base64.b64encode(PARQUET).decode()[:40] not in response.text
    assert "wb.release.request" in response.json()["message"]


def test_an_image_opens_in_the_image_viewer(live_hub, workspace_files, records):
    response = workspace_files.request("GET", "api/contents/plot.png?type=file&format=base64")
    assert response.status_code == 200
    assert base64.b64decode(response.json()["content"]) == PNG
    assert any(f["path"] == "plot.png" and f["status"] == "ok"
               for f in _file_access(records, live_hub.space))


def test_refused_attempts_are_on_the_record(live_hub, workspace_files, records):
    workspace_files.request("GET", "files/analysis.ipynb?download=1")
    workspace_files.request("GET", "nbconvert/html/analysis.ipynb?download=true")
    refused = [f for f in _file_access(records, live_hub.space) if f["status"] == "refused"]
    assert {(f["route"], f["path"], f["user"]) for f in refused} >= {
        ("files", "files/analysis.ipynb", "alice"),
        ("nbconvert", "nbconvert/html/analysis.ipynb", "alice")}
    assert any(f["reason"] == "binary-file" and f["path"] == "rows.parquet" for f in refused)
    assert not any(MARKER in json.dumps(f) for f in _file_access(records, live_hub.space))


def test_terminals_stay_off(workspace_files):
    assert workspace_files.request("POST", "api/terminals").status_code == 404
    assert workspace_files.request("GET", "api/terminals").status_code == 404


def test_without_the_collector_no_file_is_opened(live_hub, workspace_files):
    """Last in this module: it stops the hub's collector. Fail closed: a read that cannot be
    recorded is not served."""
    live_hub.collector.stop()  # the hub's teardown stops it again: a no-op
    response = workspace_files.request("GET", "api/contents/analysis.ipynb?content=1")
    assert response.status_code == 503, response.status_code
    assert MARKER not in response.text
    assert workspace_files.request("GET", "files/analysis.ipynb").status_code == 403
