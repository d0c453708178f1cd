"""Simulated key parties for the in-process ``Federation`` (issue 17, item 7).

A ``Federation`` on local data has no holder nodes, but it decrypts BFV the way a space of nodes
does, so the threshold path runs under every test and notebook that uses it: each in-process
holder is a key party. ``LocalKeyParties`` runs the collective key generation among them
(``threshold.py``: one ternary share each, commitments, the joint public key; with t < N the
Shamir re-sharing of ``threshold_shamir.py``), and for every round each party of the decrypting
set runs ``threshold_node.partial_for_round``, the very check-and-partial function a node runs
(signed contributions, min-holders, the recomputed sum, a fresh nonce, 40-bit flooding, sealed
to the release checker), signing with its holder's key. The in-process ``KeyHolder`` then opens
and combines the partials through its threshold path (``open_and_combine``), MACs and release
rules as for a node space.

What is simulated: the parties live in one process, so this shows correctness and exercises the
code, not the separation of the shares (that is the nodes' accounts and machines).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor

from nacl.public import PrivateKey

from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure import threshold_shamir as sh
from workbench.secure.nodes import Contributions
from workbench.secure.signing import NonceGuard


class LocalKeyParties:
    """The holders' shares of one joint BFV key, made in-process; ``t``: any t of them decrypt
    (default all)."""

    def __init__(self, signers: dict, t: int | None = None):
        names = sorted(signers)
        n = len(names)
        t = n if t is None else int(t)
        if not 2 <= n <= th.MAX_PARTIES or not 2 <= t <= n:
            raise ValueError(f"simulated key parties: 2 <= t <= N <= {th.MAX_PARTIES} "
                             f"(N = {n} holders, t = {t})")
        seed = tn.new_seed()  # public: the common polynomial
        made = [th.Party.generate(seed) for _ in names]
        public = [p for _party, p in made]
        joint = th.tenseal_context(th.joint_public_key(seed, public,
                                                       [th.commitment(p) for p in public]))
        self.names, self.t, self.signers = names, t, signers
        self.parties: dict[str, object] = {h: party for h, (party, _p) in zip(names, made,
                                                                             strict=True)}
        if t < n:  # every party deals Shamir pieces of its additive share, then drops it
            ids = list(range(1, n + 1))
            dealt = [sh.deal(self.parties[h], i, ids, t) for i, h in zip(ids, names, strict=True)]
            self.parties = {h: sh.ShamirParty.receive(j, [pieces[j] for pieces in dealt])
                            for j, h in zip(ids, names, strict=True)}
        self.joint = joint
        self.box = PrivateKey.generate()  # the release checker's: partials are sealed to it
        self.nonces = {h: NonceGuard() for h in names}
        self.record = {"keygen": uuid.uuid4().hex, "parties": names, "t": t,
                       "joint_sha256": hashlib.sha256(joint).hexdigest(),
                       "parameters": th.FINGERPRINT, "simulated": True}

    def __repr__(self) -> str:
        return f"LocalKeyParties({len(self.names)} parties, t={self.t}, shares=<withheld>)"

    def secret_keys(self):
        """The release checker's keys: the joint public context and no secret key at all (every
        ciphertext is BFV, decrypted from the parties' partials)."""
        from workbench.secure.keys import PublicKeys, SecretKeys, fingerprint_of

        public = PublicKeys(self.joint, fingerprint_of(self.joint), self.record)
        return SecretKeys(self.joint, public.fingerprint, public, self.record)

    def partials(self, header: dict, parts: list, registry) -> list[tuple[dict, bytes]]:
        """Each decrypting party's sealed, signed partial of the round's sum (with t < N, a set
        of t parties drawn at random, so every set gets exercised over many rounds, and a
        spare: ``threshold_shamir.blame_sets``)."""
        present, who = None, self.names
        if self.t < len(self.names):  # t + 1 parties in a random order: the first t
            # release, the spare lets the checker name a wrong partial (blame_sets)
            order = secrets.SystemRandom().sample(self.names, self.t + 1)
            present = sh.blame_sets(order, self.t)
            who = sorted(set().union(*present))
        per_part = [p.blobs[:p.per_scheme.get("bfv", 0)] for p in parts]
        sums = tn.pooled(per_part) if per_part and per_part[0] else []
        request = {"kind": header["kind"], "spec": header["spec"], "nonce": header["nonce"],
                   "fingerprint": header["fingerprint"],
                   "parts": [{"holder": p.contributors[0], "per_scheme": dict(p.per_scheme),
                              "envelope": p.envelope} for p in parts],
                   "blobs": [b for blobs in per_part for b in blobs],
                   "aggregates": [tn.digest(s) for s in sums],
                   "min_holders": int((header.get("thresholds") or {}).get("min_holders", 2))}
        checker = bytes(self.box.public_key)

        def answer(h: str) -> tuple[dict, bytes]:
            return tn.partial_for_round(self.parties[h], self.signers[h], checker, registry,
                                        nonces=self.nonces[h], parties=self.names,
                                        present=present, **request)

        # the parties answer at once, as nodes do (NumPy, hashing and zstd release the GIL);
        # each runs every check of partial_for_round on its own
        with ThreadPoolExecutor(max_workers=len(who), thread_name_prefix="key-party") as pool:
            return list(pool.map(answer, who))


class SimulatedAggregator:
    """The in-process ``Aggregator`` with the key parties' partials added to each round, as the
    gateway adds the nodes' (``RemoteHolders``): the key holder gets both, after the sum."""

    def __init__(self, aggregator, parties: LocalKeyParties, registry):
        self.aggregator, self.parties, self.registry = aggregator, parties, registry

    def submit(self, header: dict, parts: list) -> dict:
        partials = self.parties.partials(header, parts, self.registry)
        return self.aggregator.submit(header, Contributions(parts, partials))
