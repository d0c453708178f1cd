"""Bad view files fail at load with the file, line and field; good ones are checked against the
datasets' logical tables by running their SQL on empty tables."""

from datetime import UTC, datetime

import pytest

from workbench.catalog.models import Column, Dataset
from workbench.catalog.view_files import check_views, load_view_file
from workbench.errors import WorkbenchUserError
from workbench.space.build import PUBLIC_VIEWS
from workbench.space.public import PUBLIC_DATASETS, columns_of

GOOD = """\
- id: ages
  title: Ages
  description: age by holder
  tables: [person]
  sql: SELECT holder, person_id, age FROM person
  person_column: person_id
  columns:
    - {name: holder, type: string, description: holder}
    - {name: person_id, type: string, description: pseudonym}
    - {name: age, type: int64, description: age}
"""


def _datasets():
    cols = (Column(name="person_id", type="string", description="p"),
            Column(name="age", type="int64", description="a"))
    return [Dataset(id=f"{h.replace('-', '_')}.person", title="t", description="d", holder=h,
                    table="person", source="test", file="person.parquet", columns=cols, rows=1,
                    version="0", quality_score=1, usage_terms="u", created_at=datetime.now(UTC))
            for h in ("hospital-a", "hospital-b")]


def _load(tmp_path, text):
    path = tmp_path / "views.yaml"
    path.write_text(text)
    views = load_view_file(path)
    check_views(path, views, _datasets())
    return views


def test_a_good_view_file_loads(tmp_path):
    ((view, line),) = _load(tmp_path, GOOD)
    assert view.id == "ages" and line == 1


@pytest.mark.parametrize("text, line, words", [
    (GOOD.replace("tables: [person]", "tables: [person"), 5, "not valid YAML"),
    (GOOD.replace("id: ages", "id: Bad-Id"), 1, "field 'id'"),
    (GOOD.replace("type: int64", "type: integer"), 10, "field 'columns.2.type'"),
    (GOOD.replace("  title: Ages\n", ""), 1, "field 'title'"),
    (GOOD + GOOD.replace("title: Ages", "title: Again"), 11, "defined twice"),
    (GOOD.replace("tables: [person]", "tables: [persons]"), 1,
     "no dataset provides table 'persons'"),
    (GOOD.replace("age FROM person", "agee FROM person"), 1, "field 'sql'"),
    (GOOD.replace("SELECT holder, ", "SELECT "), 1, "must output 'holder'"),
    (GOOD.replace(", age FROM", ", age, age + 1 AS older FROM"), 1, "'older' is not declared"),
    (GOOD.replace("person_column: person_id", "person_column: pid"), 1, "field 'person_column'"),
    ("id: not-a-list\n", 1, "expected a list"),
])
def test_bad_view_files_name_the_file_line_and_field(tmp_path, text, line, words):
    with pytest.raises(WorkbenchUserError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert f"views.yaml, line {line}:" in message, message
    assert words in message
    assert caught.value.reason == "bad-view-file"


def test_view_sql_cannot_read_files_while_being_checked(tmp_path):
    text = GOOD.replace("SELECT holder, person_id, age FROM person",
                        "SELECT holder, person_id, age FROM person, read_csv('/etc/passwd')")
    with pytest.raises(WorkbenchUserError, match="field 'sql'"):
        _load(tmp_path, text)


def test_the_public_views_match_the_public_datasets():
    datasets = [Dataset(id=f"x.{s.table}", title="t", description="d", holder="x", table=s.table,
                        source=s.source, file="f.parquet", columns=columns_of(s), rows=1,
                        version="0",
                        quality_score=1, usage_terms="u", created_at=datetime.now(UTC))
                for s in PUBLIC_DATASETS]
    views = load_view_file(PUBLIC_VIEWS)
    check_views(PUBLIC_VIEWS, views, datasets)
    assert {v.id for v, _ in views} == {"lung_survival", "gbsg2_survival", "actg175_trial"}
