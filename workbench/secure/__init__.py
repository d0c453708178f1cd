"""Secure computation: homomorphic cross-holder analytics with policy-checked release.

In a study kernel: ``wb.secure.kaplan_meier("cohort", duration_col="days", event_col="died")`` and
the other functions of ``workbench.secure.api``. In-process: ``Federation({holder: DataFrame})``.
Imports are lazy: TenSEAL is loaded only where encryption actually runs.
"""

from __future__ import annotations

import importlib

_API = {"count", "sum", "mean", "var", "histogram", "crosstab", "kaplan_meier", "logrank_test",
        "cox_ph", "logistic_regression"}
_OTHER = {"Federation": "workbench.secure.federation", "KeyHolder": "workbench.secure.keyholder",
          "KeyHolderClient": "workbench.secure.keyholder", "create_keys": "workbench.secure.keys"}

__all__ = sorted(_API | set(_OTHER))


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module("workbench.secure.api"), name)
    if name in _OTHER:
        return getattr(importlib.import_module(_OTHER[name]), name)
    raise AttributeError(f"module 'workbench.secure' has no attribute {name!r}")
