"""The four dashboards: release queue, provenance, results, admin overview (ipywidgets)."""

from __future__ import annotations

from collections import Counter

import ipywidgets as w

from workbench.errors import WorkbenchError
from workbench.review import render
from workbench.review.context import ReviewContext
from workbench.review.render import esc

OPEN = ("submitted", "reviewed")


def _refused(snap: dict) -> w.Widget | None:
    if not snap.get("allowed", False):
        return w.HTML(f"<h3>Access denied</h3><p>{esc(snap.get('reason', ''))}</p>")
    return None


def _header(snap: dict, title: str) -> w.HTML:
    return w.HTML(render.STYLE + f"<h2>{esc(title)}: {esc(snap.get('study', ''))}</h2>"
                  f"<p>signed in as <b>{esc(snap['viewer'])}</b>; data as of "
                  f"{esc(snap['generated_at'])} (drawn again after each of your decisions; "
                  "reload the page for others')</p>")


def _decision_box(ctx: ReviewContext, req: dict, status: w.HTML, on_done,
                  decisions=("approve", "reject", "return")) -> w.Widget:
    comment = w.Textarea(placeholder="comment (needed to reject or return)",
                         layout=w.Layout(width="60%"))
    styles = {"approve": "success", "reject": "danger", "return": "warning"}
    buttons = {name: w.Button(description=name.capitalize(), button_style=styles[name])
               for name in decisions}

    def act(decision):
        def handler(_button):
            for b in buttons.values():
                b.disabled = True
            try:
                result = ctx.decide(req["id"], decision, comment.value)
            except WorkbenchError as exc:  # user errors and an unreachable airlock alike
                status.value = f"<b style='color:#cf222e'>refused:</b> {esc(exc)}"
            except Exception as exc:  # shown, not swallowed: tracebacks are hidden in Voila
                status.value = (f"<b style='color:#cf222e'>refused:</b> the decision failed "
                                f"({esc(type(exc).__name__)}: {esc(str(exc)[:200])})")
            else:
                colour = render.STATE_COLOUR.get(result["state"], "#333")
                status.value = (f"{render.badge(result['state'], colour)}"
                                f" approvals: {esc(', '.join(result.get('approvals', [])))}")
                on_done(f"{decision} {req['name']}: now {result['state']}")
                return
            for b in buttons.values():
                b.disabled = False
        return handler

    for name, button in buttons.items():
        button.on_click(act(name))
        button.add_class(f"wb-{name}")
    return w.VBox([comment, w.HBox(list(buttons.values()))])


def _comment_box(ctx: ReviewContext, req: dict) -> w.Widget:
    thread = w.HTML(render.comments_html(req.get("comments") or []))
    thread.add_class("wb-thread")
    text = w.Textarea(placeholder="a comment for the requester and the other reviewers",
                      layout=w.Layout(width="60%"))
    send = w.Button(description="Comment", button_style="info")
    send.add_class("wb-comment-send")
    note = w.HTML()

    def handler(_button):
        try:
            thread.value = render.comments_html(ctx.comment(req["id"], text.value))
            text.value, note.value = "", ""
        except WorkbenchError as exc:
            note.value = f"<b style='color:#cf222e'>refused:</b> {esc(exc)}"
        except Exception as exc:
            note.value = (f"<b style='color:#cf222e'>refused:</b> the comment failed "
                          f"({esc(type(exc).__name__)})")

    send.on_click(handler)
    parts = [thread]
    if ctx.actions is not None and ctx.snapshot.get("can_review"):
        parts += [text, send, note]
    return w.VBox(parts)


def _request_panel(ctx: ReviewContext, req: dict, released: list[dict], on_done) -> w.Widget:
    snap = ctx.snapshot
    producing = snap.get("provenance", {}).get("producing", {}).get(req["id"])
    state = render.badge(req["state"], render.STATE_COLOUR.get(req["state"], "#333"))
    status = w.HTML(f"{state} approvals: {esc(', '.join(req['approvals']) or 'none')}")
    head = w.HTML(f"<p><b>{esc(req['name'])}</b> ({esc(req['kind'])}, view "
                  f"{esc(req['view'])}) requested by {render.requester_html(req, producing)} at "
                  f"{esc(req['created_at'])}; checks "
                  f"{render.badge(req['verdict'], render.VERDICT_COLOUR[req['verdict']])}</p>"
                  + render.context_html(req))
    head.add_class("wb-request-head")
    pages = (("Output", w.HTML(render.output_html(req))),
             ("Evidence", w.HTML(render.evidence_html(req["evidence"]))),
             ("Code and reads", w.HTML(render.code_html(producing, req["evidence"]))),
             ("Diff vs releases", w.HTML(render.diff_html(req, released))),
             ("Comments", _comment_box(ctx, req)),
             ("History", w.HTML(_history_html(req))))
    tabs = w.Tab(children=[page for _, page in pages])
    for i, (title, _) in enumerate(pages):
        tabs.set_title(i, title)
    parts = [head, status, tabs]
    if snap.get("can_review") and req["state"] in OPEN:
        parts.append(_decision_box(ctx, req, status, on_done))
    return w.VBox(parts)


def _fallback_panel(ctx: ReviewContext, req: dict, exc: Exception, on_done) -> w.Widget:
    """One request that could not be drawn (a malformed label, an output of an unexpected
    shape): escaped text, so the reviewer can still send it back; never approved unseen."""
    status = w.HTML(esc(req.get("state", "")))
    parts = [w.HTML(render.fallback_html(req, exc)), status]
    if ctx.snapshot.get("can_review") and req.get("state") in OPEN:
        parts.append(_decision_box(ctx, req, status, on_done, ("reject", "return")))
    return w.VBox(parts)


def _panel(ctx: ReviewContext, req: dict, released: list[dict], on_done) -> w.Widget:
    try:
        return _request_panel(ctx, req, released, on_done)
    except Exception as exc:  # one bad request must not take the queue down with it
        return _fallback_panel(ctx, req, exc, on_done)


def _history_html(req: dict) -> str:
    rows = "".join(f"<tr><td>{esc(t['at'])}</td><td>{esc(t['actor'])}</td><td>{esc(t['action'])}"
                   f"</td><td>{esc(t['from_state'])} &rarr; {esc(t['to_state'])}</td>"
                   f"<td>{esc(t['comment'])}</td><td><code>{esc(t['provenance_id'][:16])}</code>"
                   f"</td></tr>" for t in req.get("transitions", []))
    return ("<table class='wb-table'><tr><th>when</th><th>who</th><th>action</th><th>state</th>"
            "<th>comment</th><th>provenance record</th></tr>" + rows + "</table>")


def release_queue(ctx: ReviewContext) -> w.Widget:
    """Open requests first, each drawn on its own; after a decision the queue is drawn again
    from a fresh snapshot (what the airlock now holds)."""
    if (refused := _refused(ctx.snapshot)) is not None:
        return refused
    header, summary, accordion = w.HTML(), w.HTML(), w.Accordion()
    summary.add_class("wb-queue-summary")

    def draw(note: str = "") -> None:
        snap = ctx.snapshot
        header.value = _header(snap, "Release queue").value
        requests = snap.get("requests", [])
        released = [r for r in requests if r["state"] == "released"]
        ordered = ([r for r in requests if r["state"] in OPEN]
                   + [r for r in requests if r["state"] not in OPEN])
        counts = Counter(r["state"] for r in requests)
        pending = sum(counts[s] for s in OPEN)
        summary.value = (f"<p><b class='wb-pending'>{pending} pending</b>; "
                         + (", ".join(f"{esc(k)}: {v}" for k, v in sorted(counts.items()))
                            or "no release requests yet") + "</p>"
                         + (f"<p class='wb-note'>{esc(note)}</p>" if note else ""))
        if not snap.get("airlock", {}).get("available", True):
            summary.value += f"<p>airlock unreachable: {esc(snap['airlock']['reason'])}</p>"
        accordion.children = [_panel(ctx, r, released, refresh) for r in ordered]
        for i, req in enumerate(ordered):
            accordion.set_title(i, f"{req.get('name')} [{req.get('state')}] {req.get('id')}")
        accordion.selected_index = 0 if ordered and ordered[0]["state"] in OPEN else None

    def refresh(note: str) -> None:
        try:
            ctx.refresh()
        except Exception as exc:  # the decision stands; only the redraw failed
            summary.value += (f"<p class='wb-warn'>{esc(note)}; the queue could not be "
                              f"refreshed ({esc(type(exc).__name__)}): reload the page</p>")
            return
        draw(f"{note}; queue refreshed at {ctx.snapshot.get('generated_at')}")

    draw()
    return w.VBox([header, summary, accordion])


def provenance(ctx: ReviewContext) -> w.Widget:
    snap = ctx.snapshot
    if (refused := _refused(snap)) is not None:
        return refused
    prov = snap.get("provenance", {})
    if not prov.get("available"):
        return w.VBox([_header(snap, "Provenance"),
                       w.HTML(f"<p>provenance log not readable: {esc(prov.get('reason'))}</p>")])
    ver = prov["verification"]
    verdict = render.badge("verified" if ver["ok"] else "VERIFICATION FAILED",
                           "#1a7f37" if ver["ok"] else "#cf222e")
    status = w.HTML(f"<p>{verdict} {esc(ver['summary'])} (checked {esc(ver['checked_at'])})</p>")
    timeline = prov["timeline"]
    kinds = sorted({r["kind"] for r in timeline})
    choose = w.Dropdown(options=["all", *kinds], value="all", description="kind")
    table = w.HTML()

    def show(_change=None):
        rows = [r for r in timeline if choose.value in ("all", r["kind"])][-500:]
        table.value = ("<table class='wb-table'><tr><th>#</th><th>time</th><th>kind</th>"
                       "<th>who</th><th>what</th><th>record</th></tr>" + "".join(
                           f"<tr><td>{r['seq']}</td><td>{esc(r['ts'])}</td><td>{esc(r['kind'])}"
                           f"</td><td>{esc(r['user'])}</td><td>{esc(r['summary'])}</td>"
                           f"<td><code>{esc(r['id'][:16])}</code></td></tr>"
                           for r in reversed(rows)) + "</table>")

    choose.observe(show, names="value")
    show()
    counts = Counter(r["kind"] for r in timeline)
    return w.VBox([_header(snap, "Provenance"), status,
                   w.HTML("<p>" + ", ".join(f"{esc(k)}: {v}" for k, v in sorted(counts.items()))
                          + "</p>"), choose, table])


def results(ctx: ReviewContext) -> w.Widget:
    snap = ctx.snapshot
    if (refused := _refused(snap)) is not None:
        return refused
    released = [r for r in snap.get("requests", []) if r["state"] == "released"]
    if not released:
        return w.VBox([_header(snap, "Results"), w.HTML("<p>nothing released yet.</p>")])
    panels = [w.HTML(f"<h3>{esc(r['name'])}</h3><p>{esc(r['description'])} (released "
                     f"{esc(r['updated_at'])}, approved by {esc(', '.join(r['approvals']))})</p>"
                     + render.output_html(r)) for r in released]
    return w.VBox([_header(snap, "Results"), *panels])


def admin_overview(ctx: ReviewContext) -> w.Widget:
    snap = ctx.snapshot
    status = snap.get("policy_status", {})
    policy_html = ("<p>" + render.badge("policy valid", "#1a7f37") + f" {esc(snap['policy_file'])}"
                   "</p>" if status.get("ok") else
                   "<p>" + render.badge("policy INVALID", "#cf222e") + "</p><ul>"
                   + "".join(f"<li>{esc(p)}</li>" for p in status.get("problems", [])) + "</ul>")
    head = w.HTML(render.STYLE + "<h2>Admin overview</h2>" + f"<p>signed in as "
                  f"<b>{esc(snap['viewer'])}</b>; data as of {esc(snap['generated_at'])}</p>"
                  + policy_html)
    if not status.get("ok"):
        return w.VBox([head])
    if (refused := _refused(snap)) is not None:
        return refused
    queue = snap.get("queue", {}).get("by_study", {})
    studies = "".join(
        f"<tr><td>{esc(s['study'])}</td><td>{esc(s['title'])}</td>"
        f"<td>{esc(', '.join(s['members']))}</td><td>{esc(', '.join(s['reviewers']))}</td>"
        f"<td>{esc(', '.join(s['views']))}</td><td>{esc(s['expires'])}"
        + (" " + render.badge("expired", "#cf222e") if s["days_left"] < 0 else
           " " + render.badge(f"{s['days_left']} days", "#9a6700") if s["days_left"] < 30 else "")
        + f"</td><td>{s['min_cell_count']}</td><td>"
        + esc(", ".join(f"{k}: {v}" for k, v in sorted(queue.get(s["study"], {}).items())))
        + "</td></tr>" for s in snap.get("studies", []))
    usage = snap.get("usage", {})
    if usage.get("available"):
        usage_html = ("<table class='wb-table'><tr><th>holder</th><th>study</th><th>kind</th>"
                      "<th>requests</th><th>rows contributed</th></tr>" + "".join(
                          f"<tr><td>{esc(u['holder'])}</td><td>{esc(u['study'])}</td>"
                          f"<td>{esc(u['kind'])}</td><td>{u['requests']}</td><td>{u['rows']}</td>"
                          "</tr>" for u in sorted(usage["rows"], key=lambda u: u["holder"]))
                      + "</table>") if usage["rows"] else \
            "<p>no study has used a holder's data yet</p>"
    else:
        usage_html = f"<p>usage ledger not readable: {esc(usage.get('reason'))}</p>"
    history = snap.get("policy_history", {})
    if history.get("available"):
        history_html = ("<table class='wb-table' id='policy-history'><tr><th>serial</th>"
                        "<th>recorded</th><th>key</th><th>by</th><th>what changed</th></tr>"
                        + "".join(f"<tr><td>{esc(h['serial'])}</td><td>{esc(h['ts'][:19])}</td>"
                                  f"<td>{esc(h['key_id'])}</td><td>{esc(h['actor'])}</td>"
                                  f"<td>{esc(h['what'])}</td></tr>" for h in history["rows"])
                        + "</table>")
    else:
        history_html = f"<p>policy history not readable: {esc(history.get('reason'))}</p>"
    return w.VBox([head, w.HTML(
        "<h3>Studies</h3><table class='wb-table'><tr><th>study</th><th>title</th><th>members</th>"
        "<th>reviewers</th><th>views</th><th>expires</th><th>min cell</th><th>airlock</th></tr>"
        + studies + "</table>" + _he_key_html(snap.get("he_key", {}))
        + "<h3>Usage per data holder</h3>" + usage_html
        + "<h3>Policy history</h3>" + history_html)])


def _he_key_html(key: dict) -> str:
    """Who holds the space's HE key and whether it is the one the signed policy sets."""
    if not key.get("available"):
        return f"<h3>HE key</h3><p>not readable: {esc(key.get('reason'))}</p>"
    colour = {"in force": "#1a7f37", "simulated": "#9a6700"}.get(key["status"], "#cf222e")
    return ("<h3>HE key</h3><table class='wb-table' id='he-key'><tr><th>scheme</th>"
            "<th>decrypt together</th><th>key parties (one share each)</th><th>key</th>"
            f"<th>status</th></tr><tr><td>{esc(key['scheme'])}</td>"
            f"<td>{esc(key['t'])} of {len(key['parties'])}</td>"
            f"<td>{esc(', '.join(key['parties']))}</td><td><code>{esc(key['keygen'][:12])}"
            f"</code></td><td>{render.badge(key['status'], colour)} {esc(key['note'])}</td>"
            "</tr></table>")
