"""t-out-of-N threshold decryption (``threshold_shamir.py``): 4 parties, t = 3, shares dealt by
the parties themselves after collective key generation (no dealer).

Tries to break it: every set of t decrypts exactly and every set of t - 1 does not; a cheating
party is named by the MAC across sets of t; a partial for a set it is not in, of the wrong size,
or a piece for another party is refused; no Shamir share is the joint secret (an explicit test
oracle forms it only to compare)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import tenseal as ts

from workbench.secure import mac, ops
from workbench.secure import threshold as th
from workbench.secure import threshold_shamir as sh

IDS = [1, 2, 3, 4]
T = 3
NONCE, SPEC_HASH = "round-shamir", "ab" * 32


@pytest.fixture(scope="module")
def space():
    seed = os.urandom(32)
    additive, public = zip(*(th.Party.generate(seed) for _ in IDS), strict=True)
    context = th.tenseal_context(th.joint_public_key(seed, list(public),
                                                     [th.commitment(p) for p in public]))
    dealt = [sh.deal(party, i, IDS, T) for party, i in zip(additive, IDS, strict=True)]
    parties = {j: sh.ShamirParty.receive(j, [d[j] for d in dealt]) for j in IDS}
    # two holders, each with its value-bound MAC in the last slot (mac.py)
    ctx, weight_key = ts.context_from(context), os.urandom(mac.KEY_BYTES)
    rng = np.random.default_rng()
    keys, plain, total = [], [], None
    for _ in range(2):
        keys.append(os.urandom(mac.KEY_BYTES))
        data = rng.integers(0, 1000, th.POLY_DEGREE - ops.MAC_SLOTS)
        slot = mac.holder_slots(keys[-1], weight_key, NONCE, "counts", SPEC_HASH, [data])
        plain.append(np.append(data, slot))
        ct = ts.bfv_vector(ctx, plain[-1].tolist())
        total = ct if total is None else total + ct
    [ciphertext] = th.seal_ciphertexts(context, total.serialize())
    pooled = np.sum(plain, axis=0) % th.PLAIN_MODULUS
    want = mac.expected(keys, weight_key, NONCE, "counts", SPEC_HASH, [pooled[:-1]])[0]
    return {"additive": list(additive), "dealt": dealt, "parties": parties,
            "ciphertext": ciphertext, "pooled": pooled, "mac": want}


def _combine(space, subset, parties=None) -> np.ndarray:
    parties = parties or space["parties"]
    ct = space["ciphertext"]
    return th.decrypt(ct, [parties[j].partial(ct, list(subset)) for j in subset])


def test_any_t_parties_decrypt_exactly_and_t_minus_1_do_not(space):
    for subset in itertools.combinations(IDS, T):
        slots = _combine(space, subset)
        assert np.array_equal(slots % th.PLAIN_MODULUS, space["pooled"])
        assert mac.matches(slots, space["mac"])
    for subset in itertools.combinations(IDS, T - 1):
        ct = space["ciphertext"]
        # each party weights its share for the set it is told is present (a set of t - 1)
        weighted = [sh.ShamirParty(j, T - 1, tuple(IDS), space["parties"][j].share)
                    for j in subset]
        slots = th.decrypt(ct, [p.partial(ct, list(subset)) for p in weighted])
        assert np.mean(slots % th.PLAIN_MODULUS == space["pooled"]) < 0.01
        assert not mac.matches(slots, space["mac"])


def test_a_cheating_party_is_named_across_sets_of_t(space):
    honest = space["parties"]
    cheater = 2
    wrong = dict(honest)
    noise = th.common_polynomial(os.urandom(32))[:3]
    wrong[cheater] = sh.ShamirParty(cheater, T, tuple(IDS), (honest[cheater].share + noise)
                                    % th._PRIMES)
    outcomes = {frozenset(s): mac.matches(_combine(space, s, wrong), space["mac"])
                for s in itertools.combinations(IDS, T)}
    assert sum(outcomes.values()) == 1  # only the set without the cheater passes
    assert sh.suspects(outcomes) == {cheater}
    assert sh.suspects({frozenset(s): True for s in outcomes}) == set()


def test_misuse_is_refused(space):
    party, ct = space["parties"][1], space["ciphertext"]
    with pytest.raises(th.ThresholdError, match="exactly t"):
        party.partial(ct, [2, 3, 4])  # a set it is not in
    with pytest.raises(th.ThresholdError, match="exactly t"):
        party.partial(ct, [1, 2])
    with pytest.raises(th.ThresholdError, match="distinct"):
        party.partial(ct, [1, 1, 2])
    pieces = [d[1] for d in space["dealt"]]
    with pytest.raises(th.ThresholdError, match="another party"):
        sh.ShamirParty.receive(2, pieces)
    with pytest.raises(th.ThresholdError, match="every party"):
        sh.ShamirParty.receive(1, pieces[:-1])
    with pytest.raises(th.ThresholdError, match="every party"):
        sh.ShamirParty.receive(1, [pieces[0]] * len(IDS))
    assert "withheld" in repr(party)


def test_no_shamir_share_is_the_joint_secret(space):
    # TEST ORACLE ONLY: the joint secret, in NTT form, which the protocol never forms
    joint = sh._transform(np.sum([p.share for p in space["additive"]], axis=0)[None, :]
                          % th._PRIMES, to_ntt=True)
    assert not any(np.array_equal(p.share, joint) for p in space["parties"].values())
    lambdas = {j: sh.lagrange(j, [1, 2, 3]) for j in (1, 2, 3)}
    recombined = sum(space["parties"][j].share * lambdas[j] % th._PRIMES for j in lambdas)
    assert np.array_equal(recombined % th._PRIMES, joint)  # t shares interpolate to it


def test_blame_sets_name_any_one_wrong_party_and_nothing_when_all_fail_alike():
    order = ["a", "b", "c", "d"]
    sets = sh.blame_sets(order, T)
    assert sets[0] == ["a", "b", "c"] and len(sets) == T + 1
    assert all(len(s) == T and s == sorted(s) for s in sets)
    assert sum("d" in s for s in sets) == T  # the spare computes t partials, like the others
    for wrong in order:
        outcomes = {frozenset(s): wrong not in s for s in sets}
        assert sh.suspects(outcomes) == {wrong}
    assert sh.suspects({frozenset(s): False for s in sets}) == set()  # not a partial
    assert sh.blame_sets(order[:T], T) == [["a", "b", "c"]]  # no spare: nothing to name with
    with pytest.raises(th.ThresholdError):
        sh.blame_sets(["a", "a", "b"], 2)


def _federation(rossi, t):
    from tests.secure.conftest import split_round_robin
    from workbench.secure.federation import Federation

    return Federation(split_round_robin(rossi, 3), min_cell_count=5, decryption_threshold=t)


def test_a_federation_names_the_key_party_with_a_wrong_share_and_releases_nothing(rossi):
    import dataclasses

    from workbench.errors import WorkbenchUserError

    fed = _federation(rossi, 2)
    assert int(fed.count()) == len(rossi)
    keys = fed.coordinator.aggregator.parties.parties
    wrong = sorted(keys)[1]
    share = keys[wrong].share.copy()
    share[:, 0] = (share[:, 0] + 1) % th._PRIMES[:, 0]
    keys[wrong] = dataclasses.replace(keys[wrong], share=share)
    for _ in range(3):  # whichever random set of t is released from
        with pytest.raises(WorkbenchUserError) as refused:
            fed.count()
        said = str(refused.value)
        assert refused.value.reason == "bad-partial", said
        assert [h for h in sorted(keys) if h in said] == [wrong], said
        assert str(len(rossi)) not in said


def test_n_of_n_says_the_wrong_partial_is_not_named(rossi):
    from workbench.errors import WorkbenchUserError

    fed = _federation(rossi, None)
    keys = fed.coordinator.aggregator.parties.parties
    wrong = sorted(keys)[0]
    keys[wrong] = th.Party.generate(os.urandom(32))[0]  # a share that is not in the key
    with pytest.raises(WorkbenchUserError) as refused:
        fed.count()
    assert refused.value.reason == "mac-mismatch"
    assert "not named (N-out-of-N)" in str(refused.value)
    assert not [h for h in keys if h in str(refused.value)]


def test_a_wrong_spare_is_named_even_when_the_released_set_passes(rossi, monkeypatch):
    """Fail closed: the set released from (T0) is honest and passes its MAC, the spare's
    partials are wrong; the round still releases nothing and names the spare."""
    import dataclasses

    from workbench.errors import WorkbenchUserError
    from workbench.secure import threshold_local

    fed = _federation(rossi, 2)
    keys = fed.coordinator.aggregator.parties.parties
    spare = sorted(keys)[0]
    order = [*sorted(set(keys) - {spare}), spare]

    class Fixed:
        def sample(self, population, k):
            return order[:k]

    monkeypatch.setattr(threshold_local.secrets, "SystemRandom", Fixed)
    assert int(fed.count()) == len(rossi)
    share = keys[spare].share.copy()
    share[:, 1] = (share[:, 1] + 1) % th._PRIMES[:, 0]
    keys[spare] = dataclasses.replace(keys[spare], share=share)
    with pytest.raises(WorkbenchUserError) as refused:
        fed.count()
    assert refused.value.reason == "bad-partial"
    assert [h for h in sorted(keys) if h in str(refused.value)] == [spare]
