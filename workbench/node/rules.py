"""A holder's own say: the rules file its node enforces on top of the space's policy.

    # /var/lib/workbench/node/rules.yaml (owned by the node's account)
    studies: [cml-tki, t1d-hba1c]     # the studies it serves ("*": all the policy grants)
    views: ["*"]                      # the views it serves to them
    thresholds:                       # floors: they may only tighten the space's
      min_cell_count: 20
    rounds_per_day: 500               # secure rounds per study per UTC day (limits differencing)
    retention:                        # dataset versions kept at the node (workbench node ingest)
      versions: 5                     # at least the newest 5 ...
      days: 365                       # ... and every one made in the last 365 days

The policy says what the space allows; the holder can only narrow it. A request for a study or
view outside these rules, a round whose thresholds are looser than the floors, or one past the
day's budget is refused by the node, and the researcher sees one line naming the holder and the
rule.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from workbench.errors import WorkbenchUserError
from workbench.policy.model import Thresholds

ANY = "*"


class Floors(BaseModel):
    """Thresholds the holder insists on; each one only tightens the study's own."""

    model_config = ConfigDict(extra="forbid")
    min_cell_count: int | None = Field(default=None, ge=1)
    p_percent: float | None = Field(default=None, gt=0, lt=1)
    min_dof: int | None = Field(default=None, ge=1)
    min_holders: int | None = Field(default=None, ge=2)
    max_rounds_per_day: int | None = Field(default=None, ge=1)


class Retention(BaseModel):
    """Which dataset versions an ingest keeps (``workbench/node/ingest.py``): a version is
    deleted only when it is neither among the newest ``versions`` nor younger than ``days``; the
    version being served is always kept. Old versions are what a stale study is re-run on."""

    model_config = ConfigDict(extra="forbid")
    versions: int = Field(default=5, ge=1)
    days: int = Field(default=0, ge=0)


class HolderRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    studies: list[str] = Field(default_factory=lambda: [ANY])
    views: list[str] = Field(default_factory=lambda: [ANY])
    thresholds: Floors = Floors()
    rounds_per_day: int = Field(default=2000, ge=0)
    retention: Retention = Retention()

    def serves(self, study: str, view: str) -> str | None:
        """Why this node does not serve ``view`` to ``study``, or None."""
        if ANY not in self.studies and study not in self.studies:
            return f"it does not serve study '{study}'"
        if ANY not in self.views and view not in self.views:
            return f"it does not serve view '{view}'"
        return None

    def tighten(self, thresholds: Thresholds) -> Thresholds:
        """The study's thresholds with this holder's floors applied."""
        floors, update = self.thresholds, {}
        for name in ("min_cell_count", "min_dof", "min_holders"):
            floor = getattr(floors, name)
            if floor is not None and getattr(thresholds, name) < floor:
                update[name] = floor
        if floors.p_percent is not None and thresholds.p_percent < floors.p_percent:
            update["p_percent"] = floors.p_percent
        if floors.max_rounds_per_day is not None and \
                thresholds.max_rounds_per_day > floors.max_rounds_per_day:
            update["max_rounds_per_day"] = floors.max_rounds_per_day
        return thresholds.model_copy(update=update) if update else thresholds

    def looser(self, thresholds: Thresholds) -> str | None:
        """The first floor ``thresholds`` break, as a rule a researcher can read, or None."""
        tight = self.tighten(thresholds)
        for name in ("min_cell_count", "p_percent", "min_dof", "min_holders",
                     "max_rounds_per_day"):
            if getattr(tight, name) != getattr(thresholds, name):
                return f"it insists on {name} {getattr(tight, name)}"
        return None


def load_rules(path: Path) -> HolderRules:
    """The rules file, validated; a missing file means the defaults (serve what the policy
    grants). Errors name the file, line and field (``workbench.yamlfile``)."""
    from pydantic import ValidationError

    from workbench.yamlfile import YamlFile, YamlSyntaxError

    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return HolderRules()
    stamp = (str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino)
    if stamp in _CACHE:  # re-read on every request, parsed only when the file changed
        return _CACHE[stamp]
    try:
        doc = YamlFile.parse(path.read_text())
    except YamlSyntaxError as exc:
        raise _bad(path, exc.problem) from None
    problems = doc.duplicate_keys()
    try:
        rules = HolderRules.model_validate(doc.data or {})
    except ValidationError as exc:
        problems += doc.problems(exc)
    if problems:
        raise _bad(path, min(problems, key=lambda p: p.line))
    _CACHE.clear()
    _CACHE[stamp] = rules
    return rules


_CACHE: dict[tuple, HolderRules] = {}


def _bad(path: Path, problem) -> WorkbenchUserError:
    return WorkbenchUserError(f"{path}, line {problem.line}, field {problem.field}: "
                              f"{problem.message}; fix the holder's rules file.",
                              reason="bad-rules")


def refusal(holder: str, rule: str) -> WorkbenchUserError:
    return WorkbenchUserError(f"holder {holder} refused: {rule}.", reason="holder-rule")
