"""The routing-table walk behind a study server's start (workbench/hub/egress.py): every route
served by a file, view or nbconvert handler, whatever its pattern and however deeply routed, is
found, pointed at the refusal, and a table with one left fails the check."""

from __future__ import annotations

import pytest
from jupyter_server.base.handlers import AuthenticatedFileHandler
from jupyter_server.files.handlers import FilesHandler
from jupyter_server.nbconvert.handlers import NbconvertFileHandler, NbconvertPostHandler
from jupyter_server.services.contents.handlers import ContentsHandler
from jupyter_server.view.handlers import ViewHandler
from tornado.web import Application

from workbench.errors import WorkbenchError
from workbench.hub import egress


class _SubclassedFiles(AuthenticatedFileHandler):
    """What an extension could route under a name of its own."""


def _app() -> Application:
    app = Application([(r"/files/(.*)", AuthenticatedFileHandler, {"path": "/"}),
                       (r"/view/(.*)", ViewHandler),
                       (r"/nbconvert/(\w+)", NbconvertPostHandler),
                       (r"/api/contents(.*)", ContentsHandler)])
    # added the way server extensions add theirs: a router of its own, ahead of the defaults
    app.add_handlers(".*$", [(r"/ext/raw/(.*)", _SubclassedFiles, {"path": "/"}),
                             (r"/ext/export/(\w+)/(.*)", NbconvertFileHandler),
                             (r"/ext/legacy/(.*)", FilesHandler)])
    return app


def _targets(app) -> list[type]:
    return [rule.target for rule in egress._rules(app.default_router)
            if isinstance(rule.target, type)]


def test_every_file_serving_route_is_found_and_refused():
    app = _app()
    with pytest.raises(WorkbenchError, match="still serves files"):
        egress.check_closed(app)
    assert egress.close_routes(app, study="cml-tki", collector_socket="/run/c.sock") == 7
    egress.check_closed(app)
    targets = _targets(app)
    assert targets.count(egress.EgressRefusedHandler) == 6
    assert targets.count(egress.RecordedContentsHandler) == 1
    assert not [t for t in targets if issubclass(t, egress.FILE_SERVING)]


def test_unrecorded_contents_or_no_collector_fail_the_check():
    app = Application([(r"/api/contents(.*)", ContentsHandler)])
    with pytest.raises(WorkbenchError, match="unrecorded contents"):
        egress.check_closed(app)
    egress.close_routes(app, study="cml-tki", collector_socket="")
    with pytest.raises(WorkbenchError, match="no collector"):
        egress.check_closed(app)
    with pytest.raises(WorkbenchError, match="no recorded contents"):
        egress.check_closed(Application([]))
