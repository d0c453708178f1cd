"""``threshold_node.py`` in one process: what a node checks before its partial decryption and
what the release checker checks before it combines (the same code the nodes and the key holder
run; tests/node/test_node_threshold.py runs it across real nodes and accounts)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from nacl.public import PrivateKey

from workbench.errors import WorkbenchUserError
from workbench.secure import nodes, ops, signing
from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure.keys import PublicKeys, fingerprint_of

HOLDERS = ["h1", "h2", "h3"]
SPEC = {"duration_col": "time", "event_col": "status", "resolution": 1.0, "n_bins": 200,
        "by": []}


@pytest.fixture(scope="module")
def world():
    seed = os.urandom(32)
    parties, shares = zip(*(th.Party.generate(seed) for _ in HOLDERS), strict=True)
    joint = th.tenseal_context(th.joint_public_key(seed, list(shares),
                                                   [th.commitment(s) for s in shares]))
    keys = PublicKeys(joint, fingerprint_of(joint), {"parties": HOLDERS})
    signers, registry = signing.ephemeral(HOLDERS)
    checker = PrivateKey.generate()
    rng = np.random.default_rng(7)
    vectors = {h: rng.integers(0, 50, ops.sizes("survival", SPEC)["bfv"]) for h in HOLDERS}
    return {"parties": dict(zip(HOLDERS, parties, strict=True)), "keys": keys,
            "signers": signers, "registry": registry, "checker": checker, "vectors": vectors}


def _round(world, nonce=None):
    nonce = nonce or signing.new_nonce()
    parts = [nodes.seal(world["keys"], world["signers"][h], "survival", SPEC, nonce,
                        {"bfv": world["vectors"][h]}) for h in HOLDERS]
    return nonce, parts


def _ask(world, holder, nonce, parts, aggregates=None, guard=None, party=None):
    keys = world["keys"]
    if aggregates is None:
        aggregates = [tn.digest(s) for s in tn.pooled([p.blobs for p in parts])]
    return tn.partial_for_round(
        party or world["parties"][holder], world["signers"][holder],
        bytes(world["checker"].public_key), world["registry"],
        fingerprint=keys.fingerprint, kind="survival", spec=SPEC, nonce=nonce,
        parts=[{"holder": p.contributors[0], "per_scheme": p.per_scheme, "envelope": p.envelope}
               for p in parts], blobs=[b for p in parts for b in p.blobs], aggregates=aggregates,
        min_holders=3, nonces=guard or signing.NonceGuard())


def _combine(world, nonce, parts, answers, checker=None):
    keys = world["keys"]
    pooled = nodes.Aggregator(keys).combine(parts)  # what the aggregator sends on
    sums = tn.pooled_from_sum(pooled.blobs)
    return tn.open_and_combine(checker or world["checker"], world["registry"], HOLDERS,
                               nonce=nonce, kind="survival", spec=SPEC, sums=sums,
                               partials=[a[0] for a in answers], boxes=[a[1] for a in answers])


def _reason(call) -> str:
    with pytest.raises(WorkbenchUserError) as caught:
        call()
    return caught.value.reason


def test_every_partial_combines_into_the_pooled_sum(world):
    nonce, parts = _round(world)
    answers = [_ask(world, h, nonce, parts) for h in HOLDERS]
    [slots] = _combine(world, nonce, parts, answers)
    want = np.sum(list(world["vectors"].values()), axis=0)
    assert np.array_equal(slots[:len(want)], want)
    assert all(a[0]["signers"] == HOLDERS for a in answers)


def test_a_node_refuses_what_is_not_a_fresh_pooled_sum(world):
    nonce, parts = _round(world)
    one = [tn.digest(tn.pooled([parts[0].blobs])[0])]
    assert _reason(lambda: _ask(world, "h1", nonce, parts[:1], one)) == "min-holders"
    assert _reason(lambda: _ask(world, "h1", nonce, parts[:2])) == "min-holders"
    assert _reason(lambda: _ask(world, "h1", nonce, parts, one)) == "not-the-aggregate"
    assert _reason(lambda: _ask(world, "h1", nonce, [parts[0], parts[0], parts[1]])) \
        == "duplicate-holder"
    _other, elsewhere = _round(world)  # contributions signed for another round
    assert _reason(lambda: _ask(world, "h1", nonce, elsewhere)) == "bad-signature"
    for junk in (b"", parts[0].blobs[0][:-100], b"\x12\xff\xff", parts[0].blobs[0] * 2):
        assert _reason(lambda junk=junk: tn.vector_residues(junk)) == "malformed-ciphertext"
    guard = signing.NonceGuard()
    _ask(world, "h1", nonce, parts, guard=guard)
    assert _reason(lambda: _ask(world, "h1", nonce, parts, guard=guard)) == "replayed-round"


def test_the_checker_refuses_foreign_missing_or_misdirected_partials(world):
    nonce, parts = _round(world)
    answers = [_ask(world, h, nonce, parts) for h in HOLDERS]
    assert _reason(lambda: _combine(world, nonce, parts, answers[:2])) == "missing-partial"
    assert _reason(lambda: _combine(world, nonce, parts, [answers[0], answers[0],
                                                          answers[2]])) == "unknown-party"
    relabelled = ({**answers[2][0], "holder": "h2"}, answers[2][1])  # h3's box claimed as h2's
    assert _reason(lambda: _combine(world, nonce, parts, [answers[0], relabelled,
                                                          answers[2]])) == "bad-partial"
    assert _reason(lambda: _combine(world, nonce, parts, answers, PrivateKey.generate())) \
        == "bad-partial"  # sealed to the checker: no other key opens it
    later, again = _round(world)  # a partial of another round's sum
    stale = _ask(world, "h3", nonce, parts)
    fresh = [_ask(world, h, later, again) for h in HOLDERS[:2]]
    assert _reason(lambda: _combine(world, later, again, [*fresh, stale])) == "bad-partial"


def test_a_partial_from_a_wrong_share_decrypts_to_something_else(world):
    nonce, parts = _round(world)
    wrong, _ = th.Party.generate(os.urandom(32))
    answers = [_ask(world, h, nonce, parts) for h in HOLDERS[:2]]
    answers.append(_ask(world, "h3", nonce, parts, party=wrong))
    [slots] = _combine(world, nonce, parts, answers)
    want = np.sum(list(world["vectors"].values()), axis=0)
    assert not np.array_equal(slots[:len(want)], want)


def test_t_of_n_partials_from_the_named_parties_combine_and_fewer_do_not(world):
    from workbench.secure import threshold_shamir as sh

    ids = [1, 2, 3]
    dealt = [sh.deal(world["parties"][h], i, ids, 2) for h, i in zip(HOLDERS, ids, strict=True)]
    shamir = {h: sh.ShamirParty.receive(i, [d[i] for d in dealt])
              for h, i in zip(HOLDERS, ids, strict=True)}
    nonce, parts = _round(world)
    present = ["h1", "h3"]

    def ask(holder, named=present):
        keys = world["keys"]
        sums = tn.pooled([p.blobs for p in parts])
        return tn.partial_for_round(
            shamir[holder], world["signers"][holder], bytes(world["checker"].public_key),
            world["registry"], fingerprint=keys.fingerprint,
            kind="survival", spec=SPEC, nonce=nonce,
            parts=[{"holder": p.contributors[0], "per_scheme": p.per_scheme,
                    "envelope": p.envelope} for p in parts],
            blobs=[b for p in parts for b in p.blobs], aggregates=[tn.digest(s) for s in sums],
            min_holders=3, nonces=signing.NonceGuard(), parties=HOLDERS, present=named)

    def combine(answers):
        keys = world["keys"]
        sums = tn.pooled_from_sum(nodes.Aggregator(keys).combine(parts).blobs)
        return tn.open_and_combine(world["checker"], world["registry"], HOLDERS, nonce=nonce,
                                   kind="survival", spec=SPEC, sums=sums, t=2,
                                   partials=[a[0] for a in answers],
                                   boxes=[a[1] for a in answers])

    [slots] = combine([ask("h1"), ask("h3")])
    want = np.sum(list(world["vectors"].values()), axis=0)
    assert np.array_equal(slots[:len(want)], want)
    assert _reason(lambda: combine([ask("h1")])) == "missing-partial"
    assert _reason(lambda: ask("h2")) == "malformed-message"  # not among the named parties
    assert _reason(lambda: ask("h1", ["h1"])) == "malformed-message"  # fewer than t named
    # a partial made for another set of parties does not pass as one for this set
    other = ask("h3", ["h2", "h3"])
    assert _reason(lambda: combine([ask("h1"), other])) == "bad-partial"
