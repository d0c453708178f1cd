"""Exports of a study's provenance: a text timeline, W3C PROV-JSON and Five Safes RO-Crate metadata.

Only what the records hold is exported: names of users, views and files, hashes and sizes. The
export carries the verification result and the root hash it was checked against, so a reader of
the export can tie it back to a signed tree head.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from workbench.errors import WorkbenchUserError
from workbench.provenance.reader import ProvenanceReader, ProvenanceRecord

NAMESPACE = "urn:workbench:"
FIVE_SAFES_PROFILE = "https://w3id.org/5s-crate/0.4"
RO_CRATE = "https://w3id.org/ro/crate/1.2"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _local(*parts: object) -> str:
    return "wb:" + "/".join(_UNSAFE.sub("_", str(part))[:128] for part in parts)


def timeline_line(record: ProvenanceRecord) -> str:
    f = record.fields
    who = f.get("user") or f.get("reviewer") or f.get("actor") or record.writer.get("user")
    what = {
        "cell-execution": lambda: f"{f.get('status')} cell {f.get('cell_id') or f.get('msg_id')} "
                                  f"code {f.get('code_sha256', '')[:12]}",
        "view-read": lambda: f"read {f.get('view')} ({f.get('rows', '?')} rows)",
        "he-operation": lambda: f"{f.get('op')} on {f.get('view')} "
                                f"holders {','.join(f.get('holders', []))}",
        "he-decryption": lambda: f"{f.get('decision')} {f.get('op') or ''} {f.get('request_id')}",
        "release-request": lambda: f"request {f.get('request_id')} "
                                   f"({len(f.get('files', []))} file(s))",
        "release-decision": lambda: f"{f.get('decision')} {f.get('request_id')}",
        "policy-change": lambda: f"policy {f.get('policy_sha256', '')[:12]}",
        "kernel-lifecycle": lambda: f"kernel {f.get('kernel_id')} {f.get('event')}",
        "server-spawn": lambda: f"server {f.get('event')}",
        "login": lambda: f"{f.get('event')}",
    }.get(record.kind, lambda: "")()
    return (f"{record.ts}  #{record.seq:<6} {record.kind:<16} {who or '-':<16} {what}  "
            f"[{record.id[:12]}]")


# -- W3C PROV --------------------------------------------------------------------------------

def prov_document(records: list[ProvenanceRecord], study: str, root_hash: str):
    import prov.model as pm

    doc = pm.ProvDocument()
    doc.add_namespace("wb", NAMESPACE)
    doc.entity(_local("log", study), {"prov:type": "wb:ProvenanceLog", "wb:root_hash": root_hash})
    users: dict[str, object] = {}

    def person(name: str | None):
        if not name:
            return None
        if name not in users:
            users[name] = doc.agent(_local("user", name), {"prov:type": "prov:Person",
                                                           "wb:name": name})
        return users[name]

    for record in records:
        f = record.fields
        attributes = {"wb:kind": record.kind, "wb:record_id": record.id, "wb:seq": record.seq,
                      "wb:writer": record.writer.get("user", "")}
        start = f.get("started") or record.ts
        activity = doc.activity(_local(record.kind, record.seq), start, f.get("ended"),
                                attributes)
        agent = person(f.get("user") or f.get("reviewer") or f.get("actor"))
        if agent is not None:
            doc.wasAssociatedWith(activity, agent)
        if f.get("kernel_id"):
            kernel = doc.agent(_local("kernel", f["kernel_id"]),
                               {"prov:type": "prov:SoftwareAgent"})
            doc.wasAssociatedWith(activity, kernel)
        if f.get("code_sha256"):
            doc.used(activity, doc.entity(_local("code", f["code_sha256"]),
                                          {"wb:sha256": f["code_sha256"]}))
        if f.get("view"):
            view = doc.entity(_local("view", f["view"], f.get("view_version", "current")),
                              {"prov:type": "wb:View", "wb:name": f["view"]})
            doc.used(activity, view)
        for holder in f.get("holders", []):
            doc.wasAssociatedWith(activity, doc.agent(_local("holder", holder),
                                                      {"prov:type": "prov:Organization"}))
        outputs = list(f.get("outputs", [])) + list(f.get("files", []))
        if f.get("result_sha256"):
            outputs.append({"sha256": f["result_sha256"], "size": f.get("result_size", 0)})
        for output in outputs:
            entity = doc.entity(_local("output", output["sha256"]),
                                {"wb:sha256": output["sha256"], "wb:size": output["size"]})
            if record.kind == "release-request":
                doc.used(activity, entity)
            else:
                doc.wasGeneratedBy(entity, activity)
    return doc


# -- Five Safes RO-Crate ----------------------------------------------------------------------

def ro_crate(records: list[ProvenanceRecord], study: str, report) -> dict:
    project = f"#project-{study}"
    graph: list[dict] = [
        {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"},
         "conformsTo": {"@id": RO_CRATE}},
        {"@id": FIVE_SAFES_PROFILE, "@type": "Profile", "name": "Five Safes RO-Crate"},
        {"@id": project, "@type": "Project", "name": study,
         "identifier": study},
    ]
    people: dict[str, dict] = {}
    entities: dict[str, dict] = {}
    mentions: list[dict] = []

    def person(name: str | None) -> dict | None:
        if not name:
            return None
        if name not in people:
            people[name] = {"@id": f"#person-{_UNSAFE.sub('_', name)}", "@type": "Person",
                            "name": name, "memberOf": {"@id": project}}
        return {"@id": people[name]["@id"]}

    def file_entity(item: dict) -> dict:
        key = f"#sha256-{item['sha256']}"
        entities.setdefault(key, {"@id": key, "@type": "File", "name": item.get("name", key),
                                  "sha256": item["sha256"], "contentSize": item["size"]})
        return {"@id": key}

    for record in records:
        f, action_id = record.fields, f"#record-{record.seq}"
        if record.kind == "cell-execution":
            code = f"#code-{f['code_sha256']}"
            entities.setdefault(code, {"@id": code, "@type": ["File", "SoftwareSourceCode"],
                                       "name": f.get("notebook_path", "cell"),
                                       "sha256": f["code_sha256"]})
            action = {"@type": "CreateAction", "name": f"cell {f.get('cell_id') or f['msg_id']}",
                      "instrument": {"@id": code}, "startTime": f["started"],
                      "actionStatus": _status(f.get("status")),
                      "result": [file_entity(o) for o in f.get("outputs", [])]}
            if f.get("ended"):
                action["endTime"] = f["ended"]
        elif record.kind in ("view-read", "he-operation"):
            view = f"#view-{_UNSAFE.sub('_', f.get('view', 'none'))}"
            entities.setdefault(view, {"@id": view, "@type": "Dataset",
                                       "name": f.get("view", "none"),
                                       "version": f.get("view_version", "")})
            action = {"@type": "CreateAction", "name": f"{record.kind} {f.get('op', '')}".strip(),
                      "object": [{"@id": view}], "startTime": record.ts,
                      "actionStatus": _status(f.get("status"))}
        elif record.kind in ("release-decision", "he-decryption"):
            refused = f.get("decision") in ("rejected", "refused", "changes-requested")
            action = {"@type": "AssessAction",
                      "additionalType": {"@id": "https://w3id.org/shp#DisclosureCheck"},
                      "name": f"{record.kind} {f.get('decision')} {f.get('request_id')}",
                      "endTime": record.ts, "object": {"@id": "./"},
                      "actionStatus": "http://schema.org/FailedActionStatus" if refused
                      else "http://schema.org/CompletedActionStatus"}
            if f.get("files"):
                action["result"] = [file_entity(item) for item in f["files"]]
        elif record.kind == "release-request":
            action = {"@type": "CreateAction", "name": f"release request {f['request_id']}",
                      "startTime": record.ts, "object": [file_entity(i) for i in f["files"]],
                      "actionStatus": "http://schema.org/PotentialActionStatus"}
        else:
            continue
        agent = person(f.get("user") or f.get("reviewer") or f.get("actor"))
        if agent:
            action["agent"] = agent
        action.update({"@id": action_id, "identifier": record.id})
        graph.append(action)
        mentions.append({"@id": action_id})

    graph.append({
        "@id": "./", "@type": "Dataset", "name": f"Provenance of study {study}",
        "description": "Five Safes RO-Crate generated from the tamper-evident provenance log. "
                       f"Verification: {report.summary()}",
        "datePublished": datetime.now(UTC).isoformat(timespec="seconds"),
        "conformsTo": {"@id": FIVE_SAFES_PROFILE}, "sourceOrganization": {"@id": project},
        "mentions": mentions, "hasPart": [{"@id": key} for key in entities
                                          if entities[key]["@type"] == "File"],
        "identifier": f"provenance-root:{report.root_hash}",
    })
    graph += list(people.values()) + list(entities.values())
    return {"@context": f"{RO_CRATE}/context", "@graph": graph}


def _status(status: str | None) -> str:
    return {"ok": "http://schema.org/CompletedActionStatus",
            "submitted": "http://schema.org/ActiveActionStatus"}.get(
                status or "ok", "http://schema.org/FailedActionStatus")


def export(reader: ProvenanceReader, study: str, fmt: str) -> str:
    """The study's records in ``fmt`` (``prov-json`` or ``ro-crate``), after verifying the log."""
    report = reader.verify()
    if not report.ok:
        raise WorkbenchUserError(f"the provenance log fails verification, not exporting: "
                                 f"{report.summary()}", reason="provenance-tampered")
    records = list(reader.records(study=study))
    if not records:
        raise WorkbenchUserError(f"no provenance records for study {study!r}",
                                 reason="no-records")
    if fmt == "prov-json":
        return prov_document(records, study, report.root_hash).serialize(format="json", indent=2)
    if fmt == "ro-crate":
        return json.dumps(ro_crate(records, study, report), indent=2)
    raise WorkbenchUserError(f"unknown export format {fmt!r}: use prov-json or ro-crate",
                             reason="bad-format")
