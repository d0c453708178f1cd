"""The gateway's entry point for ``POST /secure/{op}``.

``run_secure_op`` runs one operation over a view's per-holder partitions (holders encrypt with the
space's public context and sign each round with their own keys, the ``workbench aggregator``
process adds, the ``workbench keyholder`` process verifies the signatures and decrypts what the
release policy allows) and records an ``he-operation`` provenance record with the path, scheme,
parameters, contributing holders and numerical error bound. It returns plain JSON; nothing is
returned unless that record is durable (fail closed).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import uuid

import pandas as pd

from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.secure.coordinator import OPS, Coordinator
from workbench.secure.plan import Schema


def _params_for(op: str, params: dict) -> dict:
    method = getattr(Coordinator, f"_{op}")
    allowed = [p for p in inspect.signature(method).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise WorkbenchUserError(f"{op} does not take {', '.join(unknown)}; it takes "
                                 f"{', '.join(allowed)}.", reason="bad-request")
    required = [name for name, p in inspect.signature(method).parameters.items()
                if name != "self" and p.default is inspect.Parameter.empty]
    missing = [name for name in required if name not in params]
    if missing:
        raise WorkbenchUserError(f"{op} needs {', '.join(missing)}.", reason="bad-request")
    return params


def _space(space: Space | None, provenance) -> Space:
    if space is not None:
        return space
    socket_path = getattr(provenance, "socket_path", None)
    if socket_path is not None:  # DATA_DIR/run/collector.sock
        return Space(socket_path.parent.parent)
    return Space.at(None)


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, (int, float, bool)) or v is None else str(v)[:200]
                for v in list(value)[:64]]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)[:200]


def _columns(params: dict) -> list[str]:
    names = []
    for key in ("column", "index", "columns", "duration_col", "event_col", "group_col", "by",
                "strata", "outcome_col", "covariates"):
        value = params.get(key)
        names += [value] if isinstance(value, str) else list(value or [])
    return [str(n) for n in dict.fromkeys(names)]


def run_secure_op(op: str, partitions: dict[str, pd.DataFrame], params: dict, thresholds: dict,
                  provenance, context: dict, *, space: Space | None = None, keyholder=None,
                  public_keys=None, view=None, privacy: dict | None = None,
                  remote=None) -> dict:
    """Run ``op`` securely; returns ``{"op", "params", "result", "meta"}`` (JSON). By default the
    rounds go through the space's aggregator process; passing ``keyholder`` (with
    ``public_keys``) aggregates in-process instead and talks to that key holder directly.
    ``view``: the catalog ``View`` whose declared roles and grids the operation must respect
    (``plan.Schema``); the gateway always passes it. ``privacy``: the study's
    differential-privacy settings from the policy, if it has any. ``remote``: the holder nodes
    (``node.client.RemoteHolders``) play the holders; ``partitions`` is then None."""
    from workbench.secure.aggregator import AggregatorClient
    from workbench.secure.keys import load_public

    if op not in OPS:
        raise WorkbenchUserError(f"unknown secure operation {op!r}; one of: {', '.join(OPS)}",
                                 reason="not-found")
    params = _params_for(op, dict(params or {}))
    context = {k: v for k, v in dict(context or {}).items() if v is not None}
    context.setdefault("request_id", uuid.uuid4().hex)
    if "kernel_id" in context:
        context.setdefault("kernel", context["kernel_id"])
    aggregator = None
    if keyholder is None or public_keys is None:
        where = _space(space, provenance)
        if keyholder is None:
            aggregator = AggregatorClient(where.aggregator_socket)
        public_keys = public_keys or load_public(where)
    if remote is None:
        partitions = {h: f for h, f in partitions.items() if len(f)}  # rowless holders add 0
    fields = {"study": context.get("study", "in-process"), "op": op,
              "request_id": str(context["request_id"]),
              "holders": sorted(partitions or remote.names), "columns": _columns(params)}
    for key, field in (("user", "user"), ("kernel", "kernel_id"), ("msg_id", "msg_id"),
                       ("view", "view"), ("view_version", "view_version")):
        if context.get(key):
            fields[field] = str(context[key])
    coordinator = None
    try:
        coordinator = Coordinator(partitions, public_keys, keyholder, thresholds, context,
                                  aggregator=aggregator,
                                  schema=Schema(view) if view is not None else None,
                                  privacy=privacy, remote=remote)
        payload = coordinator.run(op, params)
    except WorkbenchUserError as exc:
        log = coordinator.log if coordinator else []
        provenance.append("he-operation", fields | {
            "status": "denied", "reason": exc.reason, "iteration": len(log),
            "ciphertexts": sum(r["ciphertexts"] for r in log),
            "params": {"path": "secure-he", **{k: _flat(v) for k, v in params.items()}}})
        raise
    meta = payload["meta"]
    body = json.dumps(payload, sort_keys=True, allow_nan=False).encode()
    if remote is not None:  # exactly the nodes whose contributions are in the result
        fields["holders"] = meta["holders"]
    he_params = {"path": "secure-he", "holders_ran": meta["holders_ran"],
                 "error_bound": meta["error_bound"]}
    for scheme, values in meta["parameters"].items():
        for key, value in values.items():
            he_params[f"{scheme}.{key}"] = _flat(value)
    he_params.update({f"op.{k}": _flat(v) for k, v in params.items()})
    provenance.append("he-operation", fields | {
        "status": "ok", "scheme": meta["scheme"], "iteration": meta["rounds"],
        "ciphertexts": sum(r["ciphertexts"] for r in coordinator.log),
        "params": dict(list(he_params.items())[:64]),
        "result_sha256": hashlib.sha256(body).hexdigest(), "result_size": len(body)})
    return payload
