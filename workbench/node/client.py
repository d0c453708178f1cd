"""The coordinator's side: asks every holder node at once, over mTLS, and names the one that fails.

``NodeSet`` keeps one HTTPS connection pool per node on a background event loop, so the gateway's
worker threads (and the secure ``Coordinator``) call it synchronously while the requests to all
nodes run concurrently: a round takes as long as the slowest node. Each node is reached under the
host name ``<holder>.node.workbench`` whatever its address, so TLS refuses any other holder's
certificate; the peer's certificate is checked against the CRL too.

Any node that is down, slow, refuses, or replies with something malformed makes the whole call
fail with one line naming the node and the reason, unless the study allows a quorum: then the
nodes that answered are used and the result says exactly which ones contributed.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pyarrow as pa

from workbench.errors import WorkbenchUserError
from workbench.node import pki
from workbench.paths import Space
from workbench.secure import wire
from workbench.secure.nodes import Contributions, Encrypted

TIMEOUT = 120.0  # seconds a node may take for one request (a KM at 1e6 rows takes ~2 s)
TIMEOUT_ENV = "WORKBENCH_NODE_TIMEOUT"  # the gateway's setting, in seconds
WIRE_TYPE = "application/vnd.workbench.he-frame"


@dataclass(frozen=True)
class Node:
    holder: str
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"https://{self.address}"


class NodeError(WorkbenchUserError):
    def __init__(self, holder: str, message: str, reason: str = "node-failed"):
        super().__init__(f"holder {holder}: {message}", reason=reason)
        self.holder = holder


def read_registry(space: Space) -> list[Node]:
    try:
        data = json.loads(space.node_registry.read_text())
    except FileNotFoundError:
        raise WorkbenchUserError(f"{space.node_registry} is missing: start the holder nodes "
                                 "('workbench node serve' or 'workbench demo').",
                                 reason="no-nodes") from None
    return [Node(holder, entry["address"]) for holder, entry in sorted(data["nodes"].items())]


def write_registry(space: Space, nodes: dict[str, str]) -> None:
    tmp = space.node_registry.with_name(".nodes.json.tmp")
    tmp.write_text(json.dumps({"nodes": {h: {"address": a} for h, a in sorted(nodes.items())}},
                              indent=1) + "\n")
    tmp.chmod(0o644)
    tmp.replace(space.node_registry)


class NodeSet:
    """The coordinator's connections to the holder nodes."""

    def __init__(self, nodes: list[Node], ca: Path, cert: Path, key: Path, crl: Path,
                 timeout: float = TIMEOUT):
        self.nodes = {n.holder: n for n in nodes}
        self.files = (ca, cert, key, crl)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="node-client",
                                        daemon=True)
        self._thread.start()
        self._crl_stamp: tuple | None = None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_space(cls, space: Space, timeout: float = TIMEOUT) -> NodeSet:
        tls = space.role_tls("coordinator")
        timeout = float(os.environ.get(TIMEOUT_ENV) or timeout)
        return cls(read_registry(space), space.pki / "ca.pem", tls / "cert.pem",
                   tls / "key.pem", space.pki / "crl.pem", timeout)

    async def _fresh(self) -> aiohttp.ClientSession:
        """The session, made anew (with a new TLS context) when the CA's CRL changed: a revoked
        node is refused by the very next request, and pooled connections to it are dropped."""
        crl = self.files[3]
        try:
            stat = crl.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            raise WorkbenchUserError(f"{crl} cannot be read, so no node is trusted; ask the "
                                     "space's admin.", reason="no-crl") from None
        if self._session is None or stamp != self._crl_stamp:
            if self._session is not None:
                await self._session.close()
            ctx = pki.client_context(*self.files)
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx,
                                                                                 limit=64))
            self._crl_stamp = stamp
        return self._session

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_running():
            if self._session is not None:
                self._call(self._session.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    @property
    def holders(self) -> list[str]:
        return list(self.nodes)

    # -- one request to one node --------------------------------------------------------------
    async def _send(self, holder: str, path: str, body: dict | None,
                    blobs: list[bytes] | None = None) -> tuple[int, bytes]:
        """POST ``body`` (GET when None; a wire frame with ``blobs`` when given) to ``holder``'s
        node; transport failures become one ``NodeError`` naming the node."""
        node = self.nodes[holder]
        session = await self._fresh()
        frame = None if blobs is None else wire.encode(body | {"holder": holder}, blobs)
        try:
            # TLS checks the name: only this holder's node certificate, unrevoked, answers
            async with session.request(
                    "GET" if body is None else "POST", node.url + path,
                    json=None if body is None or frame is not None else body | {"holder": holder},
                    data=frame, headers={"Content-Type": WIRE_TYPE} if frame else None,
                    server_hostname=pki.host_name("node", holder),
                    timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
                data = await response.read()
                return response.status, data
        except aiohttp.ClientConnectorCertificateError as exc:
            raise NodeError(holder, "its certificate is not a valid, unrevoked certificate of "
                                    "the space CA for this holder "
                                    f"({_verify_message(exc)}); the connection was refused.",
                            "wrong-certificate") from None
        except aiohttp.ClientSSLError as exc:
            raise NodeError(holder, f"the TLS handshake failed ({type(exc).__name__}).",
                            "tls-failed") from None
        except TimeoutError:
            raise NodeError(holder, f"no answer within {self.timeout:g} s.", "node-timeout") \
                from None
        except aiohttp.ClientConnectionError as exc:
            raise NodeError(holder, f"it is unreachable or went away mid-request "
                                    f"({type(exc).__name__}).", "node-down") from None

    @staticmethod
    def _refusal(holder: str, status: int, data: bytes) -> NodeError:
        try:
            error = json.loads(data)["error"]
            message, reason = str(error["message"])[:300], str(error["reason"])[:40]
        except (ValueError, KeyError, TypeError):
            return NodeError(holder, f"it replied HTTP {status} with no valid error.",
                             "malformed-reply")
        if reason == "holder-rule":  # already "holder X refused: ..."
            return WorkbenchUserError(message, reason=reason)
        return NodeError(holder, message, reason)

    async def _all(self, path: str, body: dict, holders, parse, quorum: int | None,
                   blobs: list[bytes] | None = None):
        holders = list(holders or self.nodes)

        async def one(holder):
            if holder not in self.nodes:
                raise NodeError(holder, "it is not in the space's node registry.", "node-down")
            status, data = await self._send(holder, path, body, blobs)
            if status >= 400:
                raise self._refusal(holder, status, data)
            try:
                return parse(holder, status, data)
            except NodeError:
                raise
            except (WorkbenchUserError, ValueError, KeyError, TypeError):
                raise NodeError(holder, "its reply is malformed; nothing from this round is "
                                        "used.", "malformed-reply") from None

        results = await asyncio.gather(*(one(h) for h in holders), return_exceptions=True)
        out, failures = {}, []
        for holder, result in zip(holders, results, strict=True):
            if isinstance(result, WorkbenchUserError):
                failures.append(result)
            elif isinstance(result, BaseException):
                failures.append(NodeError(holder, f"its reply could not be read "
                                                  f"({type(result).__name__}).",
                                          "malformed-reply"))
            else:
                out[holder] = result
        refused = [f for f in failures if f.reason == "holder-rule"]
        if refused or (failures and (quorum is None or len(out) < quorum)):
            raise (refused or failures)[0]
        return out, failures

    # -- what the gateway asks --------------------------------------------------------------
    def read_view(self, body: dict) -> dict[str, pa.Table | None]:
        """Each node's protected rows of a view (None: the node holds none of its tables)."""
        def parse(holder, status, data):
            if status == 204:
                return None
            try:
                return pa.ipc.open_stream(data).read_all()
            except (pa.ArrowInvalid, OSError):
                raise NodeError(holder, "its rows are not a valid Arrow stream.",
                                "malformed-reply") from None

        out, _ = self._call(self._all("/v1/view", body, None, parse, None))
        return out

    def rules(self, quorum: int | None = None) -> dict[str, dict]:
        """Each node's public rules: its threshold floors and its round budget (with a quorum,
        of the nodes that answer: one that is down contributes nothing to hold to its floors)."""
        def parse(holder, status, data):
            return json.loads(data)

        out, _ = self._call(self._all("/v1/rules", None, None, parse, quorum))
        return out

    def contribute(self, body: dict, quorum: int | None = None
                   ) -> tuple[list[Encrypted], dict[str, float]]:
        """Every node's signed contribution to one round, and each node's own time for it (the
        coordinator's share of a round is the rest). With a quorum, nodes that failed are left
        out; the contributions say who is in."""
        def parse(holder, status, data):
            header, blobs = wire.decode(data)
            if header.get("empty"):
                return None
            seconds[holder] = float(header.get("seconds") or 0.0)
            try:
                if header["per_scheme"] != {"bfv": len(blobs)}:  # every ciphertext is BFV
                    raise ValueError
                return Encrypted(body["kind"], str(header["fingerprint"]), blobs, [holder],
                                 header["envelope"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise NodeError(holder, "its contribution is malformed.",
                                "malformed-reply") from None

        seconds: dict[str, float] = {}  # filled by parse, per call: no state shared by threads
        out, _ = self._call(self._all("/v1/round", body, None, parse, quorum))
        return [p for p in out.values() if p is not None], seconds


    def keygen(self, step: str, body: dict, holders: list[str]) -> dict[str, dict]:
        """One step of collective key generation at every key party (``node/keygen.py``)."""
        def parse(holder, status, data):
            reply = json.loads(data)
            if not isinstance(reply, dict) or reply.get("holder") != holder:
                raise NodeError(holder, "its key generation reply is malformed.",
                                "malformed-reply")
            return reply

        out, _ = self._call(self._all(f"/v1/keygen/{step}", body, holders, parse, None))
        return out

    def partials(self, body: dict, blobs: list[bytes], holders: list[str]
                 ) -> list[tuple[dict, bytes]]:
        """Every key party's sealed partial decryption of one round's sum (no quorum: with
        N-out-of-N every share is needed)."""
        def parse(holder, status, data):
            header, boxes = wire.decode(data)
            if header.get("holder") != holder or len(boxes) != 1:
                raise NodeError(holder, "its partial decryption is malformed.",
                                "malformed-reply")
            return header, boxes[0]

        out, _ = self._call(self._all("/v1/partial", body, holders, parse, None, blobs))
        return [out[h] for h in holders]


def _verify_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    error = getattr(exc, "certificate_error", None)
    return str(getattr(error, "verify_message", None) or type(error).__name__)[:80]


class RemoteHolders:
    """The holder side of one secure operation, played by the nodes (what ``Coordinator`` calls
    for every round, in place of in-process holders)."""

    def __init__(self, nodes: NodeSet, request: dict, tighten, quorum: int | None = None,
                 keys=None):
        """``tighten(thresholds) -> thresholds``: the study's thresholds with every node's
        floors applied (``NodeCoordinator.thresholds``). ``keys``: the space's public contexts;
        when their BFV key is a joint one, every round asks the key parties for partials."""
        self.nodes, self.request, self.quorum, self.keys = nodes, request, quorum, keys
        self.tighten = tighten
        self.names = nodes.holders
        self.node_seconds: dict[str, float] = {}  # each node's compute time, last round

    def contribute(self, kind: str, spec: dict, nonce: str) -> list[Encrypted]:
        parts, self.node_seconds = self.nodes.contribute(
            self.request | {"kind": kind, "spec": spec, "nonce": nonce}, self.quorum)
        if not parts:
            from workbench.secure.release import ReleaseRefused, too_few

            raise ReleaseRefused("min-cell-count", too_few())
        threshold = getattr(self.keys, "threshold", None)
        if not threshold:
            return parts
        parties, t = list(threshold["parties"]), threshold.get("t") or len(threshold["parties"])
        present, asked = None, parties
        if t < len(parties):
            # t-out-of-N: the t key parties that contributed first, plus one spare that also
            # contributed (so answers this round) when there is one: with it the checker can
            # name a wrong partial's sender (threshold_shamir.blame_sets: t + 1 sets, each of
            # these parties computes t partials). Not every reachable party: one spare names
            # one wrong partial; more would cost partials and name nothing more.
            from workbench.secure.threshold_shamir import blame_sets

            contributed = {p.contributors[0] for p in parts}
            order = sorted(parties, key=lambda h: (h not in contributed, h))
            spare = 1 if len(order) > t and order[t] in contributed else 0
            present = blame_sets(order[:t + spare], t)
            asked = sorted(set().union(*present))
        return Contributions(parts, self.partials(asked, kind, spec, nonce, parts, present))

    def partials(self, parties: list[str], kind: str, spec: dict, nonce: str,
                 parts: list[Encrypted], present: list[list[str]] | None = None
                 ) -> list[tuple[dict, bytes]]:
        """Each key party's sealed partial decryption of the sum of ``parts``: the gateway
        sends the signed contributions and the sum it wants decrypted (as a digest; each node
        recomputes it), and relays answers it cannot open."""
        from workbench.secure.threshold_node import digest, pooled

        per_part = [p.blobs[:p.per_scheme.get("bfv", 0)] for p in parts]
        sums = pooled(per_part) if per_part[0] else []
        body = self.request | {
            "kind": kind, "spec": spec, "nonce": nonce, "aggregates": [digest(s) for s in sums],
            "present": present,
            "parts": [{"holder": p.contributors[0], "per_scheme": dict(p.per_scheme),
                       "envelope": p.envelope} for p in parts]}
        return self.nodes.partials(body, [b for blobs in per_part for b in blobs], parties)


class NodeWitnessClient:
    """The provenance cosigner's way to a holder node's witness (``node:<holder>`` in the
    space's witness list): one HTTPS request over mTLS with the collector's certificate."""

    def __init__(self, space: Space, holder: str, timeout: float = 30.0):
        self.space, self.holder, self.timeout = space, holder, timeout

    def cosign(self, head: dict, proof: list[bytes], old_size: int | None = None) -> dict:
        import http.client
        import socket

        from workbench.provenance.cosign import WitnessRefused
        from workbench.provenance.cosigner import WitnessUnreachable

        tls = self.space.role_tls("collector")
        body = json.dumps({"head": head, "proof": [node.hex() for node in proof],
                           "old_size": old_size})
        try:
            node = {n.holder: n for n in read_registry(self.space)}[self.holder]
            host, _, port = node.address.rpartition(":")
            ctx = pki.client_context(self.space.pki / "ca.pem", tls / "cert.pem",
                                     tls / "key.pem", self.space.pki / "crl.pem")
            raw = socket.create_connection((host, int(port)), timeout=self.timeout)
            conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
            try:
                conn.sock = ctx.wrap_socket(raw, server_hostname=pki.host_name("node",
                                                                               self.holder))
                conn.request("POST", "/v1/witness", body=body,
                             headers={"Content-Type": "application/json"})
                reply = json.loads(conn.getresponse().read(1 << 20))
            finally:
                conn.close()
                raw.close()
        except (OSError, ValueError, KeyError, WorkbenchUserError) as exc:
            raise WitnessUnreachable(f"holder node {self.holder} did not answer "
                                     f"({type(exc).__name__})") from None
        if not isinstance(reply, dict) or "error" in reply:
            raise WitnessUnreachable(f"holder node {self.holder} refused the request "
                                     f"({str((reply or {}).get('error'))[:200]})")
        if not reply.get("ok"):
            raise WitnessRefused(str(reply.get("reason")), str(reply.get("message"))[:500],
                                 reply.get("size") if type(reply.get("size")) is int else None)
        return reply.get("cosignature")
