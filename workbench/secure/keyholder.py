"""The key holder: the only holder of the HE secret key (security boundary).

``KeyHolder.handle(header, blobs)`` is the whole interface, used in-process by ``Federation`` and
behind the ``workbench keyholder`` socket server. For every request it: checks the ciphertexts were
made under this space's public context; decrypts the POOLED aggregate; checks that at least two
holders contributed rows (the pooled holder-count slot, so a single holder's ciphertext is never
released); applies the release policy (``release.py``); records an ``he-decryption`` provenance
record (refusing when the collector cannot be reached: fail closed); and returns only the released
values. Intermediate decrypted vectors (per-bin risk sets, per-cell sums) never leave this object.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError, WorkbenchUserError
from workbench.secure import ops, release, wire
from workbench.secure.keys import SecretKeys, parameters

log = logging.getLogger(__name__)


class KeyHolder:
    def __init__(self, keys: SecretKeys, provenance=None, *, min_cell_floor: int = 1,
                 require_provenance: bool = False):
        if require_provenance and provenance is None:
            raise WorkbenchError("the key holder service needs a provenance client")
        self.keys, self.provenance, self.min_cell_floor = keys, provenance, min_cell_floor
        self._lock = threading.Lock()  # SEAL objects are not shared safely across threads

    @property
    def fingerprint(self) -> str:
        return self.keys.fingerprint

    def handle(self, header: dict, blobs: list[bytes]) -> dict:
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
        thresholds = release.Thresholds.from_dict(header.get("thresholds"), self.min_cell_floor)
        if fingerprint != self.fingerprint:
            raise WorkbenchUserError(
                f"the ciphertexts were made under another public context (fingerprint "
                f"{fingerprint[:12]}; this key holder's is {self.fingerprint[:12]}). Encrypt with "
                "this space's he/public.ctx.", reason="wrong-context")
        if len(set(contributors)) < thresholds.min_holders:
            self._record(header, thresholds, "refused", "min-holders", len(blobs))
            raise release.ReleaseRefused(
                "min-holders", f"{len(set(contributors))} holder(s) contributed; a pooled result "
                               f"needs at least {thresholds.min_holders}, so no single holder's "
                               "contribution is ever decrypted.")
        from workbench.secure.nodes import slots

        if kind not in ops.KINDS:
            raise wire.WireError(f"unknown operation kind {kind!r}")
        try:
            needed = ops.ciphertexts_needed(kind, spec, slots())
        except (KeyError, TypeError, ValueError):
            raise wire.WireError(f"the spec does not describe a {kind!r} operation") from None
        if len(blobs) != needed["bfv"] + needed["ckks"]:
            raise wire.WireError(f"{len(blobs)} ciphertexts for an operation whose layout needs "
                                 f"{needed['bfv']} BFV + {needed['ckks']} CKKS")
        count = ops.sizes(kind, spec)
        flat = {"bfv": self._decrypt("bfv", blobs[:needed["bfv"]])[:count["bfv"]],
                "ckks": self._decrypt("ckks", blobs[needed["bfv"]:])[:count["ckks"]]}
        values = ops.split(kind, spec, flat)
        try:
            release.check_holders(float(values["holders"][0]), len(contributors), thresholds)
            result = rule(op, spec, values, thresholds)
        except release.ReleaseRefused as exc:
            self._record(header, thresholds, "refused", exc.rule, len(blobs))
            raise
        except (KeyError, IndexError, TypeError, ValueError):
            # a spec that fits the layout but not the rule; the text could quote values: drop it
            raise wire.WireError(f"the spec does not describe a {op!r} operation") from None
        self._record(header, thresholds, "released", None, len(blobs), result)
        return result

    def _decrypt(self, scheme: str, blobs: list[bytes]) -> np.ndarray:
        import tenseal as ts

        load = ts.bfv_vector_from if scheme == "bfv" else ts.ckks_vector_from
        parts = [np.zeros(0)]
        with self._lock:
            ctx = self.keys.context(scheme)
            for blob in blobs:
                try:
                    parts.append(np.asarray(load(ctx, blob).decrypt()))
                except (ValueError, RuntimeError, TypeError):
                    raise WorkbenchUserError(
                        "a ciphertext is malformed or was made with other HE parameters; encrypt "
                        "with this space's he/public.ctx.", reason="malformed-ciphertext") from None
        return np.concatenate(parts)

    def _record(self, header, thresholds, decision: str, rule: str | None, n_blobs: int,
                result: dict | None = None) -> None:
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
                      {"name": "min-holders", "status": "fail" if rule == "min-holders"
                       else "pass"},
                      {"name": "release-policy", "status": passed,
                       "rule": f"{rule or 'all'}; thresholds {thresholds.to_dict()}"}],
        }
        if rule:
            fields["reason"] = rule
        if context.get("user"):
            fields["user"] = str(context["user"])
        if context.get("kernel"):
            fields["kernel_id"] = str(context["kernel"])
        if result is not None:
            blob = json.dumps(result, sort_keys=True).encode()
            fields["result_sha256"] = hashlib.sha256(blob).hexdigest()
            fields["result_size"] = len(blob)
        self.provenance.append("he-decryption", fields)  # raises when the collector is down


def _scheme_label(kind) -> str:
    if kind in ("counts", "survival"):
        return "bfv"
    return "bfv-ckks" if kind in ops.KINDS else "none"


# -- process boundary ------------------------------------------------------------------------------
def _error(exc: Exception) -> dict:
    reason = getattr(exc, "reason", "internal-error")
    # user errors and provenance outages carry messages written for users; anything else is a
    # fault whose text could hold decrypted values, so only its type is sent back
    message = str(exc) if hasattr(exc, "reason") else (
        f"key holder internal error ({type(exc).__name__}); the request was refused.")
    out = {"ok": False, "error": {"reason": reason, "message": message}}
    if isinstance(exc, release.ReleaseRefused):
        out["error"]["rule"] = exc.rule
    return out


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        keyholder: KeyHolder = self.server.keyholder  # type: ignore[attr-defined]
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
            reply = {"ok": True, "result": keyholder.handle(header, blobs)}
        except Exception as exc:  # noqa: BLE001 - every failure becomes a refusal
            if not isinstance(exc, WorkbenchUserError):
                log.exception("key holder request failed")
            reply = _error(exc)
        wire.send(self.request, reply)


class KeyHolderServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, keyholder: KeyHolder | None):
        path = Path(path)
        if path.exists() or path.is_symlink():
            path.unlink()
        super().__init__(str(path), _Handler)
        self.keyholder = keyholder


class KeyHolderClient:
    """Talks to ``workbench keyholder`` over its socket; same ``handle`` as ``KeyHolder``."""

    def __init__(self, socket_path: str | os.PathLike, timeout: float = 120.0):
        self.path, self.timeout = str(socket_path), timeout

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
            raise WorkbenchError(f"the key holder is not running at {self.path}: secure results "
                                 "cannot be decrypted (start 'workbench keyholder').") from None
        except PermissionError:
            raise WorkbenchUserError(f"this account may not connect to the key holder at "
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
            raise WorkbenchError(err.get("message", "key holder error"))
        raise WorkbenchUserError(err.get("message", "key holder refused the request"),
                                 reason=err.get("reason", "bad-request"))

    @property
    def fingerprint(self) -> str:
        return self.request({"type": "ping"})["fingerprint"]
