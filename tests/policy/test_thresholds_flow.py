"""One ``Thresholds`` (workbench.policy.model): every value a study's policy sets reaches the
airlock's rules and the key holder's release check unchanged, and decides there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from workbench.policy.model import Policy, Thresholds
from workbench.release import rules
from workbench.release.airlock import thresholds_for
from workbench.release.outputs import Output
from workbench.secure import Federation
from workbench.secure import release as secure_release
from workbench.secure.release import ReleaseRefused

SET = {"min_cell_count": 7, "dominance": {"n": 3, "k": 0.8}, "p_percent": 0.2, "min_dof": 12,
       "zeros_are_disclosive": False, "min_holders": 3, "max_rounds_per_day": 55}


def _policy(thresholds: dict) -> Policy:
    return Policy.model_validate({
        "users": {"alice": {"roles": ["researcher"]}},
        "studies": {"s": {"title": "t", "purpose": "p", "sponsor": "x", "members": ["alice"],
                          "expires": "2099-12-31", "thresholds": thresholds}}})


def test_the_airlock_and_the_key_holder_get_every_value_the_policy_sets(monkeypatch):
    policy = _policy(SET)
    stated = policy.studies["s"].thresholds
    assert thresholds_for(policy, "s") is stated  # the airlock: the policy's own object
    appetite = stated.acro_risk_appetite()
    assert (appetite["safe_threshold"], appetite["safe_nk_n"], appetite["safe_nk_k"],
            appetite["safe_pratio_p"], appetite["safe_dof_threshold"],
            appetite["zeros_are_disclosive"]) == (7, 3, 0.8, 0.2, 12, False)
    # the key holder: what the gateway sends (the policy's entry, dumped) comes back whole
    seen = []
    parse = secure_release.thresholds_from
    monkeypatch.setattr(secure_release, "thresholds_from",
                        lambda data, floor=1: seen.append(parse(data, floor)) or seen[-1])
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"g": rng.choice(["a", "b"], 90)})
    parts = {f"h{i}": frame.iloc[i::3] for i in range(3)}
    fed = Federation(parts)
    fed.coordinator.thresholds = stated.model_dump()  # as workbench/gateway/app.py passes them
    fed.count(by="g")
    assert seen[-1] == stated


@pytest.mark.parametrize("k, passes", [(8, True), (9, False)])
def test_min_cell_count_decides_in_both_places(k, passes):
    thresholds = _policy({"min_cell_count": k}).studies["s"].thresholds
    table = pd.DataFrame({"group": ["a", "b"], "n": [8, 30]})
    verdict, _ = rules.run_rules(Output("table", table=table, count_columns=("n",)),
                                 thresholds, [])
    assert (verdict != "fail") == passes
    frame = pd.DataFrame({"g": ["a"] * 8 + ["b"] * 30})
    parts = {"h0": frame.iloc[::2], "h1": frame.iloc[1::2]}
    fed = Federation(parts)
    fed.coordinator.thresholds = thresholds.model_dump()
    if passes:
        assert fed.count(by="g").tolist() == [8, 30]
    else:
        with pytest.raises(ReleaseRefused):
            fed.count(by="g")


def test_one_default_and_a_service_floor():
    assert Thresholds().dominance_k == 0.9  # one default, no longer 0.85 in one place
    assert secure_release.thresholds_from({"min_cell_count": 3}, floor=5).min_cell_count == 5
    with pytest.raises(ValidationError):  # a secure result always pools two holders or more
        Thresholds(min_holders=1)
