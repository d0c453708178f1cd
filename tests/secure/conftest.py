"""Fixtures of the secure-computation tests: public datasets split by site, and a real space with
HE keys, a provenance collector and a key holder process (module-scoped: they take ~1 s)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_gbsg2, load_lung, load_rossi

from workbench.paths import Space


def split_by(df: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    return {f"site-{key}": part for key, part in df.groupby(column)}


def split_round_robin(df: pd.DataFrame, holders: int = 3) -> dict[str, pd.DataFrame]:
    return {name: part for name, part in zip(
        ("hospital", "insurer", "pharma", "registry"),
        (df.iloc[i::holders] for i in range(holders)))}


@pytest.fixture(scope="session")
def lung() -> pd.DataFrame:
    return load_lung().dropna(subset=["inst", "ph.ecog"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def lung_all() -> pd.DataFrame:
    """R's lung: all 228 patients (time, status and sex are complete; status 1 = died)."""
    df = load_lung()
    assert len(df) == 228 and df[["time", "status", "sex"]].notna().all().all()
    return df


@pytest.fixture(scope="session")
def gbsg2() -> pd.DataFrame:
    df = load_gbsg2()
    df["hormone"] = (df["horTh"] == "yes").astype(int)
    return df


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    return load_rossi()


HOLDERS = ("hospital", "insurer", "pharma", "registry")  # split_round_robin's holder names


@pytest.fixture(scope="module")
def he_space():
    """A data space with HE keys, holder signing keys, a running collector, key holder process
    and aggregator process. Yields (space, collector, keyholder); the aggregator's handle is
    ``keyholder.aggregator``."""
    from workbench.provenance.service import start_collector
    from workbench.secure.keys import create_keys
    from workbench.secure.process import start_aggregator, start_keyholder
    from workbench.secure.signing import create_holder_keys

    root = Path(tempfile.mkdtemp(prefix="wb-secure-", dir="/tmp"))
    os.chmod(root, 0o755)
    space = Space(root)
    create_holder_keys(space, HOLDERS)
    create_keys(space)  # the HE key among the registered holders
    services = []
    try:
        collector = start_collector(space)
        services.append(collector)
        keyholder = start_keyholder(space, min_cell_floor=5)
        keyholder.client = lambda: PartialsClient(space)
        services.append(keyholder)
        keyholder.aggregator = start_aggregator(space)
        services.append(keyholder.aggregator)
        yield space, collector, keyholder
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(root, ignore_errors=True)


def provenance_records(space: Space, kind: str) -> list[dict]:
    import json

    from workbench.provenance.store import open_store

    store = open_store(space, readonly=True)
    try:
        bodies = [json.loads(row[3]) for row in store.rows()]
    finally:
        store.close()
    return [b for b in bodies if b.get("kind") == kind]


def synthetic_cohort(n: int, seed: int = 0, bins: int = 1826) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    hazard = np.exp(x @ np.array([0.3, -0.2, 0.1, 0.0, 0.25]))
    t = rng.exponential(700 / hazard)
    c = rng.uniform(0, bins * 1.2, n)
    days = np.minimum(np.minimum(t, c), bins - 1).astype(int)
    event = (t <= c) & (t < bins - 1)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    df["days"], df["event"] = days, event.astype(int)
    df["arm"] = rng.integers(0, 2, n)
    return df


def signed_round(space: Space, parts: dict[str, pd.DataFrame], kind: str, spec: dict,
                 op: str | None = None, keys=None, thresholds=None):
    """What an honest aggregator sends the key holder for one round: the pooled ciphertexts and
    a decrypt-release header with every holder's signature. Returns (header, pooled, parts)."""
    from workbench.secure.keys import load_public
    from workbench.secure.nodes import Aggregator, HolderNode
    from workbench.secure.signing import load_signers, new_nonce

    keys = keys or load_public(space)
    signers = load_signers(space, list(parts))
    nonce = new_nonce()
    contributions = [HolderNode(h, f, keys, signers[h]).contribute(kind, spec, nonce)
                     for h, f in parts.items()]
    pooled = Aggregator(keys).combine(contributions)
    header = {"type": "decrypt-release", "kind": kind, "op": op or {"counts": "count"}[kind],
              "spec": spec, "thresholds": thresholds or {"min_cell_count": 10},
              "contributors": pooled.contributors, "fingerprint": pooled.fingerprint,
              "context": {"study": "recidivism"}, "nonce": nonce,
              "signatures": [c.envelope for c in contributions]}
    return header, pooled, contributions


class PartialsClient:
    """The key holder's client, with every key party of the space (its simulated shares in
    he/key-shares) decrypting whatever aggregate a request carries, unchecked: as if every
    party had been fooled. The tests of the checker's own checks (signatures, MACs, layout)
    then reach them; requests that carry partials already go through as they are."""

    def __init__(self, space: Space):
        from workbench.secure.keyholder import KeyHolderClient

        self.space, self.inner = space, KeyHolderClient(space.keyholder_socket)

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def request(self, header: dict, blobs=()) -> dict:
        if header.get("type") == "decrypt-release" and not header.get("partials"):
            from workbench.secure.keys import load_public
            from workbench.secure.threshold_local import LocalKeyParties

            parties = LocalKeyParties.of_space(self.space, load_public(self.space))
            header, blobs = fooled_partials(parties, header, list(blobs))
        return self.inner.request(header, blobs)

    handle = request

    def raw(self, frame: bytes) -> dict:
        return self.inner.raw(frame)


def fooled_partials(parties, header: dict, blobs: list[bytes]):
    """(header with the partials, blobs with their boxes): every one of ``parties``
    (``LocalKeyParties``) decrypting ``blobs`` as sent, unchecked; unchanged when they are no
    aggregate under the joint key's parameters."""
    from workbench.errors import WorkbenchUserError
    from workbench.secure import signing
    from workbench.secure import threshold_node as tn

    try:
        sums = tn.pooled_from_sum(blobs)
        spec_hash = signing.spec_sha256(header["spec"])
    except (WorkbenchUserError, KeyError, TypeError, ValueError):
        return header, blobs
    made = [tn.seal_partials(parties.parties[h], parties.signers[h], parties.checker,
                             nonce=header.get("nonce"), kind=header.get("kind"),
                             spec_hash=spec_hash, sums=sums,
                             signers=list(header.get("contributors") or []))
            for h in parties.names]
    return header | {"partials": [m for m, _ in made]}, list(blobs) + [b for _, b in made]


def in_process_checker(holders):
    """(release checker, public keys, key parties, signers) of fresh simulated key parties, as
    a ``Federation`` makes them; ``checker.handle`` takes rounds without partials (the parties
    decrypt them unchecked: ``fooled_partials``)."""
    from workbench.secure import signing
    from workbench.secure.keyholder import KeyHolder
    from workbench.secure.keys import PublicKeys
    from workbench.secure.threshold_local import LocalKeyParties

    signers, registry = signing.ephemeral(list(holders))
    parties = LocalKeyParties.generate(signers)
    checker = KeyHolder(parties.public_keys(), registry=registry, box_key=parties.box)
    handle = checker.handle
    checker.handle = lambda header, blobs: handle(*fooled_partials(parties, header, blobs))
    return checker, PublicKeys.from_bytes(parties.public_keys().to_bytes()), parties, signers


def aggregator_round(space: Space, parts: dict[str, pd.DataFrame], kind: str, spec: dict):
    """One honest round as the coordinator hands it to the aggregator: (round header, the
    holders' signed contributions)."""
    from workbench.secure.keys import load_public
    from workbench.secure.nodes import Contributions
    from workbench.secure.signing import RegistryFile
    from workbench.secure.threshold_local import LocalKeyParties

    header, _, contributions = signed_round(space, parts, kind, spec)
    round_ = {k: header[k] for k in ("kind", "op", "spec", "thresholds", "context",
                                     "fingerprint", "nonce")}
    # the space's key parties, each checking the round as a node does, give their partials
    parties = LocalKeyParties.of_space(space, load_public(space))
    partials = parties.partials(round_, contributions, RegistryFile(space.holder_registry))
    return round_, Contributions(contributions, partials)


REPO = Path(__file__).resolve().parents[2]


def run_as(account: str, code: str) -> subprocess.CompletedProcess:
    """``python -c code`` as a service account (no supplementary groups): what that uid can do."""
    from workbench import accounts

    uid, gid = accounts.ensure_user(account)
    return subprocess.run([sys.executable, "-c", code], user=uid, group=gid, extra_groups=[],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def assert_holder_secret_file(path: Path, size: int, try_reads: bool = True) -> None:
    """A MAC or round-weight key: 0640 wb-gateway:wb-keyholder; with ``try_reads``, read as each
    account: the holders (the gateway account) and the key holder can, the aggregator cannot."""
    from workbench import accounts

    gateway, keyholder = accounts.ensure_user(accounts.GATEWAY), \
        accounts.ensure_user(accounts.KEYHOLDER)
    st = path.stat()
    assert st.st_mode & 0o777 == 0o640 and st.st_size == size
    assert (st.st_uid, st.st_gid) == (gateway[0], keyholder[1])
    for account, readable in ((accounts.AGGREGATOR, False), (accounts.GATEWAY, True),
                              (accounts.KEYHOLDER, True)) if try_reads else ():
        out = run_as(account, f"print(len(open({str(path)!r}, 'rb').read()))")
        if readable:
            assert out.returncode == 0 and out.stdout.strip() == str(size), out.stderr
        else:
            assert out.returncode != 0 and "PermissionError" in out.stderr
