"""Reviewer and admin dashboards (Voila): the logic behind the thin notebooks in
notebooks/dashboards/. See docs/review.md.

Each dashboard notebook starts with ``ctx = review.context()``: the data it shows is a
*snapshot* gathered by the trusted review service when the page is opened
(:mod:`workbench.review.snapshot`) and injected into the notebook; the kernel only renders it and
sends reviewer decisions through the study gateway with a signed reviewer token.
"""

from workbench.review.context import ReviewContext, context, load_snapshot

__all__ = ["ReviewContext", "context", "load_snapshot"]
