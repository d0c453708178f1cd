"""t-out-of-N threshold decryption on top of ``threshold.py`` (issue 17; docs/secure.md).

No dealer: after collective key generation each party i holds an additive share s_i of the joint
secret s = sum s_i. It re-shares it with Shamir's scheme over R_q: a random polynomial in the
party index, f_i(x) = s_i + a_i1 x + ... + a_i,t-1 x^(t-1) (each a_ik uniform in R_q), and sends
f_i(j) to party j over its own secure channel. Party j keeps sh_j = sum_i f_i(j) = F(j), a Shamir
share of F(0) = s, and can drop s_i. To decrypt with a set T of t parties, party j uses
lambda_j sh_j (lambda_j its Lagrange coefficient at 0 for T): sum over T of lambda_j sh_j = s,
so the partials combine with ``threshold.decrypt`` unchanged. lambda_j sh_j is not small, so the
product with c1 is done in NTT form (pointwise, NumPy, primes below 2^31), with SEAL's NTT; the
shares are kept in NTT form (Shamir sharing is linear, so it commutes with the NTT).

The flooding is ``threshold.FLOOD_BOUND`` per partial, as for N-out-of-N. Naming a cheater:
decrypt with several sets of t; a wrong partial fails the MAC in every set that includes its
sender (``suspects``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from workbench.secure import threshold as th
from workbench.secure import threshold_seal as sealio

_P = th._PRIMES
_SHAPE = (len(th.DATA_PRIMES), th.POLY_DEGREE)


def _transform(coefficients: np.ndarray, to_ntt: bool) -> np.ndarray:
    """SEAL's forward or inverse NTT of one polynomial's residues (3 x N)."""
    sealapi, _parms, ctx = th._seal()
    data = sealio.ciphertext_bytes(th._ids()[0], np.stack([coefficients] * 2).astype(np.uint64),
                                   ntt=not to_ntt)
    ct = sealio.load(sealapi.Ciphertext(), ctx, data)
    evaluator = sealapi.Evaluator(ctx)
    (evaluator.transform_to_ntt_inplace if to_ntt else evaluator.transform_from_ntt_inplace)(ct)
    return sealio.residues(sealio.save(ct), (2, *_SHAPE))[1][0].astype(np.int64)


def _random_polynomial() -> np.ndarray:
    """Uniform in R_q (NTT form): a SHAKE-256 stream from 256 fresh random bits."""
    return th.common_polynomial(os.urandom(32))[:len(th.DATA_PRIMES)]


def _check_ids(ids: list[int]) -> None:
    if len(set(ids)) != len(ids) or not all(1 <= i <= th.MAX_PARTIES for i in ids):
        raise th.ThresholdError(f"party numbers must be distinct, from 1 to {th.MAX_PARTIES}")


def deal(party: th.Party, sender: int, ids: list[int], t: int) -> dict[int, bytes]:
    """Party ``sender``'s Shamir pieces f(j) of its additive share, one per party j in ``ids``
    (its own included); each must reach only party j."""
    _check_ids(ids)
    if sender not in ids or not 1 <= t <= len(ids):
        raise th.ThresholdError("the sender must be a party and 1 <= t <= N")
    s_hat = _transform(party.share[None, :] % _P, to_ntt=True)
    coefficients = [_random_polynomial() for _ in range(t - 1)]
    pieces = {}
    for j in ids:
        value, power = s_hat.copy(), 1
        for a in coefficients:
            power = power * j
            value = (value + a * (power % _P)) % _P
        pieces[j] = th._pack("threshold-shamir-piece", {"from": sender, "to": j, "t": t,
                                                        "parties": sorted(ids)}, value)
    return pieces


@dataclass(frozen=True, repr=False)
class ShamirParty:
    """Party ``index``'s Shamir share F(index) of the joint secret, in NTT form."""

    index: int
    t: int
    parties: tuple[int, ...]
    share: np.ndarray

    def __repr__(self) -> str:
        return f"ShamirParty(index={self.index}, t={self.t}, share=<withheld>)"

    @classmethod
    def receive(cls, index: int, pieces: list[bytes]) -> ShamirParty:
        """Sum the pieces every party dealt to ``index`` (one from each, the same t and set)."""
        total, senders, setting = np.zeros(_SHAPE, dtype=np.int64), set(), None
        for data in pieces:
            header, value = th._unpack("threshold-shamir-piece", data, _P)
            this = (header.get("t"), tuple(header.get("parties", ())))
            if header.get("to") != index or setting not in (None, this):
                raise th.ThresholdError("a Shamir piece is for another party or setting")
            setting = this
            senders.add(header.get("from"))
            total = (total + value) % _P
        if setting is None or senders != set(setting[1]) or len(pieces) != len(setting[1]):
            raise th.ThresholdError("one Shamir piece from every party is needed")
        return cls(index, setting[0], setting[1], total)

    def partial(self, ciphertext: bytes, present: list[int]) -> bytes:
        """h = c1 lambda sh + E for the set ``present`` of t parties (this one included)."""
        _check_ids(present)
        if len(present) != self.t or self.index not in present \
                or not set(present) <= set(self.parties):
            raise th.ThresholdError(f"exactly t = {self.t} parties, this one among them")
        sealapi, _parms, ctx = th._seal()
        ct = th._load_ciphertext(ciphertext)
        sealapi.Evaluator(ctx).transform_to_ntt_inplace(ct)
        c1_hat = sealio.residues(sealio.save(ct), (2, *_SHAPE))[1][1].astype(np.int64)
        weighted = self.share * lagrange(self.index, present) % _P
        c1s = _transform(c1_hat * weighted % _P, to_ntt=False)
        h = (c1s + th._flooding(th.POLY_DEGREE)[None, :] % _P) % _P
        return th._pack("threshold-partial", {"ciphertext": th._digest(ciphertext),
                                              "party": self.index, "present": sorted(present)}, h)


def lagrange(index: int, present: list[int]) -> np.ndarray:
    """lambda_index(0) for the set ``present``, per data prime (a 3 x 1 column)."""
    out = []
    for p in th.DATA_PRIMES:
        num, den = 1, 1
        for k in present:
            if k != index:
                num, den = num * k % p, den * (k - index) % p
        out.append(num * pow(den, -1, p) % p)
    return np.array(out, dtype=np.int64)[:, None]


def suspects(outcomes: dict[frozenset[int], bool]) -> set[int]:
    """The parties in every set whose combined result failed its MAC and in none that passed."""
    failed = [s for s, ok in outcomes.items() if not ok]
    if not failed:
        return set()
    cleared = set().union(*(s for s, ok in outcomes.items() if ok))
    return set.intersection(*map(set, failed)) - cleared



def blame_sets(order: list[str], t: int) -> list[list[str]]:
    """The sets of t key parties a round is decrypted with so that one wrong partial's sender
    can be named (``suspects``): T0, the first t of ``order`` (the parties asked, in preference
    order), then, when a spare party r (the next in ``order``) can be asked, T0 with each of its
    members in turn replaced by r. A wrong partial from j in T0 fails T0 and every set with j,
    and only the set without j passes; a wrong one from r fails every set but T0. Each party
    computes at most t partials of the round (one per set it is in); without a spare, T0 alone
    (nothing can be named)."""
    if not 1 <= t <= len(order) or len(set(order)) != len(order):
        raise th.ThresholdError("need t distinct key parties")
    first = sorted(order[:t])
    if len(order) == t:
        return [first]
    spare = order[t]
    return [first] + [sorted([*(h for h in first if h != j), spare]) for j in first]
