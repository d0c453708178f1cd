"""The secure suite with every node in its own network namespace: each byte between the gateway
and a node crosses a veth interface, and the results still equal the pooled plaintext fits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

from tests.node.conftest import (
    namespaces,
    pooled_rows,
    run_as_kernel,
    running_node_space,
)


def _traffic(interface: str) -> int:
    stats = Path("/sys/class/net") / interface / "statistics"
    return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


@pytest.fixture(scope="module")
def netns_space():
    tag = f"{os.getpid() % 4096:03x}"
    with namespaces(["hospital-a", "insurer-b"], tag) as (made_ns, addresses), \
            running_node_space("wb-nodes-netns-", netns=made_ns, listen=addresses) as made:
        made.addresses, made.tag = addresses, tag
        yield made


def test_nodes_listen_only_inside_their_namespaces(netns_space):
    import json

    registry = json.loads(netns_space.space.node_registry.read_text())["nodes"]
    assert {h: e["address"] for h, e in registry.items()} == netns_space.addresses
    assert all(a.startswith("10.77.") for a in registry.values() for a in [a["address"]])


def test_the_secure_suite_through_namespaced_nodes(netns_space):
    interfaces = [f"wbv{netns_space.tag}{i}h" for i in (1, 2)]
    before = [_traffic(i) for i in interfaces]
    out = run_as_kernel(netns_space.space, """
        km = wb.secure.kaplan_meier("visit_survival", duration_col="days", event_col="event")
        lr = wb.secure.logrank_test("visit_survival", "days", "event", group_col="diagnosis")
        cox = wb.secure.cox_ph("visit_survival", "days", "event", covariates=["age"])
        logit = wb.secure.logistic_regression("visit_survival", "event", covariates=["age"])
        print(json.dumps({
            "times": km.survival_function_.index.tolist(),
            "removed": km.event_table["removed"].tolist(),
            "survival": km.survival_function_["KM_estimate"].tolist(),
            "chi2": float(lr.test_statistic),
            "cox": float(cox.params_["age"]),
            "logit": [float(v) for v in logit.params_.tolist()],
            "count": int(wb.secure.count("visit_survival")),
            "mean": wb.secure.mean("visit_survival", "age"),
        }))
    """)
    after = [_traffic(i) for i in interfaces]
    # every node's share of the work crossed its own interface (TLS records, both ways)
    assert all(b - a > 50_000 for a, b in zip(before, after, strict=True))
    df = pooled_rows(netns_space.space)
    times = np.asarray(out["times"])[np.asarray(out["removed"]) > 0]
    coarse = times[np.searchsorted(times, df["days"].to_numpy(), side="left")]
    ref = KaplanMeierFitter().fit(coarse, df["event"]).survival_function_["KM_estimate"]
    assert np.abs(ref.reindex(out["times"]).to_numpy() - out["survival"]).max() <= 1e-12
    pooled = multivariate_logrank_test(df["days"], df["diagnosis"], df["event"])
    assert abs(out["chi2"] - pooled.test_statistic) <= 1e-9 * max(1.0, pooled.test_statistic)
    cph = CoxPHFitter().fit(df[["days", "event", "age"]], "days", "event",
                            fit_options={"precision": 1e-12})
    assert abs(out["cox"] - cph.params_["age"]) <= 1e-6
    fit = sm.Logit(df["event"], sm.add_constant(df[["age"]].astype(float))).fit(disp=0,
                                                                              tol=1e-12)
    assert np.abs(np.asarray(out["logit"]) - fit.params.to_numpy()).max() <= 1e-6
    assert out["count"] == len(df)
    assert abs(out["mean"] - df["age"].mean()) <= 1e-6
