"""docs/data-model.md documents every table, defect and view (a test fails when one is not)."""

from __future__ import annotations

from pathlib import Path

from workbench.harmonise import OMOP_SCHEMA
from workbench.synth import GROUND_TRUTH
from workbench.synth.views import synthetic_views

DOC = (Path(__file__).resolve().parents[2] / "docs" / "data-model.md").read_text()


def test_every_common_model_table_and_column_is_documented():
    for table, columns in OMOP_SCHEMA.items():
        assert f"`{table}`" in DOC, table
        for column in columns:
            assert column.name in DOC, (table, column.name)


def test_every_defect_and_its_rate_is_documented():
    for name, spec in GROUND_TRUTH["defects"].items():
        assert f"`{name}`" in DOC, name
        assert f"{spec['rate'] * 100:g} %" in DOC, name


def test_every_view_and_true_hazard_ratio_is_documented():
    for view in synthetic_views():
        assert f"`{view.id}`" in DOC, view.id
    for ratio in GROUND_TRUTH["cml"]["hazard_ratios"].values():
        assert f"{ratio:.2f}" in DOC, ratio


def test_every_holder_its_raw_tables_and_the_payer_split_are_documented():
    from workbench.synth import generate

    for holder, tables in generate(500, 1).tables.items():
        assert f"| `{holder}` |" in DOC, holder
        for table in tables:
            assert f"`{table}`" in DOC, (holder, table)
    coverage = GROUND_TRUTH["coverage"]
    for payer, share in coverage["payer_shares"].items():
        assert f"{share * 100:g} % of the insured by `{payer}`" in DOC, payer
    assert f"{coverage['insured_share'] * 100:g} % are insured" in DOC
