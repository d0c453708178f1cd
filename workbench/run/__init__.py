"""Headless runs (``workbench run``) and reproducible re-runs (``workbench rerun``) of study
notebooks, through the same sandbox, audit proxy and provenance as an interactive session."""
