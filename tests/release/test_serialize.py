"""What may cross from the kernel to the airlock (security boundary: serialize.py; SVG figures:
test_svg.py)."""

from __future__ import annotations

import base64
import io
import pickle
import zlib

import matplotlib
import pandas as pd
import pyarrow as pa
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi

from workbench.errors import WorkbenchUserError
from workbench.release.serialize import clean_png, from_payload, to_payload

matplotlib.use("Agg")


def test_pickle_is_never_accepted():
    evil = base64.b64encode(pickle.dumps(pd.DataFrame({"n": [10]}))).decode()
    with pytest.raises(WorkbenchUserError):
        from_payload({"kind": "table", "table": evil})


def test_nested_or_binary_columns_are_refused():
    table = pa.table({"blob": pa.array([b"\x00\x01"]), "n": [10]})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = {"kind": "table", "table": base64.b64encode(sink.getvalue()).decode()}
    with pytest.raises(WorkbenchUserError, match="blob"):
        from_payload(payload)


def test_png_text_chunks_do_not_survive():
    """A PNG can carry text chunks: a way to smuggle rows out inside a 'figure'."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Description": "SECRET-ROWS-1234"})
    plt.close(fig)
    raw = buf.getvalue()
    assert b"SECRET-ROWS-1234" in raw
    smuggled = raw + b"trailing SECRET-ROWS-5678"
    clean = clean_png(smuggled)
    assert b"SECRET-ROWS" not in clean and b"SECRET-ROWS" not in zlib.compress(clean)
    assert clean.startswith(b"\x89PNG")


def test_cox_fit_carries_what_the_rules_need():
    fit = CoxPHFitter().fit(load_rossi(), "week", "arrest")
    model = from_payload(to_payload(fit)).model
    assert (model.family, model.n_obs, model.n_params, model.n_events) == ("cox", 432, 7, 114)


def test_unsupported_objects_say_what_to_release():
    with pytest.raises(WorkbenchUserError, match="DataFrame"):
        to_payload(object())


def test_oversized_tables_are_refused():
    big = pd.DataFrame({"n": range(300_000)})
    with pytest.raises(WorkbenchUserError) as err:
        from_payload(to_payload(big))
    assert err.value.reason == "release-too-large"


def test_wb_secure_results_are_released_with_their_counts():
    """The secure-computation result objects (rebuilt from the key holder's released JSON)."""
    from workbench.release import rules
    from workbench.secure.results import KaplanMeierGroups, KaplanMeierResult, RegressionResult

    def group(label, n):
        return {"label": label, "n": n, "times": [0.0, 30.0, 60.0],
                "removed": [0, 12, 15], "observed": [0, 12, 11], "censored": [0, 0, None],
                "at_risk": [n, n, n - 12]}

    km = KaplanMeierGroups({"imatinib": KaplanMeierResult(group("tki=imatinib", 80), 0.05),
                            "nilotinib": KaplanMeierResult(group("tki=nilotinib", 60), 0.05)})
    out = from_payload(to_payload(km, view="cml_cohort"))
    assert [c.group for c in out.curves] == ["imatinib", "nilotinib"]
    assert out.curves[0].table["at_risk"].tolist() == [80, 80, 68]
    assert rules.count_cells(out)["TOTAL::n"] == 140
    cox = RegressionResult({"covariates": ["age", "tki"], "params": [0.1, -0.4],
                            "covariance": [[0.01, 0.0], [0.0, 0.04]], "loglik": -100.0,
                            "n": 140, "events": 45, "iterations": 5}, "CoxPHResult")
    model = from_payload(to_payload(cox)).model
    assert (model.family, model.n_obs, model.n_params, model.n_events) == ("cox", 140, 2, 45)
    logit = RegressionResult({"covariates": ["a"], "params": [0.2], "covariance": [[0.01]],
                              "loglik": -50.0, "n": 30, "events": 25, "iterations": 4},
                             "LogisticRegressionResult")
    verdict, results = rules.run_rules(from_payload(to_payload(logit)), rules.Thresholds(), [])
    assert verdict == "fail" and "model-events" in [r.rule for r in results
                                                    if r.verdict == "fail"]  # 5 non-events
