"""Outputs rebuilt from a signed secure result (a security boundary).

The key holder signs every result it releases (``workbench.secure.attest``). When a release
request carries that signature, the airlock verifies it with the space's ``he/release.pub``, checks
that it was released to the requesting study, and rebuilds the output's numbers from the signed
body: curves from the signed Kaplan-Meier groups, tables from the signed counts and statistics,
a model's observations and events from its signed last Newton round. The kernel's copy of those
numbers is ignored. A signature that does not verify refuses the request (``unverified-result``);
it is never downgraded to an unverified output. A request without one is unverified
(``rules.provenance_rule``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.release.outputs import ModelFit, Output, SurvivalCurve
from workbench.release.serialize import from_payload, read_table

REFUSED = "unverified-result"


def _refuse(why: str) -> WorkbenchUserError:
    return WorkbenchUserError(
        f"Release refused ({REFUSED}): the output carries a release checker's signature that "
        f"{why}; nothing was submitted. Release the object wb.secure returned, unchanged.",
        reason=REFUSED)


def output_from_payload(payload: dict, study: str, space: Space) -> Output:
    """The output the rules check: rebuilt from the signed result when the payload carries one,
    else the kernel's payload as sent (unverified)."""
    attestation = payload.get("attestation") if isinstance(payload, dict) else None
    if attestation is None:
        return from_payload(payload)
    from workbench.secure.attest import key_id, load_verify_key, verify

    verify_key = load_verify_key(space)
    try:
        body = verify(attestation, verify_key)
    except WorkbenchUserError:
        raise _refuse("does not verify (forged, altered or made by another space's key "
                      "holder)") from None
    if body["study"] != study:
        raise _refuse("was made for another study")
    view = payload.get("view")
    if view is not None and not isinstance(view, str):
        raise WorkbenchUserError("'view' must be a view id")
    if body.get("view") and view is not None and view != body["view"]:
        raise _refuse("was made on another view than the one the request names")
    view = body.get("view") or view
    build = _BUILDERS.get(body["op"])
    if build is None or not isinstance(body["result"], dict):
        raise _refuse(f"covers an operation the airlock cannot release ({str(body['op'])[:40]})")
    try:
        output = build(body["op"], body["result"], payload)
    except (KeyError, IndexError, TypeError, ValueError):
        raise _refuse("holds a result of an unexpected shape") from None
    output.view = view
    if body.get("spec") is not None and body["op"] in ("cox_ph", "logistic_regression"):
        _check_coefficients(body, output)
    privacy = body["result"].get("privacy")  # a private release: noised by the key holder
    output.attested = {"op": body["op"], "request_id": str(body["request_id"])[:80],
                       "privacy": privacy if isinstance(privacy, dict) else None,
                       "key_id": key_id(verify_key), "spec_sha256": body["spec_sha256"]}
    return output


def _check_coefficients(body: dict, output: Output) -> None:
    """The fit's coefficients are the signed round's plus its Newton step (the coordinator's
    last step, coordinator._newton): a kernel's own coefficients do not pass."""
    result = body["result"]
    try:
        beta = np.asarray(body["spec"]["beta"], dtype=float)
        step = np.linalg.solve(-np.asarray(result["hessian"], dtype=float),
                               np.asarray(result["gradient"], dtype=float))
    except (KeyError, TypeError, ValueError, np.linalg.LinAlgError):
        raise _refuse("holds a model round of an unexpected shape") from None
    params = pd.to_numeric(output.model.params["coef"], errors="coerce").to_numpy(dtype=float) \
        if "coef" in output.model.params.columns else None
    if params is None or params.shape != beta.shape or \
            not np.allclose(params, beta + step, rtol=1e-6, atol=1e-9):
        raise _refuse("does not match the fit: its coefficients differ from the signed round's")


def _labels(result: dict, size: int) -> list[str]:
    labels = [str(label) for label in result.get("labels") or []]
    return labels if len(labels) == size else [f"cell {i + 1}" for i in range(size)]


def _counts(op: str, result: dict, payload: dict) -> Output:
    counts = [int(c) for c in result["counts"]]
    table = pd.DataFrame({"cell": _labels(result, len(counts)),
                          "n": np.array(counts, dtype="int64")})
    return Output("table", table=table, count_columns=("n",))


def _moments(op: str, result: dict, payload: dict) -> Output:
    n = [int(c) for c in result["n"]]
    table = pd.DataFrame({"cell": _labels(result, len(n)), "n": np.array(n, dtype="int64")})
    for stat in ("sum", "mean", "var"):
        if stat in result:
            table[stat] = np.array([np.nan if v is None else float(v) for v in result[stat]])
    return Output("table", table=table, count_columns=("n",))


def _logrank(op: str, result: dict, payload: dict) -> Output:
    table = pd.DataFrame({"test_statistic": [float(result["test_statistic"])],
                          "p_value": [float(result["p_value"])],
                          "degrees_of_freedom": [int(result["degrees_of_freedom"])]})
    return Output("table", table=table)


def _numbers(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _kaplan_meier(op: str, result: dict, payload: dict) -> Output:
    """Each signed group as a curve; a curve that does not start at time 0 gets the opening row
    (everyone at risk, nothing observed) that the result object also shows."""
    curves = []
    for group in result["groups"]:
        n, times = int(group["n"]), _numbers(group["times"])
        if n == 0 or not len(times):
            continue
        table = pd.DataFrame({"time": times, "at_risk": _numbers(group["at_risk"]),
                              "observed": _numbers(group["observed"]),
                              "censored": _numbers(group["censored"])})
        if times[0] > 0:
            opening = pd.DataFrame({"time": [0.0], "at_risk": [float(n)], "observed": [0.0],
                                    "censored": [0.0]})
            table = pd.concat([opening, table], ignore_index=True)
        table["survival"] = np.cumprod(1.0 - table["observed"] / table["at_risk"])
        curves.append(SurvivalCurve(str(group["label"])[:100], table))
    if not curves:
        raise ValueError("no curve")
    return Output("survival", curves=curves)


def _model(op: str, result: dict, payload: dict) -> Output:
    """n and events from the signed last Newton round; the coefficients are the kernel's (the
    round is signed at the coefficients before the last step), so its standard errors must be
    those of the signed Hessian."""
    if payload.get("kind") != "model":
        raise _refuse("is a model's, but the output is not a model fit")
    params = read_table(payload["model"]["params"])
    hessian = np.asarray(result["hessian"], dtype=float)
    n_params = len(result["gradient"])
    if hessian.shape != (n_params, n_params) or len(params) != n_params:
        raise _refuse("covers a model with another number of coefficients")
    if "se(coef)" in params.columns:
        signed = np.sqrt(np.diag(np.linalg.inv(-hessian)))
        if not np.allclose(pd.to_numeric(params["se(coef)"], errors="coerce"), signed,
                           rtol=1e-6, atol=1e-12):
            raise _refuse("does not match the fit: its standard errors differ")
    family = "cox" if op == "cox_ph" else "logistic"
    fit = ModelFit(family=family, params=params, n_obs=int(result["n"]), n_params=n_params,
                   n_events=int(result["events"]))
    return Output("model", model=fit)


_BUILDERS = {"count": _counts, "crosstab": _counts, "histogram": _counts, "sum": _moments,
             "mean": _moments, "var": _moments, "kaplan_meier": _kaplan_meier,
             "logrank_test": _logrank, "cox_ph": _model, "logistic_regression": _model}
