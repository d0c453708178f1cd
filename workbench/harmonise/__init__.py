"""Harmonisation of each holder's raw source tables into the common (OMOP-like) model.

``OMOP_SCHEMA`` is the common model: table -> catalog ``Column``s with descriptions and
sensitivity tags. See docs/data-model.md.
"""

from workbench.harmonise.schema import MEASUREMENT_UNITS, OMOP_SCHEMA, arrow_schema

__all__ = ["MEASUREMENT_UNITS", "OMOP_SCHEMA", "arrow_schema"]
