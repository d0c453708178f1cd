"""What a policy change changed (for its ``policy-change`` record), and the history of changes
read back from provenance (for ``workbench policy history`` and the admin's home page).

Only names go into a record: study ids, user names and field paths, never a value from data."""

from __future__ import annotations

from workbench.policy.model import Policy

# The study fields whose change is listed by path (members are listed by name).
_STUDY_FIELDS = ("title", "purpose", "sponsor", "reviewers", "views", "expires", "thresholds",
                 "privacy", "resources")


def describe_changes(old: Policy | None, new: Policy) -> dict:
    """{studies_added, studies_removed, members_added, members_removed, changes}; members as
    ``<study>/<user>``, changes as field paths (``studies.cml-tki.views``, ``users.bob``, and
    ``users.carol (added)`` / ``(removed)``)."""
    before = old.studies if old is not None else {}
    after = new.studies
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    members_added, members_removed, changes = [], [], []
    for study in sorted(set(before) | set(after)):
        was = set(before[study].members) if study in before else set()
        now = set(after[study].members) if study in after else set()
        members_added += [f"{study}/{user}" for user in sorted(now - was)]
        members_removed += [f"{study}/{user}" for user in sorted(was - now)]
        if study in before and study in after:
            changes += [f"studies.{study}.{name}" for name in _STUDY_FIELDS
                        if getattr(before[study], name) != getattr(after[study], name)]
    for section in ("users", "holders"):
        was = getattr(old, section) if old is not None else {}
        now = getattr(new, section)
        for name in sorted(set(was) | set(now)):
            if name not in was:
                changes.append(f"{section}.{name} (added)")
            elif name not in now:
                changes.append(f"{section}.{name} (removed)")
            elif was[name] != now[name]:
                changes.append(f"{section}.{name}")
    if old is not None and old.secure != new.secure:  # who may decrypt together (issue 17)
        changes += [f"secure.{name}" for name in ("decryption_threshold", "key_parties")
                    if getattr(old.secure, name) != getattr(new.secure, name)]
    return {"studies_added": added, "studies_removed": removed,
            "members_added": members_added, "members_removed": members_removed,
            "changes": changes}


def summary(fields: dict) -> str:
    """One line for a person: '+study new-study; +member new-study/alice; +user carol;
    changed users.bob'."""
    parts = [f"+study {s}" for s in fields.get("studies_added", [])]
    parts += [f"-study {s}" for s in fields.get("studies_removed", [])]
    parts += [f"+member {m}" for m in fields.get("members_added", [])]
    parts += [f"-member {m}" for m in fields.get("members_removed", [])]
    for change in fields.get("changes", []):
        path, _, how = change.partition(" (")
        kind, _, name = path.partition(".")
        sign = {"added)": "+", "removed)": "-"}.get(how)
        parts.append(f"{sign}{kind.rstrip('s')} {name}" if sign else f"changed {change}")
    return "; ".join(parts) or "no change in studies, members or users"


def history(space) -> list[dict]:
    """Every policy change recorded in the space's provenance, newest first: {serial, ts,
    issued_at, key_id, actor, sha256, what}. Reads the collector's store (root or the collector's
    account)."""
    from workbench.provenance.reader import ProvenanceReader

    with ProvenanceReader(space) as reader:
        rows = [{"serial": r.fields.get("serial"), "ts": r.ts,
                 "issued_at": r.fields.get("issued_at", ""), "key_id": r.fields.get("key_id", ""),
                 "actor": r.fields.get("actor", ""), "sha256": r.fields["policy_sha256"],
                 "what": summary(r.fields), "record": r.id}
                for r in reader.records(kinds=["policy-change"])]
    return rows[::-1]
