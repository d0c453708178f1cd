"""The secure suite and plain reads through holder nodes: the gateway opens no store."""

from __future__ import annotations

import numpy as np
from lifelines import CoxPHFitter, KaplanMeierFitter

from tests.node.conftest import pooled_rows, run_as_kernel


def test_view_read_merges_the_nodes_protected_partitions(node_space):
    out = run_as_kernel(node_space.space, """
        df = wb.view("visit_survival", columns=["person_id", "age", "holder"])
        print(json.dumps({"rows": len(df), "holders": sorted(df["holder"].unique().tolist()),
                          "ids": df["person_id"].head(3).tolist(),
                          "ages": sorted(df["age"].tolist())}))
    """)
    df = pooled_rows(node_space.space)
    assert out["rows"] == len(df)
    assert out["holders"] == ["hospital-a", "insurer-b"]
    assert sorted(df["age"].tolist()) == out["ages"]
    raw = set(df["person_id"])
    assert not raw & set(out["ids"])  # per-study pseudonyms, made at the nodes


def test_kaplan_meier_and_cox_equal_the_pooled_fit(node_space):
    out = run_as_kernel(node_space.space, """
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        cox = wb.secure.cox_ph("visit_survival", "days", "event", covariates=["age"])
        print(json.dumps({
            "times": km.survival_function_.index.tolist(),
            "removed": km.event_table["removed"].tolist(),
            "survival": km.survival_function_["KM_estimate"].tolist(),
            "coef": float(cox.params_["age"]), "mean_age": wb.secure.mean("visit_survival", "age"),
        }))
    """)
    df = pooled_rows(node_space.space)
    times = np.asarray(out["times"])[np.asarray(out["removed"]) > 0]
    coarse = times[np.searchsorted(times, df["days"].to_numpy(), side="left")]
    kmf = KaplanMeierFitter().fit(coarse, df["event"])
    ref = kmf.survival_function_["KM_estimate"].reindex(out["times"]).to_numpy()
    assert np.abs(ref - np.asarray(out["survival"])).max() <= 1e-12
    cph = CoxPHFitter().fit(df[["days", "event", "age"]], "days", "event",
                            fit_options={"precision": 1e-12})
    assert abs(out["coef"] - cph.params_["age"]) <= 1e-6
    assert abs(out["mean_age"] - df["age"].mean()) <= 1e-6

