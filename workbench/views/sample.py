"""A small, fully synthetic space with a known shape, for the view/gateway tests and the gateway
benchmark (which needs exact row counts). Demo spaces come from ``workbench init``."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.accounts import GATEWAY, ensure_user, is_root
from workbench.catalog.models import Column, Dataset, View
from workbench.catalog.store import Catalog
from workbench.paths import Space
from workbench.space.linkage import new_key, study_rekey_key_path, write_key

HOLDERS = ("hospital-a", "insurer-b")

VISIT_COLUMNS = (
    Column(name="person_id", type="string", description="space-wide pseudonym",
           sensitivity="quasi_identifier", role="identifier"),
    Column(name="visit_date", type="date", description="day of the visit",
           sensitivity="quasi_identifier"),
    Column(name="age", type="int64", description="age in years at the visit",
           sensitivity="quasi_identifier", role="covariate", grid=(0, 20, 40, 60, 80, 100)),
    Column(name="diagnosis", type="string", description="ICD-10 chapter", role="categorical",
           levels=("C92", "I10", "E11", "J45")),
    Column(name="cost", type="float64", description="cost of the visit in EUR",
           sensitivity="sensitive", role="covariate"),
    Column(name="mrn", type="string", description="hospital record number",
           sensitivity="direct_identifier"),
)
_VIEW_SQL = "SELECT person_id, visit_date, age, diagnosis, cost, mrn, holder FROM visit"


def sample_views() -> list[View]:
    base = dict(tables=("visit",), sql=_VIEW_SQL, columns=VISIT_COLUMNS + (
        Column(name="holder", type="string", description="data holder of the row"),),
        person_column="person_id", date_columns=("visit_date",))
    return [
        View(id="visits", title="Visits", description="every visit, dates shifted per person",
             date_policy="shift", min_rows=5, **base),
        View(id="visits_monthly", title="Visits by month", description="dates cut to the month",
             date_policy="month", min_rows=5, **base),
        View(id="elderly", title="Visits over 200", description="empty: below min_rows",
             date_policy="year", row_filter="age > 200", min_rows=5, **base),
    ]


def _dataset(space: Space, holder: str, frame: pa.Table) -> Dataset:
    folder = space.holder_dir(holder)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(frame, folder / "visit.parquet")
    version = hashlib.sha256((folder / "visit.parquet").read_bytes()).hexdigest()
    schema = holder.replace("-", "_")
    return Dataset(
        id=f"{schema}.visit", title=f"Visits at {holder}", description="synthetic visits",
        holder=holder, table="visit", source="synthetic", file="visit.parquet",
        columns=VISIT_COLUMNS, rows=frame.num_rows, version=version, quality_score=0.9,
        usage_terms="test data", created_at=datetime.now(UTC))


def build_sample_space(root: Path, rows: int = 200, persons: int | None = None,
                       seed: int = 7, extra_views: list[View] = (),
                       holders: tuple[str, ...] = HOLDERS) -> Space:
    """A space at ``root`` with ``rows`` visits split over ``holders`` (two by default; more
    for the node benchmark), the sample views, and a study re-keying key; owned like a real
    space when run as root."""
    space = Space(Path(root))
    space.root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    persons = persons or max(rows // 4, 1)
    person = rng.integers(0, persons, rows)
    table = pa.table({
        "person_id": pa.array([f"p{p:09d}" for p in person]),
        "visit_date": pa.array((np.datetime64("2020-01-01") + rng.integers(0, 1500, rows))
                               .astype("datetime64[D]")),
        "age": pa.array(rng.integers(18, 95, rows)),
        "diagnosis": pa.array(rng.choice(["C92", "I10", "E11", "J45"], rows)),
        "cost": pa.array(np.round(rng.gamma(2.0, 400.0, rows), 2)),
        "mrn": pa.array([f"MRN{i:08d}" for i in range(rows)]),
    })
    # unequal shares (1 : 2 : ... : k), so per-holder counts are distinguishable
    weights = np.arange(1, len(holders) + 1)
    edges = [0, *(int(e) for e in rows * np.cumsum(weights)[:-1] // weights.sum()), rows]
    parts = {h: table.slice(a, b - a) for h, a, b in zip(holders, edges[:-1], edges[1:],
                                                          strict=True)}
    for holder, part in parts.items():
        Catalog.write(space, _dataset(space, holder, part))
    for view in list(sample_views()) + list(extra_views):
        Catalog.write(space, view)
    key_path = study_rekey_key_path(space)
    if not key_path.exists():
        write_key(key_path, new_key())
    space.manifest.write_text(json.dumps({"space_id": "sample", "holders": list(holders)}))
    if is_root():
        uid, gid = ensure_user(GATEWAY)
        for path in [space.holders, space.catalog, *space.holders.rglob("*"),
                     *space.catalog.rglob("*")]:
            os.chown(path, uid, gid)
        os.chmod(space.holders, 0o700)
        os.chmod(space.catalog, 0o750)  # noqa: S103 (the layout of docs/architecture.md)
    return space
