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

A space without nodes (``workbench init``, the tests' fast spaces) is the same simulation on disk:
``make_space_key`` (run by ``keys.create_keys``) makes its joint key among its member
organisations (``space_key_parties``), keeps each party's share in ``he/key-shares/<holder>.key``
(0600 in a 0700 directory, owned by the gateway account, which already plays every holder there:
it reads their stores and holds their signing keys), and the gateway's rounds carry each party's
partial (``LocalKeyParties.of_space``). The release checker holds no secret key in any space; a
node space's key generation replaces this key with the nodes' own and deletes these shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor

from nacl.public import PrivateKey

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.secure import threshold as th
from workbench.secure import threshold_node as tn
from workbench.secure import threshold_shamir as sh
from workbench.secure.nodes import Contributions
from workbench.secure.signing import NonceGuard


class LocalKeyParties:
    """The holders' shares of one joint BFV key, played in one process: a fresh key
    (``generate``) or a space's on-disk one (``of_space``). ``t``: any t of them decrypt."""

    def __init__(self, names: list[str], t: int, signers: dict, parties: dict, joint: bytes,
                 record: dict, checker: bytes, box: PrivateKey | None = None):
        self.names, self.t, self.signers, self.parties = names, t, signers, parties
        self.joint, self.record = joint, record
        self.checker, self.box = checker, box  # partials are sealed to the release checker
        self.nonces = {h: NonceGuard() for h in names}

    @classmethod
    def generate(cls, signers: dict, t: int | None = None) -> LocalKeyParties:
        """A fresh joint key among ``signers``' holders (default: all of them decrypt), with a
        fresh release-checker box key (``box``)."""
        names = sorted(signers)
        n = len(names)
        t = n if t is None else int(t)
        if not 1 <= t <= n <= th.MAX_PARTIES or t == 1 < n:
            raise ValueError(f"simulated key parties: 2 <= t <= N <= {th.MAX_PARTIES}, or one "
                             f"party alone (N = {n} holders, t = {t})")
        joint, made = _joint_key(n)
        parties: dict[str, object] = dict(zip(names, made, strict=True))
        if t < n:  # every party deals Shamir pieces of its additive share, then drops it
            ids = list(range(1, n + 1))
            dealt = [sh.deal(parties[h], i, ids, t) for i, h in zip(ids, names, strict=True)]
            parties = {h: sh.ShamirParty.receive(j, [pieces[j] for pieces in dealt])
                       for j, h in zip(ids, names, strict=True)}
        box = PrivateKey.generate()
        record = {"keygen": uuid.uuid4().hex, "parties": names, "t": t,
                  "joint_sha256": hashlib.sha256(joint).hexdigest(),
                  "parameters": th.FINGERPRINT, "simulated": True}
        return cls(names, t, signers, parties, joint, record, bytes(box.public_key), box)

    @classmethod
    def of_space(cls, space: Space, keys) -> LocalKeyParties:
        """The key parties of a space without nodes (``make_space_key``), as the gateway
        account that plays them; ``keys``: the space's ``PublicKeys`` (its record names them)."""
        from workbench.secure.signing import load_signers
        from workbench.secure.threshold_node import BOX_PUB

        record = keys.threshold or {}
        names = list(record.get("parties") or [])
        if record.get("simulated") != SPACE_KEY or not names:
            raise WorkbenchUserError("the space's HE key is held by its holder nodes, not by this "
                                     "account: run the operation through the nodes.",
                                     reason="threshold-policy")
        parties = {}
        for h in names:
            try:
                parties[h] = th.Party.from_share_bytes(
                    (space.he / SHARES / f"{h}.key").read_bytes())
            except FileNotFoundError:
                raise WorkbenchUserError(f"key party {h} has no share in {space.he / SHARES}: "
                                         "rebuild the space ('workbench init --force').",
                                         reason="no-he-keys") from None
            except PermissionError:
                raise WorkbenchUserError(f"{space.he / SHARES} is readable only by the "
                                         f"{accounts.GATEWAY} account, which plays the holders.",
                                         reason="access-denied") from None
        return cls(names, len(names), load_signers(space, names), parties, keys.bfv_bytes,
                   record, (space.he / BOX_PUB).read_bytes())

    def __repr__(self) -> str:
        return f"LocalKeyParties({len(self.names)} parties, t={self.t}, shares=<withheld>)"

    def public_keys(self):
        """The joint public context with its record: what holders encrypt with and what the
        release checker knows of the key (no secret key anywhere)."""
        from workbench.secure.keys import PublicKeys, fingerprint_of

        return PublicKeys(self.joint, fingerprint_of(self.joint), self.record)

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
        checker = self.checker

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
        try:
            partials = self.parties.partials(header, parts, self.registry)
        except WorkbenchUserError as exc:
            if exc.reason != "min-holders":
                raise
            partials = ()  # the checker refuses it too, by its release rule, and records it
        return self.aggregator.submit(header, Contributions(parts, partials))


SHARES = "key-shares"  # he/key-shares/<holder>.key in a space without nodes
SPACE_KEY = "space"  # the record's "simulated" value for a space's on-disk key parties


def _joint_key(n: int) -> tuple[bytes, list]:
    """A fresh joint key among n parties: (the public TenSEAL context, the parties)."""
    seed = tn.new_seed()  # public: the common polynomial
    made = [th.Party.generate(seed) for _ in range(n)]
    public = [p for _party, p in made]
    joint = th.tenseal_context(th.joint_public_key(seed, public,
                                                   [th.commitment(p) for p in public]))
    return joint, [party for party, _p in made]


def space_key_parties(registered: list[str]) -> list[str]:
    """The key parties of a space without nodes: its member organisations (the holders the
    generator builds, as the demo policy's ``secure.key_parties`` names them), or, in a space
    without them, every registered holder (the public datasets'). Each party's partial costs
    CPU in every round, so the handful of members hold the key, not every dataset's holder."""
    from workbench.synth import HOLDERS

    members = sorted(set(registered) & set(HOLDERS))
    parties = members if len(members) >= 2 else sorted(registered)
    if not parties:
        raise WorkbenchUserError("the space has no registered holder to hold its HE key: "
                                 "register the holders first (signing.create_holder_keys).",
                                 reason="no-holders")
    if len(parties) > th.MAX_PARTIES:
        raise WorkbenchUserError(f"{len(parties)} holders would hold the space's HE key; the "
                                 f"parameters allow at most {th.MAX_PARTIES} key parties.",
                                 reason="too-many-holders")
    return parties


def make_space_key(space: Space, parties: list[str]) -> dict:
    """The joint key of a space without nodes (root, or the space's owner): one share per key
    party in ``he/key-shares`` (the gateway account's), the release checker's box key, the
    checker's copy of the joint public context (no secret key) and ``he/threshold.json``."""
    from workbench.secure.keys import install_threshold, write_key_file
    from workbench.secure.threshold_node import RECORD, create_box_key

    root = accounts.is_root()
    gateway = accounts.ensure_user(accounts.GATEWAY) if root else None
    create_box_key(space.he, accounts.ensure_user(accounts.KEYHOLDER) if root else None)
    joint, made = _joint_key(len(parties))
    folder = space.he / SHARES
    shutil.rmtree(folder, ignore_errors=True)  # the shares of a key this one replaces
    folder.mkdir(mode=0o700)
    if gateway:
        os.chown(folder, *gateway)
    for holder, party in zip(parties, made, strict=True):
        write_key_file(folder / f"{holder}.key", party.share_bytes(), 0o600, gateway)
    record = {"keygen": uuid.uuid4().hex, "scheme": "N-out-of-N", "parties": list(parties),
              "t": len(parties), "joint_sha256": hashlib.sha256(joint).hexdigest(),
              "parameters": th.FINGERPRINT, "simulated": SPACE_KEY}
    install_threshold(space, joint, record)
    write_key_file(space.he / RECORD, json.dumps(record, indent=1).encode() + b"\n", 0o644,
                   None)
    return record


def drop_space_shares(space: Space) -> None:
    """A node space's own key replaces the simulated one: its shares go."""
    shutil.rmtree(space.he / SHARES, ignore_errors=True)
