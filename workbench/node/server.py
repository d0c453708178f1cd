"""A holder node's HTTPS service: the only process that reads this holder's store and keys.

Security boundary (guarded by tests/node/):
- TLS 1.3 with a client certificate of the space CA, checked by OpenSSL; then the peer must be
  the coordinator's certificate and not revoked (the CRL is re-read when it changes);
- every request carries the policy the coordinator acts on, with its admin signature: the node
  checks the signature against the space's admin keys, refuses a serial older than the newest it
  has seen (a rolled-back policy), and asks that policy whether the study may read the view;
- then the holder's own rules (``rules.py``): studies and views it serves, threshold floors, a
  per-study budget of secure rounds per UTC day;
- a round must name this holder and carry a fresh nonce never seen before (no replay, no
  re-targeting);
- what leaves: for a view, only the plaintext columns the grant allows, already protected here
  (per-study pseudonyms, shifted or coarsened dates, the view's minimum rows); for a round, the
  signed, MAC-tagged ciphertexts of this holder's local statistics; with threshold decryption,
  its public key share during key generation (``keyshare.py``) and, per round, its partial
  decryption of a sum it recomputed from at least min-holders signed contributions, sealed to
  the release checker (``secure/threshold_node.py``), only for the key parties and t of the
  signed policy (checked at key generation and before each partial). Never its key share.
Every request, served or refused, goes into the node's own hash-chained journal.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
from aiohttp import web

from workbench.accounts import study_kernel_user
from workbench.errors import WorkbenchUserError, log_fault
from workbench.node import pki
from workbench.node.config import NodeConfig
from workbench.node.journal import Journal
from workbench.node.rules import load_rules, refusal
from workbench.node.versions import engine_at
from workbench.policy.access import ensure_allowed
from workbench.policy.loader import parse_policy
from workbench.policy.model import Thresholds
from workbench.runtime import stop_requested
from workbench.secure import wire

log = logging.getLogger("workbench.node")

STATUS = {"bad-request": 400, "malformed-message": 400, "wrong-peer": 403,
          "revoked-certificate": 403, "no-crl": 403, "access-denied": 403,
          "holder-rule": 403, "unsigned-policy": 403, "bad-policy-signature": 403,
          "stale-policy": 403, "replayed-round": 409, "wrong-holder": 409,
          "budget-exhausted": 429, "too-few-rows": 403, "unknown-view": 404,
          "invalid-view": 409, "sensitive-column": 403, "unknown-column": 400,
          "unsigned-contribution": 403, "bad-signature": 403, "min-holders": 403,
          "duplicate-holder": 409, "not-the-aggregate": 409, "malformed-ciphertext": 400,
          "keygen-refused": 409, "no-key-share": 409, "threshold-policy": 403, "not-found": 404,
          "unknown-version": 404}
MAX_BODY = 4 * 1024 * 1024  # a policy and a round spec (JSON); never data
# a partial-decryption request carries the round's signed BFV contributions (~107 KB each)
MAX_FRAME = 96 * 1024 * 1024
ARROW_TYPE = "application/vnd.apache.arrow.stream"
WIRE_TYPE = "application/vnd.workbench.he-frame"


def error_response(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status)


@dataclass
class NodeState:
    """What the node keeps between requests: its engine over its own store, its keys, the
    newest policy serial seen, the nonces of the time window and the day's round counts."""

    config: NodeConfig
    journal: Journal
    engine: object = None
    keys: object = None
    signer: object = None
    nonces: object = None
    witness: object = None  # node.witness.Witness when the space lists this node as a witness
    keyshare: object = None  # node.keyshare.KeyShare: its share of the joint BFV key, if any
    partial_nonces: object = None  # rounds this node has given a partial decryption for
    registry: object = None  # the space's holder signing keys (he/holders.json)
    _serial: int = 0
    _budget: dict = field(default_factory=dict)
    _holders: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    _policies: dict = field(default_factory=dict)  # (sha256, signature) -> verified, parsed
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _engines: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    _public: object = None  # secure.keys.KeysFile of he/public.ctx

    def load(self) -> None:
        from workbench.secure.keys import KeysFile, PublicKeys
        from workbench.secure.signing import NonceGuard

        cfg = self.config
        version, build = engine_at(cfg.root, cfg.holder, None)
        self.engine = self._engines[version] = build()
        self.keys = PublicKeys.from_bytes(cfg.public_context.read_bytes())
        self.keys.bfv  # noqa: B018 - parse the context before the first round
        self._public = KeysFile(cfg.public_context, PublicKeys.from_bytes, self.keys)
        self.signer = cfg.signer()
        self.nonces, self.partial_nonces = NonceGuard(), NonceGuard()
        from workbench.node.keyshare import KeyShare
        from workbench.secure.signing import RegistryFile

        self.registry = RegistryFile(self.he / "holders.json")
        from workbench.secure.threshold_node import verify_keys

        self.keyshare = KeyShare(cfg.root, cfg.holder, self.signer,
                                 lambda: verify_keys(self.registry))
        self.refresh_keys()
        if (cfg.witness_dir / "witness.key").exists():
            from workbench.node.witness import Witness, load_key

            self.witness = Witness(cfg.witness_dir, load_key(cfg.witness_dir))
        state = cfg.state_file
        if state.exists():
            saved = json.loads(state.read_text())
            self._serial, self._budget = saved.get("policy_serial", 0), saved.get("budget", {})

    @property
    def he(self):
        """Where the space's public HE files are (a local copy at a holder's site)."""
        return self.config.public_context.parent

    def refresh_keys(self) -> None:
        """The key this node encrypts under (every ciphertext is BFV): as a key party, the joint
        key it computed itself at key generation; otherwise the space's public context
        (``he/public.ctx``, re-read when it changes: a key generation among other key parties
        replaces it while this node runs, and so does one that leaves this node out). Rounds
        cached under another key are dropped."""
        from workbench.secure.keys import PublicKeys, fingerprint_of

        public, joint = self._public.current(), self.keyshare.joint
        made = public.threshold or {}
        if joint is not None and (not made or self.config.holder in made.get("parties", ())):
            keys = PublicKeys(joint, fingerprint_of(joint), self.keyshare.record)
        else:
            keys = public
        if keys.fingerprint == self.keys.fingerprint:  # load() set self.keys from the file
            return
        self.keys = keys
        with self._lock:
            self._holders.clear()

    def _save(self) -> None:
        tmp = self.config.state_file.with_name(".state.json.tmp")
        tmp.write_text(json.dumps({"policy_serial": self._serial, "budget": self._budget}))
        os.replace(tmp, self.config.state_file)

    def policy(self, body: dict):
        """The signed policy the coordinator acts on, verified; a rollback is refused."""
        from workbench.paths import Space
        from workbench.policy.signed import load_admin_keys, verify_policy

        doc = body.get("policy")
        if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
            raise WorkbenchUserError("the request carries no policy.", reason="unsigned-policy")
        text = doc["text"].encode()
        key = (hashlib.sha256(text).hexdigest(), json.dumps(doc.get("signature"),
                                                            sort_keys=True))
        admins_stamp = _stamp(self.config.admins)
        cached = self._policies.get(key)
        if cached is not None and cached[0] == admins_stamp:
            record, policy = cached[1], cached[2]
        else:
            # admins.json: the space's on one machine, the node's own copy at a holder's site
            admins = load_admin_keys(Space(self.config.admins.parent))
            record = verify_policy(text, doc.get("signature"), admins)
            policy = None
        serial = int(record["serial"])
        with self._lock:
            if serial < self._serial:
                raise WorkbenchUserError(f"the policy's serial {serial} is older than "
                                         f"{self._serial}, which this node has already seen.",
                                         reason="stale-policy")
            if serial > self._serial:
                self._serial = serial
                self._save()
        if policy is None:  # verified and parsed once per policy version, not per request
            policy = parse_policy(doc["text"], f"policy serial {serial}")
            with self._lock:
                if len(self._policies) > 8:
                    self._policies.clear()
                self._policies[key] = (admins_stamp, record, policy)
        return policy

    def spend_round(self, study: str, allowed: int) -> None:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with self._lock:
            counts = self._budget.setdefault(day, {})
            for old in [d for d in self._budget if d != day]:
                del self._budget[old]
            if counts.get(study, 0) >= allowed:
                raise refusal(self.config.holder, f"study {study} used its {allowed} secure "
                                                  "rounds for today at this holder")
            counts[study] = counts.get(study, 0) + 1
            self._save()

    def engine_for(self, body: dict):
        """(version, engine) a request reads: the ``current`` version now (re-read per request,
        so an ingest is served without a restart), or the kept version the coordinator names
        for this holder in ``versions`` (only for a re-run; ``versions.engine_at`` refuses one
        the node does not keep). A few engines stay loaded."""
        wanted = body.get("versions")
        wanted = wanted.get(self.config.holder) if isinstance(wanted, dict) else None
        version, build = engine_at(self.config.root, self.config.holder, wanted)
        with self._lock:
            engine = self._engines.get(version)
            if engine is not None:
                self._engines.move_to_end(version)
                return version, engine
        engine = build()
        with self._lock:
            self._engines[version] = engine
            while len(self._engines) > 3:
                self._engines.popitem(last=False)
            if wanted is None:
                self.engine = engine
        return version, engine

    def holds(self, view: str, engine=None) -> bool:
        """Whether this holder has every table the view reads (views join within one holder,
        so a holder without them has no rows in it, and says so instead of refusing)."""
        engine = engine or self.engine
        definition = engine.catalog.views.get(view)
        return definition is None or set(definition.tables) <= set(engine.tables)

    def holder_for(self, request_id: str, study: str, view: str, columns, version=None,
                   engine=None):
        """This holder's node for one operation: its rows of the view and its keys. Kept for the
        operation's rounds so Newton steps reuse the beta-independent statistics."""
        from workbench.secure.nodes import HolderNode

        self.refresh_keys()
        key = (request_id, study, view, tuple(columns or ()), version)
        with self._lock:
            if key in self._holders:
                self._holders.move_to_end(key)
                return self._holders[key]
        # one holder's part of a view may be small: the view's minimum rows guards plain reads;
        # what a round releases is guarded by the key holder's rules (k per cell, min holders)
        frame = (engine or self.engine).partitions(study, view, columns, min_rows=False).get(
            self.config.holder)
        node = None if frame is None or not len(frame) else HolderNode(
            self.config.holder, frame, self.keys, self.signer)
        with self._lock:
            self._holders[key] = node
            while len(self._holders) > 16:
                self._holders.popitem(last=False)
        return node


def _stamp(path) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _peer(request: web.Request) -> pki.Identity:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if not der:
        raise WorkbenchUserError("a client certificate of the space CA is required.",
                                 reason="wrong-peer")
    return pki.Identity.of(der)


def make_app(state: NodeState) -> web.Application:
    cfg = state.config
    revocations = pki.Revocations(cfg.crl, cfg.ca)

    def record(request, body, decision: str, reason: str | None = None, **extra) -> None:
        peer = request.get("peer")
        state.journal.append({
            "peer": f"{peer.role}:{peer.name}:{peer.serial}" if peer else None,
            "path": request.path[:100], "study": str(body.get("study"))[:64] if body else None,
            "view": str(body.get("view"))[:64] if body else None,
            "kind": str(body.get("kind"))[:32] if body and body.get("kind") else None,
            "nonce": str(body.get("nonce"))[:64] if body and body.get("nonce") else None,
            "operation": str(body.get("request_id"))[:64] if body and body.get("request_id")
            else None,
            # the kept version a re-run asked for (served ones: the version actually read)
            "version": str(asked.get(cfg.holder))[:64] if isinstance(
                asked := (body or {}).get("versions"), dict) and asked.get(cfg.holder) else None,
            "decision": decision, "reason": reason, **extra})

    @web.middleware
    async def guard(request: web.Request, handler):
        body = None
        try:
            peer = _peer(request)
            request["peer"] = peer
            revocations.check(peer)
            wanted = "collector" if request.path == "/v1/witness" else "coordinator"
            if peer.role != wanted:
                raise WorkbenchUserError(f"this node serves the space's {wanted} only here, not "
                                         f"{peer.role} {peer.name!r}.", reason="wrong-peer")
            if request.method == "POST":
                raw = await request.read()
                try:
                    if request.content_type == WIRE_TYPE:  # a header and ciphertexts
                        body, request["blobs"] = wire.decode(raw)
                    elif len(raw) > MAX_BODY:
                        raise WorkbenchUserError("the body is too large.", reason="bad-request")
                    else:
                        body = json.loads(raw)
                except (ValueError, UnicodeDecodeError, wire.WireError):
                    raise WorkbenchUserError("the body must be a JSON object or a wire frame.",
                                             reason="bad-request") from None
                if not isinstance(body, dict):
                    raise WorkbenchUserError("the body must be a JSON object.",
                                             reason="bad-request")
            request["body"] = body
            return await handler(request)
        except WorkbenchUserError as exc:
            status = STATUS.get(exc.reason, 400)
            record(request, body, "refused", exc.reason)
            return error_response(status, exc.reason, str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            record(request, body, "refused", f"http-{exc.status}")
            return error_response(exc.status, "bad-request", exc.reason)
        except Exception as exc:  # noqa: BLE001 - reported by type only, never row values
            log_fault(log, f"node fault on {request.method} {request.path[:100]}", exc)
            record(request, body, "failed", "internal-error")
            return error_response(500, "internal-error", "the node failed on this request; "
                                                         "the fault is in its log.")

    def check_request(body: dict, action: str, fresh_nonce: bool = True) -> tuple:
        """(study, view, columns, policy, rules) of a request the node may serve, or refuse."""
        study, view, columns = body.get("study"), body.get("view"), body.get("columns")
        if not isinstance(study, str) or not isinstance(view, str) or (
                columns is not None and not (isinstance(columns, list)
                                             and all(isinstance(c, str) for c in columns))):
            raise WorkbenchUserError("a request names a study, a view and optional columns.",
                                     reason="bad-request")
        if body.get("holder") != cfg.holder:
            raise WorkbenchUserError(f"this request is for holder {body.get('holder')!r}, not "
                                     f"{cfg.holder}.", reason="wrong-holder")
        policy = state.policy(body)
        ensure_allowed(policy, study_kernel_user(study), action, study, view)
        rules = load_rules(cfg.rules)
        why = rules.serves(study, view)
        if why:
            raise refusal(cfg.holder, why)
        if fresh_nonce:
            state.nonces.accept(body.get("nonce"))
        return study, view, columns, policy, rules

    async def rules_route(request: web.Request) -> web.Response:
        rules = load_rules(cfg.rules)
        record(request, None, "served")
        return web.json_response({"holder": cfg.holder,
                                  "thresholds": rules.thresholds.model_dump(exclude_none=True),
                                  "rounds_per_day": rules.rounds_per_day})

    async def view_route(request: web.Request) -> web.Response:
        body = request["body"] or {}
        study, view, columns, _, _ = check_request(body, "read-view")
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise WorkbenchUserError("limit must be a whole number.", reason="bad-request")
        loop = asyncio.get_running_loop()
        version, engine = await loop.run_in_executor(None, state.engine_for, body)
        if not state.holds(view, engine):
            record(request, body, "served", None, rows=0, version=version)
            return web.Response(status=204)
        result = await loop.run_in_executor(
            None, lambda: engine.read(study, view, columns, limit))
        data = await loop.run_in_executor(None, _arrow_bytes, result.table)
        record(request, body, "served", None, rows=result.rows, bytes=len(data),
               version=version)
        return web.Response(body=data, content_type=ARROW_TYPE,
                            headers={"X-Workbench-Rows": str(result.rows)})

    async def round_route(request: web.Request) -> web.Response:
        body = request["body"] or {}
        study, view, columns, _, rules = check_request(body, "secure-op")
        started = time.perf_counter()  # the node's whole share: checks, rows, encryption
        kind, spec, nonce = body.get("kind"), body.get("spec"), body.get("nonce")
        request_id = str(body.get("request_id", ""))[:64]
        if not isinstance(kind, str) or not isinstance(spec, dict):
            raise WorkbenchUserError("a round names its kind and spec.", reason="bad-request")
        try:
            asked = Thresholds.model_validate(spec.get("thresholds") or {})
        except ValueError:
            raise WorkbenchUserError("the round's thresholds are malformed.",
                                     reason="bad-request") from None
        looser = rules.looser(asked)
        if looser:
            raise refusal(cfg.holder, looser)
        loop = asyncio.get_running_loop()
        version, engine = await loop.run_in_executor(None, state.engine_for, body)
        state.spend_round(study, rules.rounds_per_day)
        node = None if not state.holds(view, engine) else await loop.run_in_executor(
            None, lambda: state.holder_for(request_id, study, view, columns, version, engine))
        if node is None:
            record(request, body, "served", None, rows=0, version=version)
            return web.Response(body=wire.encode({"empty": True}), content_type=WIRE_TYPE)
        out = await loop.run_in_executor(None, lambda: node.contribute(kind, spec, nonce))
        # its own time: the coordinator's share of a round is the rest (make bench)
        frame = wire.encode({"per_scheme": out.per_scheme, "fingerprint": out.fingerprint,
                             "envelope": out.envelope,
                             "seconds": round(time.perf_counter() - started, 6)}, out.blobs)
        record(request, body, "served", None, rows=len(node.frame), bytes=len(frame),
               version=version)
        return web.Response(body=frame, content_type=WIRE_TYPE)

    async def keygen_route(request: web.Request) -> web.Response:
        """One step of collective key generation (``keyshare.py``): commit, reveal, finish (and
        deal, receive for t-out-of-N), the parties and t checked against the signed policy."""
        from workbench.secure.threshold_node import check_key_set, verify_keys

        body = request["body"] or {}
        if body.get("holder") != cfg.holder:
            raise WorkbenchUserError(f"this request is for holder {body.get('holder')!r}, not "
                                     f"{cfg.holder}.", reason="wrong-holder")
        step = request.match_info["step"]
        check = None
        if isinstance(body.get("policy"), dict):  # the key parties and t are the policy's
            policy = state.policy(body)

            def check(parties, t, what):
                check_key_set(policy, verify_keys(state.registry), parties, t, what)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, state.keyshare.step, step, body, check)
        if step == "finish":
            state.refresh_keys()
        record(request, None, "served", None, keygen=str(body.get("keygen"))[:32], step=step)
        return web.json_response(reply)

    async def partial_route(request: web.Request) -> web.Response:
        """This node's partial decryption of a round's pooled BFV ciphertexts, only for a sum
        it recomputed itself from at least min-holders signed contributions, once per round
        (``secure/threshold_node.py``), sealed to the release checker."""
        from workbench.secure.threshold_node import (
            BOX_PUB,
            check_key_set,
            partial_for_round,
            verify_keys,
        )

        body = request["body"] or {}
        study, view, _, policy, rules = check_request(body, "secure-op", fresh_nonce=False)
        spec = body.get("spec")
        try:
            asked = Thresholds.model_validate(spec["thresholds"])
        except (ValueError, KeyError, TypeError):
            raise WorkbenchUserError("the round's spec carries no valid thresholds.",
                                     reason="bad-request") from None
        looser = rules.looser(asked)
        if looser:
            raise refusal(cfg.holder, looser)
        share = state.keyshare
        party = share.shamir or share.party
        if party is None:
            raise WorkbenchUserError("this node holds no share of a joint key.",
                                     reason="no-key-share")
        # a key made for other key parties or another t than the signed policy's is not used
        # (a policy change of t takes effect with the next key generation, never before)
        made = share.record or {}
        check_key_set(policy, verify_keys(state.registry), made.get("parties"),
                      getattr(party, "t", None) or len(made.get("parties") or []),
                      "this node's key share")
        try:
            checker = (state.he / BOX_PUB).read_bytes()
        except OSError:
            raise WorkbenchUserError("the release checker's public key (he/checker-box.pub) "
                                     "is missing here.", reason="no-key-share") from None
        loop = asyncio.get_running_loop()
        reply, box = await loop.run_in_executor(None, lambda: partial_for_round(
            party, state.signer, checker, state.registry,
            fingerprint=state.keys.fingerprint, kind=body.get("kind"), spec=spec,
            nonce=body.get("nonce"), parts=body.get("parts"), blobs=request.get("blobs", []),
            aggregates=body.get("aggregates"), min_holders=asked.min_holders,
            nonces=state.partial_nonces, parties=(share.record or {}).get("parties"),
            present=body.get("present")))
        # the node's own record of every partial it gave: which sums, whose contributions
        record(request, body, "served", None, partial_of=reply["aggregates"],
               signers=reply["signers"], box_sha256=reply["box_sha256"])
        return web.Response(body=wire.encode(reply, [box]), content_type=WIRE_TYPE)

    async def witness_route(request: web.Request) -> web.Response:
        """Cosign the central log's newest tree head if it is consistent with the last one this
        node cosigned (node/witness.py); a refusal is the alarm, kept in the witness's state."""
        from workbench.node import witness

        if state.witness is None:
            raise WorkbenchUserError("this node is not a witness of the space's log.",
                                     reason="not-found")
        line = json.dumps(request["body"] or {}).encode()
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, witness.answer, state.witness, line)
        record(request, None, "served" if reply.get("ok") else "refused",
               None if reply.get("ok") else str(reply.get("reason"))[:40],
               size=(reply.get("cosignature") or {}).get("tree_size"))
        return web.json_response(reply)

    app = web.Application(middlewares=[guard], client_max_size=MAX_FRAME)
    app.router.add_post("/v1/witness", witness_route)
    app.router.add_get("/v1/rules", rules_route)
    app.router.add_post("/v1/view", view_route)
    app.router.add_post("/v1/round", round_route)
    app.router.add_post("/v1/partial", partial_route)
    app.router.add_post("/v1/keygen/{step}", keygen_route)
    return app


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def serve(config: NodeConfig, host: str, port: int) -> None:
    """Load the store and keys, then serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s node %(message)s")
    state = NodeState(config, Journal(config.journal))
    state.load()
    ctx = pki.server_context(config.ca, config.cert, config.key)
    started = time.monotonic()
    app = make_app(state)

    async def main() -> None:
        stop = stop_requested()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # noqa: SLF001 - the port chosen for 0
        print(f"holder node {config.holder} ready on {bound[0]}:{bound[1]} (uid {os.getuid()}, "
              f"loaded in {time.monotonic() - started:.1f} s)", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
