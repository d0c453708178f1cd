"""The catalog contract refuses entries that would point the gateway outside a holder's store."""

import pydantic
import pytest

from workbench.catalog.models import Dataset

BASE = dict(id="hospital_a.person", title="t", description="d", holder="hospital-a",
            table="person", source="synthetic", columns=[], rows=0, version="0" * 64,
            quality_score=1, usage_terms="u", created_at="2026-01-01T00:00:00")


@pytest.mark.parametrize("file", ["../insurer/cost.parquet", "/etc/passwd.parquet",
                                  "sub/person.parquet", ".hidden.parquet", "person.csv",
                                  "..parquet"])
def test_data_file_outside_the_holder_store_is_refused(file):
    with pytest.raises(pydantic.ValidationError, match="plain"):
        Dataset.model_validate({**BASE, "file": file})


def test_plain_parquet_file_is_accepted():
    assert Dataset.model_validate({**BASE, "file": "person.parquet"}).file == "person.parquet"
