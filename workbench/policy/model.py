"""The policy file's schema: who may do what in which study. Validated with pydantic; the JSON
schema published at docs/policy.schema.json is generated from these classes."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from workbench.secure.dp import PrivacySettings

Role = Literal["researcher", "reviewer", "admin"]
HolderKind = Literal["hospital", "insurer", "pharma", "public", "other"]
# How a study sees a granted view: ``rows`` = pseudonymised rows through wb.view; ``aggregates`` =
# wb.view returns a synthetic twin (no real row) and every real number comes from wb.secure and
# the airlock. workbench/policy/access.py decides what each level allows.
Visibility = Literal["rows", "aggregates"]

# JupyterHub named servers allow 1-30 chars of [a-z0-9-]; a study id is a server name.
STUDY_ID = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
StudyId = Annotated[str, StringConstraints(pattern=STUDY_ID.pattern)]
UserName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")]
HolderId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
ViewId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Memory = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]?$")]

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# keys that do not match the id pattern are errors in the JSON schema too, as in pydantic
_CLOSED = {"additionalProperties": False}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class User(_Model):
    roles: tuple[Role, ...] = Field(min_length=1, description="researcher, reviewer and/or admin")
    full_name: str = ""
    email: str = ""


class Dominance(_Model):
    """The (n, k) dominance rule: no cell where the n largest contributors make up more than k
    of the total."""

    n: int = Field(default=2, ge=1)
    k: float = Field(default=0.9, gt=0, le=1)


class Thresholds(_Model):
    """A study's disclosure thresholds: the one definition that the key holder's release check
    (``workbench/secure/release.py``) and the airlock (``workbench/release/rules.py``) both
    apply, taken from the study's policy entry."""

    min_cell_count: int = Field(default=10, ge=1,
                                description="smallest count a released cell may have")
    dominance: Dominance = Dominance()
    p_percent: float = Field(
        default=0.10, gt=0, lt=1, description="the p% rule on sums: what the two largest "
                                              "contributions leave must be at least p of the "
                                              "largest")
    min_dof: int = Field(default=10, ge=1, description="residual degrees of freedom a released "
                                                       "model must keep")
    zeros_are_disclosive: bool = Field(
        default=True, description="whether a zero cell in a released table is disclosive "
                                  "(class disclosure: nobody in a group has a trait)")
    min_holders: int = Field(default=2, ge=2, description="holders a secure result must pool, "
                                                          "in every released cell")
    max_rounds_per_day: int = Field(
        default=2000, ge=1, description="secure rounds the study may have decrypted per UTC day "
                                        "(a Cox fit takes one per Newton step): a cap on "
                                        "differencing by repetition")

    @property
    def dominance_n(self) -> int:
        return self.dominance.n

    @property
    def dominance_k(self) -> float:
        return self.dominance.k

    def at_least(self, floor: int) -> Thresholds:
        """These thresholds with ``min_cell_count`` raised to a service's floor."""
        if self.min_cell_count >= floor:
            return self
        return self.model_copy(update={"min_cell_count": int(floor)})

    def acro_risk_appetite(self) -> dict:
        """The same thresholds in the words of SACRO's ``acro.sdcchecks.SDCChecks``."""
        return {"safe_threshold": self.min_cell_count, "safe_dof_threshold": self.min_dof,
                "safe_nk_n": self.dominance.n, "safe_nk_k": self.dominance.k,
                "safe_pratio_p": self.p_percent,
                "zeros_are_disclosive": self.zeros_are_disclosive, "check_missing_values": False}


class Resources(_Model):
    cpu: float = Field(default=1.0, gt=0, le=64, description="CPU cores per study server")
    memory: Memory = Field(default="2G", description="memory per study server, e.g. '2G', '512M'")
    max_kernels: int = Field(default=2, ge=1, le=32)

    @property
    def memory_bytes(self) -> int:
        unit = self.memory[-1] if self.memory[-1] in _UNITS else ""
        number = self.memory[: len(self.memory) - len(unit)]
        return int(float(number) * _UNITS[unit])


class Study(_Model):
    title: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    sponsor: str = Field(min_length=1)
    members: tuple[UserName, ...] = Field(default=(), description="researchers of the study")
    reviewers: tuple[UserName, ...] = Field(default=(), description="output checkers of the study")
    views: tuple[ViewId, ...] = Field(default=(), description="granted catalog view ids")
    visibility: Visibility | dict[ViewId, Visibility] = Field(
        default="rows", json_schema_extra=_CLOSED,
        description="how the study sees its granted views: 'aggregates' (wb.view returns a "
                    "synthetic twin, real numbers only through wb.secure and the airlock; "
                    "recommended for new studies) or 'rows' (pseudonymised rows), for all views "
                    "or per view as {view id: level} (views not named: 'rows'). Left out it is "
                    "'rows', so policies signed before visibility existed keep their meaning")
    expires: date
    thresholds: Thresholds = Thresholds()
    privacy: PrivacySettings | None = Field(
        default=None, description="differential privacy: the study's epsilon budget for its "
                                  "life and the epsilon each release spends (OpenDP)")
    resources: Resources = Resources()
    node_quorum: int | None = Field(
        default=None, ge=2, description="holder nodes that must answer a secure operation for it "
                                        "to go on without the others (the result names exactly "
                                        "which contributed); by default every node that holds "
                                        "the view")


    def visibility_of(self, view: str) -> Visibility:
        """The visibility of one granted view (``rows`` when the policy does not name it)."""
        if isinstance(self.visibility, dict):
            return self.visibility.get(view, "rows")
        return self.visibility

    def visibilities(self) -> dict[str, Visibility]:
        return {view: self.visibility_of(view) for view in self.views}


MAX_KEY_PARTIES = 32  # threshold.MAX_PARTIES: the HE parameters' noise budget


_THRESHOLD_HELP = f"a number of key parties from 2 to {MAX_KEY_PARTIES}, or 'all'"


class Secure(_Model):
    """How the space's holder nodes hold the joint BFV key (docs/secure.md, "Threshold
    decryption"). Each node checks its key generation and every partial decryption against
    these settings of the admin-signed policy it verified, never against the coordinator's word."""

    decryption_threshold: Annotated[int, Field(ge=2, le=MAX_KEY_PARTIES)] | Literal["all"] = \
        Field(default="all", description="how many key parties (holder nodes) together can "
                                         "decrypt an approved aggregate: 'all' (each node can "
                                         "veto every decryption) or a number t from 2, at most "
                                         "the number of key parties (any t nodes decrypt, t - 1 "
                                         "cannot; a node that is down no longer stops a study "
                                         "with a node_quorum)")
    key_parties: tuple[HolderId, ...] | None = Field(
        default=None, min_length=2, max_length=MAX_KEY_PARTIES,
        description="the holder nodes that hold shares of the key; by default every holder "
                    "registered in the space (he/holders.json). A space without nodes has "
                    "simulated key parties instead: its member organisations")

    @field_validator("decryption_threshold", mode="wrap")
    @classmethod
    def _one_message(cls, value, handler):
        # one line for the admin instead of one per branch of the union
        if isinstance(value, bool):
            raise ValueError(_THRESHOLD_HELP)
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(_THRESHOLD_HELP) from None

    def key_set(self, registered) -> tuple[list[str], int]:
        """(key parties, t) for a space whose registered holders are ``registered``; a
        ``WorkbenchUserError`` (one line, the field named) when they do not fit."""
        from workbench.errors import WorkbenchUserError

        parties = sorted(self.key_parties if self.key_parties is not None else registered)
        unknown = sorted(set(parties) - set(registered))
        if unknown:
            raise WorkbenchUserError(
                f"policy secure.key_parties names {unknown[0]}, which is not a registered holder "
                "of the space: remove it or enroll it first.", reason="threshold-policy")
        t = len(parties) if self.decryption_threshold == "all" else self.decryption_threshold
        if t > len(parties):
            raise WorkbenchUserError(
                f"policy secure.decryption_threshold is {t}, more than the {len(parties)} key "
                "parties: lower it or use 'all'.", reason="threshold-policy")
        return parties, t


class Holder(_Model):
    title: str = Field(min_length=1)
    kind: HolderKind
    contact: str = ""


class Policy(_Model):
    """A whole policy file. Deny by default: anything not written here is not allowed."""

    users: dict[UserName, User] = Field(default_factory=dict, json_schema_extra=_CLOSED)
    studies: dict[StudyId, Study] = Field(default_factory=dict, json_schema_extra=_CLOSED)
    holders: dict[HolderId, Holder] = Field(default_factory=dict, json_schema_extra=_CLOSED)
    secure: Secure = Field(default_factory=Secure, description="threshold decryption among "
                                                               "the holder nodes")

    def admins(self) -> list[str]:
        return sorted(name for name, user in self.users.items() if "admin" in user.roles)

    def has_role(self, user: str, role: str) -> bool:
        entry = self.users.get(user)
        return entry is not None and role in entry.roles


def cross_reference_problems(policy: Policy) -> list[tuple[tuple, str]]:
    """Problems pydantic cannot see: names that must refer to users with the right role.

    Returned as (location, message) so the loader can point at the line."""
    problems: list[tuple[tuple, str]] = []
    secure = policy.secure
    if secure.key_parties is not None:
        if len(set(secure.key_parties)) != len(secure.key_parties):
            problems.append((("secure", "key_parties"), "holder ids are listed twice"))
        elif isinstance(secure.decryption_threshold, int) \
                and secure.decryption_threshold > len(secure.key_parties):
            problems.append((("secure", "decryption_threshold"),
                             f"{secure.decryption_threshold} is more than the "
                             f"{len(secure.key_parties)} key_parties: lower it or use 'all'"))
    for study_id, study in policy.studies.items():
        for field, role in (("members", "researcher"), ("reviewers", "reviewer")):
            for index, name in enumerate(getattr(study, field)):
                if name not in policy.users:
                    problems.append(((("studies", study_id, field, index)),
                                     f"unknown user '{name}': add it under 'users'"))
                elif not policy.has_role(name, role):
                    problems.append(((("studies", study_id, field, index)),
                                     f"user '{name}' needs the role '{role}'"))
            if len(set(getattr(study, field))) != len(getattr(study, field)):
                problems.append((("studies", study_id, field), "names are listed twice"))
        if len(set(study.views)) != len(study.views):
            problems.append((("studies", study_id, "views"), "view ids are listed twice"))
        if isinstance(study.visibility, dict):
            for view in study.visibility:
                if view not in study.views:
                    problems.append((("studies", study_id, "visibility", view),
                                     f"view '{view}' is not granted to the study: add it to "
                                     "'views' or remove it here"))
        both = set(study.members) & set(study.reviewers)
        if both:
            # Two-person rule: a researcher must not check their own study's outputs.
            problems.append((("studies", study_id, "reviewers"),
                             f"{', '.join(sorted(both))} cannot be member and reviewer of "
                             "one study"))
    return problems
