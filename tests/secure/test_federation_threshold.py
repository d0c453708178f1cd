"""The in-process ``Federation`` decrypts BFV as a space of holder nodes does (issue 17, item 7):
every holder is a simulated key party of a joint key made without a dealer, each round's sum is
decrypted from the parties' partials (``threshold_node.partial_for_round``, the nodes' own
function), and only the in-process key holder opens and combines them. Results equal the pooled
plaintext fit's, N-out-of-N and t-out-of-N alike; a missing or stale partial releases nothing."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test

from tests.secure.conftest import split_round_robin
from workbench.errors import WorkbenchUserError
from workbench.secure.federation import Federation
from workbench.secure.threshold_local import LocalKeyParties, SimulatedAggregator


def _results(fed: Federation, rossi) -> dict:
    km = fed.kaplan_meier("week", "arrest", by="fin")
    lr = fed.logrank_test("week", "arrest", "fin")
    cox = fed.cox_ph("week", "arrest", ["fin", "age", "prio"])
    return {"km": np.concatenate([km[g].survival_function_.to_numpy().ravel()
                                  for g in sorted(km)]), "chi2": lr.test_statistic,
            "beta": cox.params_.to_numpy(), "n": int(fed.count()),
            "rounds": list(fed.coordinator.log)}


@pytest.mark.parametrize("t", [None, 2])
def test_simulated_key_parties_give_the_pooled_results(rossi, t):
    parts = split_round_robin(rossi, 3)
    fed = Federation(parts, min_cell_count=5, decryption_threshold=t)
    keys = fed.coordinator.keyholder.keys
    assert keys.threshold["parties"] == sorted(parts) and keys.threshold["t"] == (t or 3)
    assert not keys.bfv.has_secret_key()  # the key holder cannot decrypt alone
    assert not hasattr(keys, "ckks")  # the reals ride on the joint BFV key (fixed point)
    assert all(not h.has_secret_key for h in fed.holders)
    threshold = _results(fed, rossi)
    # the other scheme, under another joint key: the same released values
    other_fed = Federation(parts, min_cell_count=5, decryption_threshold=None if t else 2)
    other = _results(other_fed, rossi)
    assert fed.coordinator.keys.fingerprint != other_fed.coordinator.keys.fingerprint
    assert threshold["n"] == other["n"] == len(rossi)
    assert np.array_equal(threshold["km"], other["km"])  # KM: delta S = 0
    assert abs(threshold["chi2"] - other["chi2"]) <= 1e-9
    assert np.abs(threshold["beta"] - other["beta"]).max() <= 1e-6
    # and against the pooled plaintext (lifelines)
    a, b = rossi[rossi["fin"] == 0], rossi[rossi["fin"] == 1]
    assert abs(threshold["chi2"] - logrank_test(a["week"], b["week"], a["arrest"],
                                                b["arrest"]).test_statistic) <= 1e-9
    pooled = CoxPHFitter().fit(rossi[["week", "arrest", "fin", "age", "prio"]], "week",
                               "arrest")
    assert np.abs(threshold["beta"] - pooled.params_.to_numpy()).max() <= 1e-6


class _Dropping(SimulatedAggregator):
    """Forwards one partial fewer than the decrypting set (t - 1 of t, or N - 1 of N)."""

    def submit(self, header, parts):
        from workbench.secure.nodes import Contributions

        partials = self.parties.partials(header, parts, self.registry)[1:]
        return self.aggregator.submit(header, Contributions(parts, partials))


class _Stale(SimulatedAggregator):
    """Forwards the partials of the previous round's sum with this round's contributions."""

    previous = None

    def submit(self, header, parts):
        from workbench.secure.nodes import Contributions

        partials = self.parties.partials(header, parts, self.registry)
        stale, self.previous = self.previous, partials
        return self.aggregator.submit(header, Contributions(parts, stale or partials))


@pytest.mark.parametrize("t", [None, 2])
def test_fewer_partials_or_another_rounds_release_nothing(rossi, t):
    fed = Federation(split_round_robin(rossi, 3), min_cell_count=5, decryption_threshold=t)
    honest = fed.coordinator.aggregator
    fed.coordinator.aggregator = _Dropping(honest.aggregator, honest.parties, honest.registry)
    with pytest.raises(WorkbenchUserError) as refused:
        fed.kaplan_meier("week", "arrest")
    assert refused.value.reason == "missing-partial"
    fed.coordinator.aggregator = _Stale(honest.aggregator, honest.parties, honest.registry)
    fed.count()  # the first round gets its own partials
    with pytest.raises(WorkbenchUserError) as refused:
        fed.count()
    assert refused.value.reason == "bad-partial"
    fed.coordinator.aggregator = honest
    assert int(fed.count()) == len(rossi)


def test_the_parties_withhold_their_shares(rossi):
    parties = LocalKeyParties.generate({h.name: h.signer for h in
                               Federation(split_round_robin(rossi, 2)).holders}, t=None)
    assert "withheld" in repr(parties) and "share=" not in repr(parties.parties).replace(
        "share=<withheld>", "")
    with pytest.raises(ValueError):
        LocalKeyParties.generate({"a": None, "b": None}, t=3)
    with pytest.raises(TypeError):  # a running key holder has its space's key
        Federation(split_round_robin(rossi, 2), keyholder=object(), decryption_threshold=2)
    # one holder holds its own key alone (and nothing from one holder is ever released);
    # more holders than the parameters' noise budget allows are refused, not single-keyed
    assert Federation({"a": rossi}).coordinator.keys.threshold["parties"] == ["a"]
    with pytest.raises(WorkbenchUserError) as err:
        Federation({f"h{i}": rossi.iloc[i::33] for i in range(33)})
    assert err.value.reason == "per-patient-encryption"
