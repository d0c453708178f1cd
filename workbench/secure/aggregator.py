"""The aggregator as a service: ``workbench aggregator`` on ``run/aggregator.sock``.

It holds the public contexts only (``he/public.ctx``: no secret, relinearisation or Galois keys).
One request is one round, as ``wire`` frames:

    header {"type": "aggregate", "round": {kind, op, spec, thresholds, context, fingerprint,
            nonce}, "parts": [{"holder", "per_scheme", "blobs": n, "envelope"}, ...]}
    blobs  every part's ciphertexts, in part order

It checks each part's context, layout and signature envelope (the right round, the hashes of the
blobs it came with), adds the ciphertexts, forwards the pooled sum with the holders' envelopes to
the key holder and returns the key holder's reply. With threshold decryption the request also
lists ``"partials": [{holder, aggregates, box_sha256, signature, signers}]`` with one sealed box
each after the parts' ciphertexts: the key parties' partial decryptions, sealed to the release
checker, which the aggregator relays unopened (it cannot open them). It cannot verify a
signature's origin against forgery better than the key holder can, and need not: the key holder
checks every signature.
"""

from __future__ import annotations

from workbench.secure import wire
from workbench.secure.keyholder import FrameClient
from workbench.secure.nodes import Aggregator, Contributions, Encrypted

_PART_FIELDS = {"holder", "per_scheme", "blobs", "envelope"}


class AggregatorService:
    """``handle(header, blobs)`` behind the socket; ``keyholder`` is a ``KeyHolderClient``."""

    def __init__(self, keys, keyholder, keys_file=None):
        """``keys_file``: ``he/public.ctx``, re-read when it changes (collective key generation
        replaces the BFV key while the aggregator runs)."""
        from workbench.secure.keys import KeysFile, PublicKeys

        self.keys, self.aggregator = keys, Aggregator(keys, keyholder)
        self._file = KeysFile(keys_file, PublicKeys.from_bytes, keys) if keys_file else None

    def handle(self, header: dict, blobs: list[bytes]) -> dict:
        if self._file is not None:
            self.keys = self.aggregator.keys = self._file.current()
        kind = header.get("type")
        if kind == "ping":
            return {"fingerprint": self.keys.fingerprint, "role": "aggregator"}
        if kind != "aggregate":
            raise wire.WireError(f"unknown request type {kind!r}")
        round_, parts = header.get("round"), header.get("parts")
        if not isinstance(round_, dict) or not isinstance(parts, list) or not parts:
            raise wire.WireError("an aggregate request needs a round and its parts")
        partials = header.get("partials") or []
        if not isinstance(partials, list) or len(partials) > len(blobs) \
                or not all(isinstance(p, dict) for p in partials):
            raise wire.WireError("partials are a list of objects, one sealed box each")
        boxes = blobs[len(blobs) - len(partials):] if partials else []
        blobs = blobs[:len(blobs) - len(partials)]
        out, start = [], 0
        for part in parts:
            if not isinstance(part, dict) or set(part) != _PART_FIELDS \
                    or not isinstance(part["blobs"], int) or part["blobs"] < 0 \
                    or not isinstance(part["per_scheme"], dict) \
                    or not isinstance(part["holder"], str):
                raise wire.WireError("each part is {holder, per_scheme, blobs, envelope}")
            # every ciphertext is BFV: the field must say so, and count the part's blobs
            if part["per_scheme"] != {"bfv": part["blobs"]} \
                    or not isinstance(part["per_scheme"]["bfv"], int):
                raise wire.WireError(f"the layout of {part['holder'][:64]!r}'s part does not "
                                     "add up")
            mine = blobs[start:start + part["blobs"]]
            start += part["blobs"]
            out.append(Encrypted(str(round_.get("kind")), str(round_.get("fingerprint")), mine,
                                 [part["holder"]], part["envelope"]))
        if start != len(blobs):
            raise wire.WireError(f"{len(blobs)} ciphertexts sent, the parts declare {start}")
        return self.aggregator.submit(round_, Contributions(out, zip(partials, boxes,
                                                                     strict=True)))


class AggregatorClient(FrameClient):
    """What the coordinator (in the gateway) uses: ``submit(header, parts)`` as ``Aggregator``."""

    label, command = "aggregator", "workbench aggregator"

    def submit(self, header: dict, parts: list[Encrypted]) -> dict:
        meta = [{"holder": p.contributors[0] if p.contributors else "", "blobs": len(p.blobs),
                 "per_scheme": dict(p.per_scheme), "envelope": p.envelope} for p in parts]
        blobs = [b for p in parts for b in p.blobs]
        request = {"type": "aggregate", "round": header, "parts": meta}
        partials = getattr(parts, "partials", ())
        if partials:  # sealed to the release checker: relayed unopened, after the parts
            request["partials"] = [m for m, _box in partials]
            blobs += [box for _m, box in partials]
        return self.request(request, blobs)
