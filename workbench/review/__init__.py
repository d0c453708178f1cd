"""Reviewer and admin dashboards (Voila): the logic behind the thin notebooks in
workbench/notebooks/dashboards/. See docs/review.md.

Each dashboard notebook starts with ``ctx = review.context()``: the data it shows is a
*snapshot* gathered by the trusted review service when the page is opened
(:mod:`workbench.review.snapshot`) and injected into the notebook; the kernel only renders it and
sends reviewer decisions to its decision relay (:mod:`workbench.review.relay`), which knows the
reviewer: the kernel holds no token. Who runs what, and why a researcher cannot reach any of it:
docs/review.md ("Out of the researcher's reach").
"""

from workbench.review.context import ReviewContext, context, load_snapshot

__all__ = ["ReviewContext", "context", "load_snapshot"]
