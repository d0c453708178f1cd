"""Runs one secure operation end to end: public spec -> holders encrypt -> aggregator adds -> key
holder decrypts what the release policy allows. Iterative models (Cox, logistic) repeat the round
per Newton step; the coordinator only ever sees released pooled values (loglik, gradient, Hessian).

Used by ``Federation`` (in-process) and ``service.run_secure_op`` (the gateway); both return the
same JSON, which ``results.build`` turns into lifelines-shaped objects.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from workbench.errors import WorkbenchUserError
from workbench.secure import ops
from workbench.secure.keys import PublicKeys, parameters
from workbench.secure.nodes import Aggregator, HolderNode, check_federation
from workbench.secure.plan import Schema, check_size

OPS = ("count", "crosstab", "histogram", "sum", "mean", "var", "kaplan_meier", "logrank_test",
       "cox_ph", "logistic_regression")
MAX_NEWTON = 50
MAX_SECONDS = 600.0  # one request's wall time: Newton rounds stop here, with one clear refusal
# Every ciphertext is BFV: integer slots are exact; real values travel in fixed point
# (ops.encode_reals), each holder's value rounded to a multiple of 2^-FRAC_BITS.
ERROR_BOUND = {"bfv": "exact (integer slots, no noise after decryption)",
               "fixed-point": f"real values: absolute error <= holders x 2^-{ops.FRAC_BITS + 1} "
                              f"(BFV fixed point, 2^-{ops.FRAC_BITS}; a holder's |value| at most "
                              f"{ops.MAX_REAL:.1e})"}
REAL_KINDS = ("moments", "cox", "logistic")


class Coordinator:
    def __init__(self, partitions: dict[str, pd.DataFrame], keys: PublicKeys, keyholder,
                 thresholds: dict | None = None, context: dict | None = None,
                 holder_processes: bool = False, *, aggregator=None, signers=None,
                 schema: Schema | None = None, max_seconds: float = MAX_SECONDS,
                 privacy: dict | None = None, remote=None):
        """``aggregator``: an ``AggregatorClient`` (the service) or None for an in-process
        ``Aggregator`` that forwards to ``keyholder``. ``signers``: the holders' signing keys;
        by default fresh ones trusted by an in-process key holder, or the space's own.
        ``schema``: the view's declared roles and grids (``plan.Schema``); without one, the
        local mode of ``Federation`` (roles from the call, grids from the data). ``privacy``:
        the study's differential-privacy settings from the policy (``dp.PrivacySettings``),
        applied by the key holder. ``remote``: holder nodes that play the holders
        (``node.client.RemoteHolders``); then ``partitions`` is None and the thresholds travel
        inside the spec every node signs, so each node can insist on its own floors and no one
        on the way can loosen them."""
        from workbench.secure import signing

        if remote is not None:  # the nodes' floors tighten the study's thresholds first
            self._init_common(keys, keyholder, remote.tighten(dict(thresholds or {})), context,
                              aggregator, schema, max_seconds, privacy)
            self.holders, self.processes, self.partitions = [], remote, {}
            return
        check_federation(partitions)
        self._init_common(keys, keyholder, thresholds, context, aggregator,
                          schema or Schema.local(partitions), max_seconds, privacy)
        self.partitions = partitions
        if signers is None:
            signers = signing.signers_for(aggregator or keyholder, list(partitions))
        space = getattr(aggregator or keyholder, "space", None)
        if space is not None:  # a running key holder or aggregator of a space without nodes
            self.aggregator = _space_key_parties(space, keys, self.aggregator)
        self.holders = [HolderNode(name, frame, keys, signers[name])
                        for name, frame in partitions.items()]
        self.processes = None
        if holder_processes:  # holders encrypt in parallel, each in its own process
            from workbench.secure.holders import HolderProcesses

            self.processes = HolderProcesses(partitions, keys, signers)

    def _init_common(self, keys, keyholder, thresholds, context, aggregator, schema,
                     max_seconds, privacy) -> None:
        from workbench.secure.release import thresholds_from

        self.schema = schema
        self.max_seconds, self.started = max_seconds, time.monotonic()
        self.privacy = dict(privacy) if privacy else None
        self.attestation, self.spent = None, []  # the last release's signature; epsilon spent
        self.keys, self.keyholder = keys, keyholder
        self.aggregator = aggregator or Aggregator(keys, keyholder)
        self.thresholds = dict(thresholds or {})
        thresholds_from(self.thresholds)  # bad thresholds fail here, before any encryption
        self.context = dict(context or {})
        self.log: list[dict] = []  # per round: what was sent, for provenance and benchmarks

    # -- one encrypted round ---------------------------------------------------------------------
    def round(self, kind: str, op: str, spec: dict) -> dict:
        """One round: a fresh nonce, every holder encrypts and signs, the aggregator adds and
        forwards the pooled sum with the signatures, the key holder decrypts what it may."""
        from workbench.secure.signing import new_nonce

        check_size(kind, spec)  # from the public spec: before any holder reads or encrypts
        if self.privacy:  # in the spec the holders sign: no one on the way can strip it
            spec = {**spec, "privacy": self.privacy}
        if not self.holders:  # holder nodes: each checks the thresholds against its floors
            spec = {**spec, "thresholds": self.thresholds}
        if time.monotonic() - self.started > self.max_seconds:
            raise WorkbenchUserError(f"the operation ran longer than {self.max_seconds:g} s and "
                                     "was stopped; use fewer covariates or a coarser resolution.",
                                     reason="too-slow")
        started = time.perf_counter()
        nonce = new_nonce()
        if self.processes is not None:
            parts = self.processes.contribute(kind, spec, nonce)
        else:
            # Every holder's statistics first, then every encryption: the encryptions then run
            # back to back with SEAL's key and tables still in cache, instead of after a pass
            # over a holder's rows (contributions 4-5% faster, measured at n = 1e4 to 1e6). A
            # holder's bad column also stops the round before anything is encrypted.
            vectors = [h.vectors(kind, spec) for h in self.holders]
            parts = [h.seal(kind, spec, nonce, v)
                     for h, v in zip(self.holders, vectors, strict=True)]
        header = {"kind": kind, "op": op, "spec": spec, "thresholds": self.thresholds,
                  "context": self.context, "fingerprint": self.keys.fingerprint, "nonce": nonce}
        result = self.aggregator.submit(header, parts)
        # the release checker's signature over this round's release (attest.py): the last
        # round's travels with the result, for the airlock to verify
        self.attestation = result.pop("attestation", None)
        if "privacy" in result:  # what this release spent of the study's epsilon budget
            self.spent.append(result.pop("privacy"))
        first = parts[0]
        self.log.append({"kind": kind, "ciphertexts": len(first.blobs),
                         "bytes_per_holder": {p.contributors[0]: p.nbytes for p in parts},
                         "node_seconds": dict(getattr(self.processes, "node_seconds", {})),
                         "seconds": time.perf_counter() - started})
        return result

    def metadata(self) -> dict:
        # every ciphertext is BFV; real values ride in it as fixed point, whose encoding has its
        # own parameters and error bound: the label reads "bfv" or "bfv-fixed-point"
        sections = ["bfv"] if self.log else []
        if any(r["kind"] in REAL_KINDS for r in self.log):
            sections.append("fixed-point")
        holders = [h.name for h in self.holders] or sorted(
            {name for r in self.log for name in r["bytes_per_holder"]})
        return {"holders": holders, "rounds": len(self.log),
                "scheme": "-".join(sections),
                "parameters": {s: parameters()[s]
                               for s in sections},
                "error_bound": "; ".join(ERROR_BOUND[s] for s in sections),
                "holders_ran": ("in parallel (one holder node each, over mTLS)"
                                if not self.holders else "in parallel (one process each)")
                if self.processes else "in sequence",
                "privacy": {"epsilon": sum(p["epsilon"] for p in self.spent),
                            "mechanism": self.spent[0]["mechanism"]} if self.spent else None}

    def run(self, op: str, params: dict) -> dict:
        if op not in OPS:
            raise WorkbenchUserError(f"unknown secure operation {op!r}; one of: {', '.join(OPS)}",
                                     reason="unknown-op")
        self.log, self.started, self.attestation, self.spent = [], time.monotonic(), None, []
        result = getattr(self, f"_{op}")(**params)
        return {"op": op, "params": params, "result": result, "meta": self.metadata(),
                "attestation": self.attestation}

    # -- aggregates ------------------------------------------------------------------------------
    def _count(self, by=None) -> dict:
        return self.round("counts", "count", {"by": self.schema.groups(by)}) | {"by": by}

    def _crosstab(self, index: str, columns: str) -> dict:
        spec = {"by": self.schema.groups([index, columns])}
        return self.round("counts", "crosstab", spec) | {
            "index": index, "columns": columns,
            "index_levels": spec["by"][0]["levels"], "column_levels": spec["by"][1]["levels"]}

    def _histogram(self, column: str, bins=None, range=None) -> dict:  # noqa: A002 - numpy's name
        edges = self.schema.edges(column, bins, range)
        result = self.round("counts", "histogram", {"by": [{"column": column, "edges": edges}]})
        return {"edges": edges, "column": column} | result  # the released (merged) edges

    def _moments(self, op: str, column: str, by=None) -> dict:
        # Sums of squares only where a variance needs them: ~n x^2, they would meet the
        # fixed-point encoding's cap (ops.MAX_REAL, refused as value-too-large) long before a sum.
        spec = {"by": self.schema.groups(by), "column": self.schema.numeric(column),
                "dominance_n": _dominance(self.thresholds)[0], "squares": False}
        if op == "var":  # first the pooled mean, then moments centred on it (no cancellation)
            first = self.round("moments", "mean", spec)
            spec["center"] = [0.0 if m is None else m for m in first["mean"]]
            spec["squares"] = True
        return self.round("moments", op, spec) | {"by": by, "column": column}

    def _sum(self, column: str, by=None) -> dict:
        return self._moments("sum", column, by)

    def _mean(self, column: str, by=None) -> dict:
        return self._moments("mean", column, by)

    def _var(self, column: str, by=None) -> dict:
        return self._moments("var", column, by)

    # -- survival --------------------------------------------------------------------------------
    def _kaplan_meier(self, duration_col: str, event_col: str, by=None, resolution: float = 1.0,
                      alpha: float = 0.05) -> dict:
        spec = self.schema.time_grid(duration_col, resolution) | {
            "event_col": self.schema.event(event_col), "by": self.schema.groups(by)}
        return self.round("survival", "kaplan_meier", spec) | {"by": by, "alpha": alpha}

    def _logrank_test(self, duration_col: str, event_col: str, group_col: str,
                      resolution: float = 1.0) -> dict:
        spec = self.schema.time_grid(duration_col, resolution) | {
            "event_col": self.schema.event(event_col), "by": self.schema.groups(group_col)}
        return self.round("survival", "logrank_test", spec)

    def _cox_ph(self, duration_col: str, event_col: str, covariates: list[str], strata=None,
                resolution: float = 1.0, alpha: float = 0.05) -> dict:
        covariates = self.schema.covariates(covariates)
        if not covariates:
            raise WorkbenchUserError("cox_ph needs at least one covariate; for a curve without "
                                     "covariates use kaplan_meier.", reason="bad-request")
        spec = self.schema.time_grid(duration_col, resolution) | {
            "event_col": self.schema.event(event_col), "by": self.schema.groups(strata),
            "covariates": covariates,
            "center": [0.0] * len(covariates)}
        fit = self._newton("cox", "cox_ph", spec, np.zeros(len(covariates)), recenter=True)
        return fit | {"covariates": covariates, "alpha": alpha, "strata": strata}

    def _logistic_regression(self, outcome_col: str, covariates: list[str],
                             alpha: float = 0.05) -> dict:
        covariates = self.schema.covariates(covariates)
        spec = {"outcome_col": self.schema.outcome(outcome_col), "covariates": covariates}
        fit = self._newton("logistic", "logistic_regression", spec,
                           np.zeros(len(covariates) + 1), recenter=False)
        return fit | {"covariates": ["Intercept", *covariates], "alpha": alpha}

    def _newton(self, kind, op, spec, beta, recenter: bool) -> dict:
        """Newton–Raphson with step halving on released loglik/gradient/Hessian. Stops when every
        coordinate of the step is below 1e-4 of its standard error, and takes that last step:
        Newton's error is then quadratic in it, far below the 1e-6 the results promise."""
        current = self.round(kind, op, spec | {"beta": beta.tolist()})
        if recenter:  # the likelihood is invariant to centring; centring keeps exp() in range
            spec["center"] = current["covariate_means"]
        for iteration in range(1, MAX_NEWTON + 1):
            grad = np.asarray(current["gradient"])
            hess = np.asarray(current["hessian"])
            try:
                step = np.linalg.solve(-hess, grad)
            except np.linalg.LinAlgError:
                raise WorkbenchUserError("the model's information matrix is singular: a "
                                         "covariate is constant or collinear; drop it.",
                                         reason="singular-model") from None
            covariance = np.linalg.inv(-hess)
            scale = np.sqrt(np.clip(np.diag(covariance), 1e-300, None))
            if np.max(np.abs(step) / scale) < 1e-4:
                beta = beta + step
                return {"params": beta.tolist(), "covariance": covariance.tolist(),
                        "loglik": current["loglik"], "n": current["n"],
                        "events": current["events"], "iterations": iteration}
            for _ in range(30):
                trial = self.round(kind, op, spec | {"beta": (beta + step).tolist()})
                if np.isfinite(trial["loglik"]) and trial["loglik"] >= current["loglik"] - 1e-9:
                    break
                step = step / 2
            beta, current = beta + step, trial
        raise WorkbenchUserError(f"the model did not converge in {MAX_NEWTON} Newton steps "
                                 "(separation or a perfectly predictive covariate?).",
                                 reason="no-convergence")


def _space_key_parties(space, keys, aggregator):
    """In a space without nodes the account that plays the holders plays its key parties too
    (``threshold_local.make_space_key``): each round then carries every party's partial."""
    from workbench.secure.signing import RegistryFile
    from workbench.secure.threshold_local import SPACE_KEY, LocalKeyParties, SimulatedAggregator

    if (keys.threshold or {}).get("simulated") != SPACE_KEY:
        return aggregator  # the holder nodes' key: only they give partials
    return SimulatedAggregator(aggregator, LocalKeyParties.of_space(space, keys),
                               RegistryFile(space.holder_registry))


def _dominance(thresholds: dict) -> tuple[int, float]:
    from workbench.secure.release import dominance_pair

    return dominance_pair(thresholds.get("dominance"))
