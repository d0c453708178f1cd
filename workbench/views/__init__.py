"""The view engine: catalog views over the holders' stores, with the study's protections applied."""

from workbench.views.engine import ViewEngine, ViewResult

__all__ = ["ViewEngine", "ViewResult"]
