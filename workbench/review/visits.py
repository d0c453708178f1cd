"""A reviewer dashboard's visits in provenance: their own kind, not the study's cell executions.

Voila runs the dashboard notebook (its cells, then every widget message) through the same audit
proxy as a study kernel, which records each as a ``cell-execution``: 10-25 records per visit that
looked like study code, that `workbench rerun` would find and that the timeline counted as the
researcher's. The review service's provisioner wraps its recorder in ``ReviewViewRecorder``, so
the same records (still written before anything runs: fail closed) are ``review-view`` records.
Their code is kept by digest only: the dashboards are root-owned notebooks, and the injected
first cell holds the snapshot (evidence counts included), which has no place in the log.
Guarded by tests/review/test_visits.py.
"""

from __future__ import annotations

from typing import Any

KIND = "review-view"
STUDY_KIND = "cell-execution"  # workbench.sandbox.proxy.RECORD_KIND


class ReviewViewRecorder:
    """The audit proxy's recorder for a dashboard kernel (same interface as
    ``workbench.sandbox.recorder.CollectorRecorder``)."""

    def __init__(self, recorder):
        self._recorder = recorder

    async def __call__(self, kind: str, fields: dict[str, Any], background: bool = False) -> Any:
        if kind == STUDY_KIND:
            kind, fields = KIND, {k: v for k, v in fields.items() if k != "code"}
        return await self._recorder(kind, fields, background=background)

    def close(self) -> None:
        self._recorder.close()
