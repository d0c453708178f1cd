"""HTML and widgets for outputs, evidence, code and diffs. Everything a researcher wrote (names,
descriptions, column labels, code) is escaped: reviewers must never run researcher HTML."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

VERDICT_COLOUR = {"pass": "#1a7f37", "review": "#9a6700", "fail": "#cf222e"}
STATE_COLOUR = {"draft": "#6e7781", "submitted": "#0969da", "reviewed": "#8250df",
                "approved": "#1a7f37", "released": "#1a7f37", "rejected": "#cf222e",
                "returned": "#9a6700"}


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def badge(text: str, colour: str) -> str:
    return (f'<span style="background:{colour};color:white;border-radius:4px;padding:1px 6px;'
            f'font-size:90%">{esc(text)}</span>')


def table_html(df: pd.DataFrame, max_rows: int = 200) -> str:
    return df.head(max_rows).to_html(index=False, escape=True, border=0, classes="wb-table")


def km_png(curves, time_label: str = "time") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for curve in curves:
        tab = curve.table
        if "survival" in tab.columns and len(tab):
            # a group label is researcher text: shown as written, never parsed as mathtext
            ax.step(tab["time"], tab["survival"], where="post",
                    label=str(curve.group).replace("$", r"\$"))
    ax.set_xlabel(time_label)
    ax.set_ylabel("survival")
    ax.set_ylim(0, 1.05)
    if curves:
        ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, fmt: str) -> str:
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    # an <img> never runs scripts, even in an SVG (which the airlock also sanitised)
    encoded = base64.b64encode(data).decode()
    return f'<img style="max-width:640px" src="data:{mime};base64,{encoded}"/>'


def output_html(detail: dict) -> str:
    """The output as it would be released."""
    from workbench.release.outputs import with_data
    from workbench.release.serialize import from_payload

    try:
        output = from_payload(detail["payload"])
        if output.kind == "figure" and detail["payload"].get("data"):
            output = with_data(output, from_payload(detail["payload"]["data"]))
    except Exception as exc:  # show the problem, never crash the queue
        return f"<p>cannot show this output: {esc(type(exc).__name__)}</p>"
    if output.kind == "figure":
        return (_img(output.figure, output.figure_format)
                + "<h5>the numbers the figure draws (checked, not released)</h5>"
                + (_numbers_html(output, draw=False) if _has_numbers(output)
                   else "<p>none were sent: the figure is refused</p>"))
    # the snapshot's label: the catalog's words for a signed result's duration column
    return _numbers_html(output, time_label=detail.get("time_label") or "time")


def _has_numbers(output) -> bool:
    return output.table is not None or bool(output.curves) or output.model is not None


def _numbers_html(output, draw: bool = True, time_label: str = "time") -> str:
    from workbench.release.outputs import released_table

    if output.curves:
        tables = "".join(f"<h5>{esc(c.group)}</h5>{table_html(c.table)}" for c in output.curves)
        return (_img(km_png(output.curves, time_label), "png") if draw else "") + tables
    if output.model is not None:
        fit = output.model
        facts = (f"<p>{esc(fit.family)} model: {fit.n_obs} observations, {fit.n_params} "
                 f"parameters" + (f", {fit.n_events} events" if fit.n_events is not None else "")
                 + "</p>")
        return facts + table_html(fit.params)
    return table_html(released_table(output))


def evidence_html(evidence: dict) -> str:
    rows = []
    for rule in evidence.get("rules", []):
        cells = rule.get("cells") or []
        flagged = [c for c in cells if c.get("verdict") != "pass"]
        shown = "; ".join(
            f"{esc(c['label'])}: {esc(c.get('count'))}"
            + (f" (released {esc(c['released_count'])} in {esc(c['released_request'])})"
               if "released_count" in c else "") for c in flagged[:20])
        if len(flagged) > 20:
            shown += f"; ... {len(flagged) - 20} more"
        rows.append(
            f"<tr><td>{esc(rule['rule'])}</td>"
            f"<td>{badge(rule['verdict'], VERDICT_COLOUR[rule['verdict']])}</td>"
            f"<td>{esc(rule.get('threshold'))}</td><td>{esc(rule.get('acro_check') or '')}</td>"
            f"<td>{esc(rule['message'])}</td><td>{shown}</td></tr>")
    thresholds = ", ".join(f"{esc(k)}={esc(v)}" for k, v in evidence.get("thresholds", {}).items())
    return (f"<p>checked by the {esc(evidence.get('checked_by'))} at "
            f"{esc(evidence.get('checked_at'))} (acro {esc(evidence.get('acro_version'))}); "
            f"thresholds: {thresholds}</p>"
            "<table class='wb-table'><tr><th>rule</th><th>verdict</th><th>threshold</th>"
            "<th>acro check</th><th>what it means</th><th>flagged cells</th></tr>"
            + "".join(rows) + "</table>")


def code_html(producing: dict | None, evidence: dict) -> str:
    """The producing cells and reads as the audit proxy recorded them (snapshot.producing_cells);
    what the kernel claimed is shown only as a claim."""
    if not producing or producing.get("status") == "not-found":
        note = (producing or {}).get("note") or "the provenance log could not be read"
        return f"<p><b>producing code not found:</b> {esc(note)}.</p>"
    head = ""
    if producing["status"] == "ambiguous":
        head = f"<p><b>ambiguous:</b> {esc(producing['note'])}.</p>"
    elif not producing.get("claim_matches", True):
        head = f"<p><b>the kernel's claim does not match:</b> {esc(producing['note'])}.</p>"
    head += ("<p>the cells and reads below are the audit proxy's records of the study's kernels "
             "(what ran, whoever the kernel says it is)</p>")
    cells = "".join(
        f"<p>cell record <code>{esc(c['id'][:16])}</code> at {esc(c['ts'])} by "
        f"{esc(c['user'])} in kernel {esc(c['kernel_id'])} ({esc(c['status'])})</p>"
        f"<pre>{esc(c['code'])}</pre>" for c in producing.get("cells", []))
    reads = "".join(f"<li>{esc(r['kind'])} {esc(r['view'])} ({esc(r['rows'])} rows) "
                    f"<code>{esc(r['id'][:16])}</code> {esc(r['ts'])}"
                    + (" (another kernel of the study was running too)" if r["shared"] else "")
                    + "</li>" for r in producing.get("reads", []))
    return head + cells + (f"<h5>reads while these cells ran</h5><ul>{reads}</ul>"
                           if reads else "")


def requester_html(req: dict, producing: dict | None) -> str:
    """Who asked. The request's acting account is the study kernel's; the person is the hub
    user the audit proxy recorded for the producing cell, else the kernel's claim, labelled."""
    recorded = (producing or {}).get("requester") if (producing or {}).get(
        "status") == "resolved" else None
    claimed = req.get("claimed_user") or req.get("evidence", {}).get("claimed_user")
    if recorded:
        text = (f"<b>{esc(recorded)}</b> <span class='wb-note'>(signed in to the hub when the "
                "producing cell ran, per the audit proxy)</span>")
        if claimed and claimed != recorded:
            text += f" <span class='wb-warn'>the kernel claimed {esc(claimed)}</span>"
        return text
    if claimed:
        return (f"<b>{esc(claimed)}</b> <span class='wb-note'>(claimed by the study kernel, not "
                "confirmed: no audited cell was found for this request)</span>")
    return (f"unknown <span class='wb-note'>(sent by the study kernel account "
            f"{esc(req.get('author'))}; nobody is named)</span>")


def context_html(req: dict) -> str:
    """The requester's context and controls (OpenSAFELY asks for both)."""
    justification = req.get("justification") or ""
    controls = req.get("controls") or []
    return (f"<p><b>What it shows:</b> {esc(req.get('description', ''))}</p>"
            "<p><b>Why it must leave:</b> "
            + (esc(justification) if justification else "<i>no justification given</i>")
            + "</p><p><b>Disclosure controls applied:</b> "
            + ("<ul class='wb-controls'>" + "".join(f"<li>{esc(c)}</li>" for c in controls)
               + "</ul>" if controls else "<i>none named</i>") + "</p>")


def comments_html(comments: list[dict]) -> str:
    if not comments:
        return "<p class='wb-note'>no comments yet</p>"
    rows = []
    for c in comments:
        who = (f"{esc(c['claimed_user'])} (claimed, via {esc(c['actor'])})"
               if c.get("role") == "requester" and c.get("claimed_user") else esc(c["actor"]))
        rows.append(f"<div class='wb-comment'><b>{who}</b> <span class='wb-note'>"
                    f"{esc(c['role'])}, {esc(c['at'])}</span><div>{esc(c['body'])}</div></div>")
    return "".join(rows)


def fallback_html(req: dict, exc: BaseException) -> str:
    """A request that could not be drawn, as escaped text: the rest of the queue still shows."""
    import json

    facts = {k: req.get(k) for k in ("id", "name", "kind", "view", "state", "verdict",
                                     "description", "justification", "controls",
                                     "failed_rules", "review_rules")}
    return (f"<p class='wb-warn'>this request could not be drawn ({esc(type(exc).__name__)}); "
            "shown as text:</p><pre>" + esc(json.dumps(facts, indent=1, default=str))
            + "</pre>")


def diff_html(request: dict, released: list[dict]) -> str:
    """This request's counts next to the same groups' counts in earlier releases."""
    mine = request.get("evidence", {}).get("counts", {})
    rows = []
    for other in released:
        if other["id"] == request["id"]:
            continue
        theirs = other.get("evidence", {}).get("counts", {})
        for label in sorted(set(mine) & set(theirs)):
            diff = mine[label] - theirs[label]
            rows.append(f"<tr><td>{esc(other['name'])} ({esc(other['id'])})</td>"
                        f"<td>{esc(label)}</td><td>{esc(theirs[label])}</td><td>{esc(mine[label])}"
                        f"</td><td>{esc(diff)}</td></tr>")
    if not rows:
        return "<p>no earlier release shares a group with this output.</p>"
    return ("<table class='wb-table'><tr><th>earlier release</th><th>group</th><th>released</th>"
            "<th>this request</th><th>difference</th></tr>" + "".join(rows) + "</table>")


STYLE = """<style>
.wb-table {border-collapse: collapse; font-size: 90%}
.wb-table td, .wb-table th {border: 1px solid #d0d7de; padding: 2px 6px; text-align: left}
.wb-note {color: #57606a; font-size: 90%}
.wb-warn {color: #9a6700}
.wb-comment {border-left: 3px solid #d0d7de; padding: 2px 8px; margin: 4px 0}
</style>"""
