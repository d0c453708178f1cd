"""Reviewer pages refuse to be framed: a page of another origin that frames a dashboard could
lay its own buttons over Approve (clickjacking). Every response of the review services (Voila's
pages, its static files, errors and redirects; review-files' list and files) carries
``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (for browsers
that ignore the CSP directive), set by one tornado output transform, so no handler can forget.
Guarded by tests/review/test_framing.py.
"""

from __future__ import annotations

from tornado.web import OutputTransform

# Voila's pages need their own scripts and styles; what matters here is who may frame them
VOILA_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
FILES_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def deny_framing(csp: str) -> type[OutputTransform]:
    """An output transform setting ``csp`` and ``X-Frame-Options: DENY`` on every response
    (``tornado.web.Application(transforms=[...])``)."""

    class DenyFraming(OutputTransform):
        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            headers["Content-Security-Policy"] = csp
            headers["X-Frame-Options"] = "DENY"
            headers["X-Content-Type-Options"] = "nosniff"
            return status_code, headers, chunk

    return DenyFraming
