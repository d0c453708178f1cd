"""The key holder, now the release checker: it holds no HE secret key (security boundary).

``KeyHolder.handle(header, blobs)`` is the whole interface, used in-process by ``Federation`` and
behind the ``workbench keyholder`` socket server (which only the aggregator account may reach).
For every request it: checks the ciphertexts were made under this space's public context; checks
that every claimed contributor signed THIS round with its registered key and that the round's
nonce was never accepted before (``signing.py``); opens the key parties' partial decryptions of
the POOLED aggregate and combines them; checks that the MAC slot of every ciphertext is the sum of
the signers' MACs, bound to the decrypted values (``mac.py``: a contribution replaced, dropped,
repeated or scaled by the aggregator, or an offset it added, is refused); checks that the holders
counted inside it are no more than those that signed (a contribution nobody signed is refused)
and at least two (so a single holder's ciphertext is never released); applies the release policy
(``release.py``); records an ``he-decryption`` provenance record for every decision (refusing
when the collector cannot be reached: fail closed); and returns only the released values.
Intermediate decrypted vectors (per-bin risk sets, per-cell sums) never leave this object.

The space's BFV key is a joint key (issue 17, ``threshold_node.py``): every aggregate comes with
each key party's partial decryption, signed by that party and sealed to this checker's X25519
key (``he/checker-box.key``). They are opened and combined here, so the plaintext appears only in
this process; a missing, unsigned or foreign partial is refused, and a wrong one fails the MAC
check, so the round releases nothing. Every ciphertext is BFV (real values travel as fixed-point
digits, ``ops.encode_reals``). A single-key decryption exists only in ``benchmarks/``, as the
baseline the threshold path is measured against.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError, WorkbenchUserError, log_fault
from workbench.secure import attest, audit, mac, ops, release, signing, wire
from workbench.secure.keys import PublicKeys, parameters

log = logging.getLogger(__name__)
SIGNATURE_RULES = ("unsigned-contribution", "bad-signature", "replayed-round")
THRESHOLD_RULES = ("missing-partial", "bad-partial", "unknown-party", "no-box-key",
                   "no-joint-key")
MAC_RULES = ("mac-mismatch",)


class KeyHolder:
    """``registry`` holds the holders' public keys and MAC keys (``signing.Registry``, or
    ``RegistryFile`` for the space's he/holders.json and he/holder-macs); without one, only
    holders ``trust``-ed in-process count."""

    def __init__(self, keys: PublicKeys, provenance=None, *, min_cell_floor: int = 1,
                 require_provenance: bool = False, registry=None, release_key=None,
                 state_dir: Path | None = None, keys_file: Path | None = None,
                 box_key=None):
        """``release_key``: the Ed25519 key that signs every released result
        (``attest.py``); an in-process key holder makes a fresh one. ``state_dir``: where its
        ledgers live (the studies' privacy budgets); an in-process one uses a temporary
        directory of its own. ``keys``: the space's public context with its key generation
        record; ``keys_file``: ``he/public.ctx``, re-read when a key generation rewrites it.
        ``box_key``: the X25519 key
        partial decryptions are sealed to (by default ``checker-box.key`` beside
        ``keys_file``)."""
        if require_provenance and provenance is None:
            raise WorkbenchError("the key holder service needs a provenance client")
        from nacl.signing import SigningKey

        self.release_key = release_key or SigningKey.generate()
        if state_dir is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="wb-keyholder-")
            state_dir = Path(self._tmp.name)
        self.state_dir = Path(state_dir)
        self._budget = self._audit = None
        self.keys, self.provenance, self.min_cell_floor = keys, provenance, min_cell_floor
        self.registry = registry if registry is not None else signing.Registry()
        self.nonces = signing.NonceGuard()
        from workbench.secure.keys import KeysFile

        self._file = KeysFile(keys_file, PublicKeys.from_bytes, keys) if keys_file else None
        self._box_key = box_key

    @property
    def fingerprint(self) -> str:
        return self.keys.fingerprint

    def handle(self, header: dict, blobs: list[bytes]) -> dict:
        if self._file is not None:
            self.keys = self._file.current()
        kind = header.get("type")
        if kind == "ping":
            return {"fingerprint": self.fingerprint, "parameters": parameters()}
        if kind != "decrypt-release":
            raise wire.WireError(f"unknown request type {kind!r}")
        return self._decrypt_release(header, blobs)

    def _decrypt_release(self, header: dict, blobs: list[bytes]) -> dict:
        try:
            kind, op, spec = header["kind"], header["op"], header["spec"]
            contributors = [str(c) for c in header["contributors"]]
            fingerprint = str(header["fingerprint"])
        except (KeyError, TypeError):
            raise wire.WireError("a decrypt-release request needs kind, op, spec, contributors "
                                 "and fingerprint") from None
        rule = release.RULES.get((kind, op))
        if rule is None or not isinstance(spec, dict):
            raise wire.WireError(f"no release rule for operation {op!r} of kind {kind!r}")
        partials = header.get("partials") or []
        if partials and (not self.keys.threshold or not isinstance(partials, list)
                         or len(partials) > len(blobs)):
            raise wire.WireError("partial decryptions sent to a key holder without a joint key")
        boxes = blobs[len(blobs) - len(partials):] if partials else []
        blobs = blobs[:len(blobs) - len(partials)]
        # holder nodes sign the thresholds inside the spec (each checked them against its own
        # floors): those bind; the coordinator's header copy is for in-process holders
        signed_thresholds = spec.get("thresholds") if isinstance(spec, dict) else None
        thresholds = release.thresholds_from(
            signed_thresholds if isinstance(signed_thresholds, dict)
            else header.get("thresholds"), self.min_cell_floor)
        if fingerprint != self.fingerprint:
            raise WorkbenchUserError(
                f"the ciphertexts were made under another public context (fingerprint "
                f"{fingerprint[:12]}; this key holder's is {self.fingerprint[:12]}). Encrypt with "
                "this space's he/public.ctx.", reason="wrong-context")
        try:
            signed = self._verify_signatures(header, kind, spec, contributors, fingerprint)
            mac_keys = [self.registry.mac_key(h) for h in signed]
            weight_key = self.registry.round_weight_key()
        except WorkbenchUserError as exc:
            self._record(header, thresholds, "refused", exc.reason, len(blobs))
            raise
        if len(signed) < thresholds.min_holders:
            self._record(header, thresholds, "refused", "min-holders", len(blobs))
            raise release.ReleaseRefused(
                "min-holders", f"{len(signed)} holder(s) contributed; a pooled result "
                               f"needs at least {thresholds.min_holders}, so no single holder's "
                               "contribution is ever decrypted.")
        try:
            self.audit.count_round(str((header.get("context") or {}).get("study")
                                       or "in-process"), thresholds.max_rounds_per_day)
        except release.ReleaseRefused as exc:
            self._record(header, thresholds, "refused", exc.rule, len(blobs))
            raise
        from workbench.secure.nodes import slots

        if kind not in ops.KINDS:
            raise wire.WireError(f"unknown operation kind {kind!r}")
        try:
            needed = ops.ciphertexts_needed(kind, spec, slots())
        except (KeyError, TypeError, ValueError):
            raise wire.WireError(f"the spec does not describe a {kind!r} operation") from None
        if len(blobs) != needed["bfv"]:
            raise wire.WireError(f"{len(blobs)} ciphertexts for an operation whose layout needs "
                                 f"{needed['bfv']}")
        count = ops.sizes(kind, spec)
        try:
            decrypted, opened = self._open(header, kind, spec, blobs, partials, boxes)
        except WorkbenchUserError as exc:
            self._record(header, thresholds, "refused", exc.reason, len(blobs))
            raise

        def macs_match(values: list[np.ndarray]) -> None:
            _check_macs(values, mac_keys, weight_key, header.get("nonce"), kind, spec,
                        slots()["bfv"])

        try:
            macs_match(decrypted)
            failed = None
        except WorkbenchUserError as exc:
            failed = exc
        named: list[str] = []
        if opened is not None and (failed is not None or len(opened.sets) > 1):
            # which key party's partial is wrong, if one can be named; with t-out-of-N every
            # set of t opened is checked, so a wrong partial outside the released set is too
            failed, named = _blame(opened, macs_match, failed)
        if failed is not None:
            self._record(header, thresholds, "refused", failed.reason, len(blobs), named=named)
            raise failed
        flat = {"bfv": np.concatenate([np.zeros(0, dtype=np.int64)]
                                      + [d[:-ops.MAC_SLOTS] for d in decrypted])[:count["bfv"]]}
        values = ops.split(kind, spec, flat)
        counted = float(values["holders"][0])
        if abs(counted - round(counted)) <= 1e-3 and len(signed) < round(counted) <= 64:
            # each holder counts itself in this slot; more counted than signed means an added
            # contribution that no registered holder signed (e.g. the aggregator's own). Values
            # far outside come from another key and are reported as such by check_holders.
            self._record(header, thresholds, "refused", "unsigned-contribution", len(blobs))
            raise WorkbenchUserError(
                "Contribution refused (unsigned-contribution): the pooled ciphertexts count more "
                f"contributing holders than the {len(signed)} that signed this round.",
                reason="unsigned-contribution")
        try:
            release.check_holders(counted, len(signed), thresholds)
            privacy = spec.get("privacy")  # signed by every holder with the spec
            if privacy:
                result = self._private_release(op, spec, values, thresholds, privacy,
                                               header.get("context") or {})
            else:
                result = rule(op, spec, values, thresholds)
            # encoded once: for the provenance record, the signature and the audit's ledger
            encoded, digest = attest.result_digest(result)
            if not privacy:
                self.audit.check(audit.scope_of(header.get("context") or {}), op, spec,
                                 result, thresholds.min_cell_count, encoded=encoded)
        except release.ReleaseRefused as exc:
            self._record(header, thresholds, "refused", exc.rule, len(blobs))
            raise
        except (KeyError, IndexError, TypeError, ValueError):
            # a spec that fits the layout but not the rule; the text could quote values: drop it
            raise wire.WireError(f"the spec does not describe a {op!r} operation") from None
        self._record(header, thresholds, "released", None, len(blobs), (encoded, digest))
        context = header.get("context") or {}
        body = {"study": str(context.get("study") or "in-process"),
                "request_id": str(context.get("request_id") or "none"), "op": op, "kind": kind,
                "spec_sha256": signing.spec_sha256(spec), "result": result,
                "checks": {"thresholds": thresholds.model_dump(),
                           "rules": "differential-privacy" if privacy else rule.__name__},
                "view": str(context.get("view") or ""), "spec": spec}
        return result | {"attestation": attest.sign(self.release_key, body, digest)}

    @property
    def audit(self):
        if self._audit is None:
            self._audit = audit.ReleaseAudit(self.state_dir / "released.sqlite")
        return self._audit

    @property
    def budget(self):
        from workbench.secure.dp import PrivacyBudget

        if self._budget is None:
            self._budget = PrivacyBudget(self.state_dir / "privacy-budget.sqlite")
        return self._budget

    def _private_release(self, op, spec, values, t, privacy: dict, context: dict) -> dict:
        """A study with an epsilon budget (``dp.py``): counts, histograms and KM with OpenDP's
        discrete Laplace noise on the whole public grid (no exact merging or cutting first),
        the epsilon spent on the study's durable ledger before anything is returned."""
        from workbench.secure import dp

        settings = dp.PrivacySettings.model_validate(privacy)
        if not dp.supports(op):
            raise release.ReleaseRefused(
                "privacy-op", f"this study releases results under differential privacy: only "
                              "counts, cross-tables, histograms and Kaplan-Meier curves; "
                              f"{op} has no private release. Ask for one of those instead.")
        k, eps = t.min_cell_count, settings.epsilon_per_release
        if op == "kaplan_meier":
            at_risk, events = release._survival_arrays(spec, values)
            out = dp.privatize_survival(at_risk, events, release.cell_labels(spec),
                                        float(spec["resolution"]), eps, k)
        else:
            counts = np.rint(values["counts"]).astype(np.int64)
            release.check_cells(values, counts, t.model_copy(update={"min_cell_count": 1}),
                                "cell(s)", "Group by columns that every holder shares.")
            exact = {"counts": counts.tolist(), "labels": release.cell_labels(spec)}
            if op == "histogram":
                exact["edges"] = [float(e) for e in spec["by"][0]["edges"]]
            out = dp.privatize(op, exact, eps, k, spec=spec)
        self.budget.spend(str(context.get("study") or "in-process"),
                          out["privacy"]["epsilon"], settings.epsilon_budget,
                          str(context.get("request_id") or "none"))
        return out

    def _verify_signatures(self, header: dict, kind: str, spec: dict, contributors: list[str],
                           fingerprint: str) -> list[str]:
        """Every claimed contributor signed this round; the round is new. Returns the signers."""
        signatures = header.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise WorkbenchUserError("Contribution refused (unsigned-contribution): the request "
                                     "carries no holder signatures.",
                                     reason="unsigned-contribution")
        try:
            spec_hash = signing.spec_sha256(spec)
        except (TypeError, ValueError):
            raise wire.WireError("the spec is not canonical JSON") from None
        nonce = header.get("nonce")
        signed = [self.registry.verify(env, nonce, kind, spec_hash, fingerprint)
                  for env in signatures]
        if len(set(signed)) != len(signed) or sorted(signed) != sorted(contributors):
            raise WorkbenchUserError("Contribution refused (unsigned-contribution): the claimed "
                                     "contributors are not exactly the holders that signed.",
                                     reason="unsigned-contribution")
        self.nonces.accept(nonce)
        return signed

    def _open(self, header: dict, kind: str, spec: dict, bfv_blobs: list[bytes],
              partials: list, boxes: list[bytes]):
        """The pooled slot vectors, one per ciphertext (its last slot the MAC), combined from
        every key party's sealed, signed partial decryption, and the opened partials
        (``threshold_node.Opened``, for naming a wrong one)."""
        from workbench.secure import threshold_node

        if not self.keys.threshold:
            raise threshold_node.refuse("no-joint-key", "the space's HE key has no key "
                                                        "generation record: rebuild its keys.")
        if self._box_key is None:
            where = self._file.path.parent if self._file else None
            if where is None:
                raise threshold_node.refuse("no-box-key", "this key holder has no key to open "
                                                          "partial decryptions with.")
            self._box_key = threshold_node.load_box_key(where)
        sums = threshold_node.pooled_from_sum(bfv_blobs)
        opened = threshold_node.open_partials(
            self._box_key, self.registry, list(self.keys.threshold["parties"]),
            nonce=header.get("nonce"), kind=kind, spec=spec, sums=sums, partials=partials,
            boxes=boxes, t=self.keys.threshold.get("t"))
        return list(opened.combine(0)), opened

    def _record(self, header, thresholds, decision: str, rule: str | None, n_blobs: int,
                result: tuple[bytes, str] | None = None, named: list[str] = ()) -> None:
        if self.provenance is None:
            return
        context = header.get("context") or {}
        passed = "fail" if decision == "refused" else "pass"
        fields = {
            "study": context.get("study") or "in-process",
            "request_id": str(context.get("request_id") or "none"),
            "decision": "refused" if decision == "refused" else "decrypted",
            "op": str(header.get("op")), "scheme": _scheme_label(header.get("kind")),
            "cells": n_blobs,
            "rules": [{"name": "same-public-context", "status": "pass"},
                      {"name": "holder-signatures", "status": "fail" if rule in SIGNATURE_RULES
                       else "pass"},
                      {"name": "holder-macs", "status": "fail" if rule in MAC_RULES
                       else "pass"},
                      {"name": "min-holders", "status": "fail" if rule == "min-holders"
                       else "pass"},
                      *_threshold_checks(self.keys.threshold, header, rule, named),
                      {"name": "release-policy", "status": passed,
                       "rule": f"{rule or 'all'}; thresholds {_compact(thresholds)}"}],
        }
        if rule:
            fields["reason"] = rule
        if context.get("user"):
            fields["user"] = str(context["user"])
        if context.get("kernel"):
            fields["kernel_id"] = str(context["kernel"])
        if result is not None:
            encoded, digest = result  # the canonical encoding of what was released
            fields["result_sha256"], fields["result_size"] = digest, len(encoded)
        self.provenance.append("he-decryption", fields)  # raises when the collector is down


def _threshold_checks(threshold: dict | None, header: dict, rule: str | None,
                      named: list[str] = ()) -> list[dict]:
    """With threshold decryption: one check for the partials, and one per partial received
    (its sender and the digest of its sealed box), so provenance names every partial used;
    ``named``: the key parties whose partial was found wrong (``_blame``), their check fails."""
    if not threshold:
        return []
    from workbench.secure.threshold import FLOOD_BITS

    partials = [p for p in header.get("partials") or [] if isinstance(p, dict)][:64]
    parties = list(threshold.get("parties") or [])
    out = [{"name": "threshold-partials", "status": "fail" if rule in THRESHOLD_RULES
            else "pass", "rule": f"{_scheme(threshold, parties)}: {len(partials)} of "
                                 f"{len(parties)} key parties; {FLOOD_BITS}-bit flooding"}]
    for meta in partials:
        holder, box = meta.get("holder"), meta.get("box_sha256")
        holder = holder if isinstance(holder, str) and signing.HOLDER_NAME.match(holder) else "?"
        box = box if isinstance(box, str) and signing._HEX64.match(box) else "?"  # noqa: SLF001
        wrong = holder in named
        out.append({"name": f"partial-decryption {holder}", "status": "fail" if wrong else "pass",
                    "rule": f"sealed box sha256 {box}"
                            + ("; wrong partial: fails the MAC in every set of t it is in"
                               if wrong else "")})
    return out


def _blame(opened, macs_match, failed: WorkbenchUserError | None
           ) -> tuple[WorkbenchUserError | None, list[str]]:
    """The MAC check on every set of t key parties the round's partials were opened for
    (``threshold_shamir.blame_sets``; ``failed``: the released set's outcome): the key parties
    in every failing set and in no passing one are named (``threshold_shamir.suspects``). Fail
    closed: if any set fails, the round releases nothing, even when the released set passes
    (its sender sent a wrong partial; a passing set also misses a wrong partial with
    probability 1/t per ciphertext, and which set is released must not be the senders'
    choice). Returns the refusal (None: every set passes) and the names; never values."""
    from workbench.secure.threshold_shamir import suspects

    if opened.t is None:
        return _with_note(failed, "the sender of a wrong partial, if any, is not named "
                                  "(N-out-of-N)."), []
    if len(opened.sets) < 2:
        return _with_note(failed, "the sender of a wrong partial, if any, is not named (no "
                                  "spare key party answered: one set of t)."), []
    outcomes = {frozenset(opened.sets[0]): failed is None}
    for index in range(1, len(opened.sets)):
        try:
            macs_match(opened.combine(index))
            outcomes[frozenset(opened.sets[index])] = True
        except WorkbenchUserError:
            outcomes[frozenset(opened.sets[index])] = False
    if all(outcomes.values()):
        return None, []
    named, tried = sorted(suspects(outcomes)), len(outcomes)
    if not any(outcomes.values()):  # every set fails alike: not one partial (e.g. the sum)
        return _with_note(failed, f"all {tried} sets of t key parties fail it, so no key "
                                  "party's partial is named."), []
    who = ", ".join(named) if named else "more than one key party (none can be named alone)"
    return WorkbenchUserError(
        f"Partial decryption refused (bad-partial): the partial decryption of {who} is wrong: "
        f"of {tried} sets of t key parties, the MAC fails in every set that includes it and "
        "passes in the others; nothing was released from this round.",
        reason="bad-partial"), named


def _with_note(exc: WorkbenchUserError, note: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"{exc} {note[0].upper()}{note[1:]}", reason=exc.reason)


def _scheme(threshold: dict, parties: list) -> str:
    t = threshold.get("t")
    return f"{t}-out-of-N" if isinstance(t, int) and t < len(parties) else "N-out-of-N"


def _compact(t) -> str:
    """The thresholds in a provenance record's rule text (short: the field is bounded)."""
    return (f"k={t.min_cell_count} dominance=({t.dominance_n}, {t.dominance_k:g}) "
            f"p={t.p_percent:g} holders={t.min_holders}")


def _check_macs(decrypted: list[np.ndarray], mac_keys: list[bytes], weight_key: bytes, nonce,
                kind: str, spec: dict, n_slots: int) -> None:
    """Each decrypted BFV ciphertext (``n_slots`` slots) must carry in its last slot the sum of
    the signers' MACs for this round plus the weighted sum of its decrypted values: the
    aggregator added exactly the signed contributions, once each, unscaled, and nothing else to
    the values (``mac.py``)."""
    if any(len(v) != n_slots for v in decrypted):
        raise _mac_mismatch()
    want = mac.expected(mac_keys, weight_key, nonce, kind, signing.spec_sha256(spec),
                        [v[:-ops.MAC_SLOTS] for v in decrypted])
    for values, expected in zip(decrypted, want, strict=True):
        if not mac.matches(values, expected):
            raise _mac_mismatch()


def _mac_mismatch() -> WorkbenchUserError:
    return WorkbenchUserError(
        "Contribution refused (mac-mismatch): the pooled ciphertexts do not carry the MACs of "
        "exactly the holders that signed this round (a contribution was replaced, dropped, "
        "repeated or scaled, or an offset added to the counts, on the way); nothing was "
        "released.", reason="mac-mismatch")


def _scheme_label(kind) -> str:
    if kind in ("counts", "survival"):
        return "bfv"
    return "bfv-fixed-point" if kind in ops.KINDS else "none"


# -- process boundary ------------------------------------------------------------------------------
def _error(exc: Exception, reveal: bool = False) -> dict:
    reason = getattr(exc, "reason", "internal-error")
    # user errors and provenance outages carry messages written for users; anything else is a
    # fault whose text could hold decrypted values, so only its type is sent back (``reveal``:
    # a service that never decrypts, the aggregator, may pass its faults' text on)
    message = str(exc) if hasattr(exc, "reason") or reveal else (
        f"key holder internal error ({type(exc).__name__}); the request was refused.")
    out = {"ok": False, "error": {"reason": reason, "message": message}}
    if isinstance(exc, release.ReleaseRefused):
        out["error"]["rule"] = exc.rule
    return out


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        service = self.server.service  # type: ignore[attr-defined]
        reveal = self.server.reveal_errors  # type: ignore[attr-defined]
        self.request.settimeout(60)
        try:
            header, blobs = wire.recv(self.request)
        except (wire.WireError, OSError) as exc:
            try:
                wire.send(self.request, _error(exc if isinstance(exc, wire.WireError)
                                               else wire.WireError(str(exc))))
            except OSError:
                pass
            return
        try:
            reply = {"ok": True, "result": service.handle(header, blobs)}
        except Exception as exc:  # noqa: BLE001 - every failure becomes a refusal
            if not isinstance(exc, WorkbenchUserError):
                log_fault(log, "request failed", exc)
            reply = _error(exc, reveal)
        wire.send(self.request, reply)


class FrameServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One ``wire`` frame in, one reply frame out, per connection; ``service.handle`` decides."""

    daemon_threads = True
    reveal_errors = False

    def __init__(self, path: Path, service=None):
        path = Path(path)
        if path.exists() or path.is_symlink():
            path.unlink()
        super().__init__(str(path), _Handler)
        self.service = service



class FrameClient:
    """Sends one frame to a service socket and turns its reply back into a value or an error."""

    label, command = "key holder", "workbench keyholder"

    def __init__(self, socket_path: str | os.PathLike, timeout: float = 120.0):
        self.path, self.timeout = str(socket_path), timeout

    @property
    def space(self):
        """The space whose run/ directory holds this socket."""
        from workbench.paths import Space

        return Space(Path(self.path).parent.parent)

    def request(self, header: dict, blobs: list[bytes] = ()) -> dict:
        return self.raw(wire.encode(header, list(blobs)))

    handle = request

    def raw(self, frame: bytes) -> dict:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            sock.sendall(frame)
            reply, _ = wire.recv(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            raise WorkbenchError(f"the {self.label} is not running at {self.path}: secure "
                                 f"results cannot be computed (start '{self.command}').") from None
        except PermissionError:
            raise WorkbenchUserError(f"this account may not connect to the {self.label} at "
                                     f"{self.path}.", reason="access-denied") from None
        finally:
            sock.close()
        if reply.get("ok"):
            return reply["result"]
        err = reply.get("error") or {}
        if err.get("rule"):
            exc = release.ReleaseRefused(err["rule"], "")
            exc.args = (err.get("message", ""),)
            raise exc
        if err.get("reason") in ("internal-error", "provenance-unavailable"):
            raise WorkbenchError(err.get("message", f"{self.label} error"))
        raise WorkbenchUserError(err.get("message", f"the {self.label} refused the request"),
                                 reason=err.get("reason", "bad-request"))

    @property
    def fingerprint(self) -> str:
        return self.request({"type": "ping"})["fingerprint"]


class KeyHolderClient(FrameClient):
    """Talks to ``workbench keyholder`` over its socket; same ``handle`` as ``KeyHolder``."""
