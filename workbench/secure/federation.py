"""``Federation``: the secure operations in-process, for tests and for holders' own validation.

Same holders, aggregator, key holder and release policy as the service path; by default the key
holder is an in-process ``KeyHolder`` with fresh keys, or pass ``keyholder=KeyHolderClient(path)``
and ``public_keys`` to use a running ``workbench keyholder``.

Every ciphertext is decrypted as in a space of holder nodes (issue 17): with the in-process key
holder, every holder is a simulated key party of a joint key made without a dealer, each round's
sum is decrypted from the parties' partials (the nodes' own checks and flooding,
``threshold_local.py``), which only the key holder opens and combines before its release rules;
``decryption_threshold=t``: any t of the holders decrypt (Shamir re-sharing). With a running key
holder of a space, the space's own key parties give the partials (``Coordinator``).
"""

from __future__ import annotations

import pandas as pd

from workbench.secure import results
from workbench.secure.coordinator import Coordinator
from workbench.secure.nodes import check_federation


class Federation:
    def __init__(self, partitions: dict[str, pd.DataFrame], min_cell_count: int = 10,
                 dominance: tuple[int, float] = (2, 0.9), *, min_holders: int = 2,
                 keyholder=None, public_keys=None, provenance=None, context: dict | None = None,
                 holder_processes: bool = False, view=None, privacy: dict | None = None,
                 decryption_threshold: int | None = None):
        """``view``: a catalog ``View`` whose column roles and public grids the operations
        must respect, as through the gateway; without one, roles are not enforced and levels
        and the time grid come from the data (local analysis of rows the caller holds).
        ``privacy``: differential-privacy settings (``epsilon_budget``, ``epsilon_per_release``)
        as a study's policy sets them. ``decryption_threshold``: the module's docstring (with
        the in-process key holder only: a running one has its space's key)."""
        signers = aggregator = None
        if decryption_threshold is not None and keyholder is not None:
            raise TypeError("decryption_threshold needs the in-process key holder's simulated "
                            "key parties (a running key holder has its space's key)")
        if keyholder is None:
            from workbench.secure import signing
            from workbench.secure.keyholder import KeyHolder
            from workbench.secure.threshold_local import LocalKeyParties

            check_federation(partitions)  # before any key is made for them
            signers, registry = signing.ephemeral(list(partitions))
            parties = LocalKeyParties.generate(signers, decryption_threshold)
            public_keys = parties.public_keys()  # the joint key: no secret key anywhere
            keyholder = KeyHolder(public_keys, provenance, registry=registry,
                                  box_key=parties.box)
        elif public_keys is None:
            raise TypeError("pass public_keys together with a remote keyholder")
        from workbench.secure.keys import PublicKeys

        # Holders get contexts rebuilt from the public bytes: no secret key object in them.
        public_keys = PublicKeys.from_bytes(public_keys.to_bytes())
        # the policy's Thresholds, as the gateway passes them; min_holders is never below 2
        self.thresholds = {"min_cell_count": min_cell_count,
                           "dominance": {"n": dominance[0], "k": dominance[1]},
                           "min_holders": max(int(min_holders), 2)}
        from workbench.secure.plan import Schema

        if signers is not None:
            from workbench.secure.nodes import Aggregator
            from workbench.secure.threshold_local import SimulatedAggregator

            aggregator = SimulatedAggregator(Aggregator(public_keys, keyholder), parties,
                                             keyholder.registry)
        self.coordinator = Coordinator(partitions, public_keys, keyholder, self.thresholds,
                                       context, holder_processes=holder_processes,
                                       schema=Schema(view) if view is not None else None,
                                       privacy=privacy, aggregator=aggregator, signers=signers)
        self.last_run: dict | None = None

    def _run(self, op: str, **params):
        payload = self.coordinator.run(op, {k: v for k, v in params.items() if v is not None})
        self.last_run = payload
        return results.build(payload)

    def close(self) -> None:
        """Stop the holder processes (when started with ``holder_processes=True``)."""
        if self.coordinator.processes is not None:
            self.coordinator.processes.close()

    @property
    def holders(self):
        return self.coordinator.holders

    def count(self, by=None):
        return self._run("count", by=by)

    def crosstab(self, index: str, columns: str):
        return self._run("crosstab", index=index, columns=columns)

    def histogram(self, column: str, bins=None, range=None):  # noqa: A002 - numpy's name
        return self._run("histogram", column=column, bins=bins, range=range)

    def sum(self, column: str, by=None):
        return self._run("sum", column=column, by=by)

    def mean(self, column: str, by=None):
        return self._run("mean", column=column, by=by)

    def var(self, column: str, by=None):
        return self._run("var", column=column, by=by)

    def kaplan_meier(self, duration_col: str, event_col: str, by=None, resolution: float = 1.0,
                     alpha: float = 0.05):
        return self._run("kaplan_meier", duration_col=duration_col, event_col=event_col, by=by,
                         resolution=resolution, alpha=alpha)

    def logrank_test(self, duration_col: str, event_col: str, group_col: str,
                     resolution: float = 1.0):
        return self._run("logrank_test", duration_col=duration_col, event_col=event_col,
                         group_col=group_col, resolution=resolution)

    def cox_ph(self, duration_col: str, event_col: str, covariates: list[str], strata=None,
               resolution: float = 1.0, alpha: float = 0.05):
        return self._run("cox_ph", duration_col=duration_col, event_col=event_col,
                         covariates=list(covariates), strata=strata, resolution=resolution,
                         alpha=alpha)

    def logistic_regression(self, outcome_col: str, covariates: list[str], alpha: float = 0.05):
        return self._run("logistic_regression", outcome_col=outcome_col,
                         covariates=list(covariates), alpha=alpha)
