"""wb.secure end to end: a study kernel's uid calls wb.secure.* over its gateway socket; the
gateway runs the op over the view's holder partitions, the key holder process decrypts. The
answers must equal lifelines on the same rows read directly from the holders' stores."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import space_support
from lifelines import CoxPHFitter, KaplanMeierFitter

from workbench.accounts import ensure_user, study_kernel_user
from workbench.catalog.models import Column, View

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STUDY = "he-e2e"
POLICY = f"""\
users:
  alice: {{roles: [researcher]}}
studies:
  {STUDY}:
    title: HE end to end
    purpose: secure computation tests
    sponsor: tests
    members: [alice]
    views: [visit_survival]
    expires: 2099-12-31
    thresholds: {{min_cell_count: 10}}
"""
SQL = ("SELECT person_id, age, holder, CAST(date_diff('day', DATE '2020-01-01', visit_date) "
       "AS BIGINT) AS days, CAST(cost > 800 AS INTEGER) AS event FROM visit")


@pytest.fixture(scope="module")
def gateway():
    from workbench.gateway.server import start_gateway
    from workbench.provenance.service import start_collector
    from workbench.secure.keys import create_keys
    from workbench.secure.process import start_aggregator, start_keyholder
    from workbench.views.sample import build_sample_space

    root = Path(tempfile.mkdtemp(prefix="wb-he-e2e-", dir="/tmp"))
    os.chmod(root, 0o755)
    view = View(id="visit_survival", title="visit survival", description="days to a visit",
                tables=("visit",), sql=SQL, min_rows=5, person_column="person_id", columns=(
                    Column(name="person_id", type="string", description="pseudonym",
                           sensitivity="quasi_identifier"),
                    Column(name="age", type="int64", description="age", role="covariate",
                           grid=(0, 20, 40, 60, 80, 100)),
                    Column(name="holder", type="string", description="data holder"),
                    Column(name="days", type="int64", description="days since 2020-01-01",
                           sensitivity="sensitive", role="time", granularity=1, horizon=1500,
                           grid=(0, 250, 500, 750, 1000, 1250, 1500)),
                    Column(name="event", type="int64", description="an expensive visit",
                           sensitivity="sensitive", role="event")))
    space = build_sample_space(root / "space", rows=600, extra_views=[view])
    os.chmod(space.root, 0o755)
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    os.chmod(policy, 0o644)
    ensure_user(study_kernel_user(STUDY))
    create_keys(space)
    services = []
    try:
        services.append(start_collector(space))
        services.append(start_keyholder(space, min_cell_floor=5))
        services.append(start_aggregator(space))
        services.append(start_gateway(space, policy))
        yield space
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_as_kernel(space, code: str) -> dict:
    return space_support.run_as_kernel(space, STUDY, code, kernel_id="k-he")


def pooled_rows(space) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(space.holders.rglob("visit.parquet"))]
    df = pd.concat(frames, ignore_index=True)
    df["days"] = (pd.to_datetime(df["visit_date"]) - pd.Timestamp("2020-01-01")).dt.days
    df["event"] = (df["cost"] > 800).astype(int)
    return df


def test_kaplan_meier_cox_and_mean_from_a_kernel(gateway):
    out = run_as_kernel(gateway, """
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        cox = wb.secure.cox_ph("visit_survival", "days", "event", covariates=["age"])
        print(json.dumps({
            "times": km.survival_function_.index.tolist(),
            "removed": km.event_table["removed"].tolist(),
            "survival": km.survival_function_["KM_estimate"].tolist(),
            "at_risk_min": int(km.event_table["at_risk"].min()),
            "median": km.median_survival_time_,
            "coef": float(cox.params_["age"]), "mean_age": wb.secure.mean("visit_survival", "age"),
        }))
    """)
    df = pooled_rows(gateway)
    # the released rows merge days until each holds 0 or >= 10 events and censorings: the
    # curve is lifelines' on the durations rounded up to the released times
    times = np.asarray(out["times"])[np.asarray(out["removed"]) > 0]  # not the t=0 row
    coarse = times[np.searchsorted(times, df["days"].to_numpy(), side="left")]
    kmf = KaplanMeierFitter().fit(coarse, df["event"])
    ref = kmf.survival_function_["KM_estimate"].reindex(out["times"]).to_numpy()
    assert np.abs(ref - np.asarray(out["survival"])).max() <= 1e-12
    assert out["at_risk_min"] >= 10
    cph = CoxPHFitter().fit(df[["days", "event", "age"]], "days", "event",
                            fit_options={"precision": 1e-12})
    assert abs(out["coef"] - cph.params_["age"]) <= 1e-6
    assert abs(out["mean_age"] - df["age"].mean()) <= 1e-6


def test_a_refusal_reaches_the_kernel_as_a_user_error(gateway):
    days = np.sort(pooled_rows(gateway)["days"].to_numpy())
    edge = int(days[3]) + 1  # a first bin holding only a handful of rows
    assert 0 < (days < edge).sum() < 10
    out = run_as_kernel(gateway, f"""
        from workbench.errors import WorkbenchUserError
        out = {{}}
        for name, call in (
                ("edges", lambda: wb.secure.histogram("visit_survival", "days",
                                                      bins=[0, {edge}, 2000])),
                ("role", lambda: wb.secure.kaplan_meier("visit_survival", duration_col="age",
                                                         event_col="event"))):
            try:
                call()
                out[name] = None
            except WorkbenchUserError as exc:
                out[name] = str(exc)
        grid = wb.secure.histogram("visit_survival", "days")
        out["grid"] = [grid.edges.tolist(), grid.counts.tolist()]
        print(json.dumps(out))
    """)
    # caller-chosen edges could bisect a value: refused, naming the public grid, no number
    assert "public grid" in out["edges"] and str(edge) not in out["edges"]
    assert "cannot be the duration" in out["role"] and "'covariate'" in out["role"]
    edges, counts = out["grid"]
    assert set(edges) <= {0, 250, 500, 750, 1000, 1250, 1500} and min(counts) >= 10
