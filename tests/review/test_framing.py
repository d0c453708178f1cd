"""Every reviewer page refuses to be framed (workbench/review/framing.py): review-files' list,
its files, its errors and redirects, and the Voila review services' every response, through one
tornado output transform. The pages themselves are fetched through the real hub in
tests/review/test_hub_live.py."""

from __future__ import annotations

import pytest
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application, RequestHandler

from workbench.paths import Space
from workbench.review import files
from workbench.review.framing import FILES_CSP, VOILA_CSP, deny_framing

HUB_ENV = {"JUPYTERHUB_API_TOKEN": "test-token", "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
           "JUPYTERHUB_SERVICE_PREFIX": "/services/review-files/",
           "JUPYTERHUB_CLIENT_ID": "service-review-files",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/review-files/oauth_callback",
           "JUPYTERHUB_HOST": "", "JUPYTERHUB_BASE_URL": "/"}


def _refuses_framing(response, csp: str) -> None:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == csp
    assert "frame-ancestors 'none'" in csp


class FilesService(AsyncHTTPTestCase):
    def get_app(self):
        self._env = pytest.MonkeyPatch()
        for key, value in HUB_ENV.items():
            self._env.setenv(key, value)
        return files.make_app(Space("/nonexistent-space"), "/services/review-files/")

    def tearDown(self):
        super().tearDown()
        self._env.undo()

    def test_every_response_refuses_framing(self):
        for path in ("/services/review-files/",  # anonymous: sent to log in
                     "/services/review-files/files/rq-1/x.csv",
                     "/services/review-files/no-such-page",  # tornado's own 404
                     "/elsewhere"):
            response = self.fetch(path, follow_redirects=False)
            assert response.code in (302, 404), (path, response.code)
            _refuses_framing(response, FILES_CSP)


class Overridden(AsyncHTTPTestCase):
    """A handler that sets its own, weaker framing headers still goes out with the transform's."""

    def get_app(self):
        class Weak(RequestHandler):
            def get(self):
                self.set_header("Content-Security-Policy", "frame-ancestors *")
                self.set_header("X-Frame-Options", "ALLOWALL")
                self.write("hi")

        return Application([("/", Weak)], transforms=[deny_framing(VOILA_CSP)])

    def test_the_transform_has_the_last_word(self):
        _refuses_framing(self.fetch("/"), VOILA_CSP)

