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


def km_png(curves) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for curve in curves:
        tab = curve.table
        if "survival" in tab.columns and len(tab):
            ax.step(tab["time"], tab["survival"], where="post", label=str(curve.group))
    ax.set_xlabel("time")
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
    from workbench.release.outputs import released_table
    from workbench.release.serialize import from_payload

    try:
        output = from_payload(detail["payload"])
    except Exception as exc:  # show the problem, never crash the queue
        return f"<p>cannot show this output: {esc(type(exc).__name__)}</p>"
    if output.kind == "table":
        return table_html(released_table(output))
    if output.kind == "survival":
        tables = "".join(f"<h5>{esc(c.group)}</h5>{table_html(c.table)}" for c in output.curves)
        return _img(km_png(output.curves), "png") + tables
    if output.kind == "model":
        fit = output.model
        facts = (f"<p>{esc(fit.family)} model: {fit.n_obs} observations, {fit.n_params} "
                 f"parameters" + (f", {fit.n_events} events" if fit.n_events is not None else "")
                 + "</p>")
        return facts + table_html(fit.params)
    body = _img(output.figure, output.figure_format)
    if output.table is not None:
        body += "<h5>data behind the figure (checked, not released)</h5>" + table_html(output.table)
    return body


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
    head += (f"<p>the kernel says it ran for {esc(evidence.get('claimed_user'))} (a claim); "
             "cells and reads below are the audit proxy's records</p>")
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
</style>"""
