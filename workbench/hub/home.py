"""The hub's home page lists the user's studies (each one a named server) instead of asking
for a server name, and shows an admin the policy's history; written as a template into the
hub's directory at configure time."""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import Space
from workbench.policy.access import decide
from workbench.policy.signed import active_policy

HOME_TEMPLATE = """\
{% extends "page.html" %}
{% block main %}
<div class="container">
  {% set queues = review_queues.queues if review_queues else [] %}
  {% if queues %}
  <h1>Your review queues</h1>
  <table class="table table-striped" id="workbench-review-queues">
    <thead><tr><th>Study</th><th>Title</th><th>Waiting for a decision</th><th></th></tr></thead>
    <tbody>
    {% for queue in queues %}
      <tr class="review-queue-row" data-study="{{ queue.id }}">
        <td><code>{{ queue.id }}</code></td>
        <td>{{ queue.title }}</td>
        <td class="pending">{% if queue.pending is none %}-{% else %}<span
          class="badge{{ ' bg-primary' if queue.pending else '' }}">{{ queue.pending
          }}</span>{% endif %}</td>
        <td><a role="button" class="btn btn-xs btn-primary" id="review-{{ queue.id }}"
               href="{{ prefix }}{{ queue.path }}">open the release queue</a></td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
  {% if not review_queues.counts %}
    <p class="text-muted">Pending counts are not available: {{ review_queues.reason }}.</p>
  {% endif %}
  {% endif %}
  {% if studies or not queues %}<h1>Your studies</h1>{% endif %}
  {% if not studies and not queues %}
    <p class="alert alert-info">You are not a member of any study. An admin grants studies in
      the hub policy file.</p>
  {% elif studies %}
  <table class="server-table table table-striped" id="workbench-studies">
    <thead><tr><th>Study</th><th>Title</th><th>Expires</th><th>Actions</th></tr></thead>
    <tbody>
    {% for study in studies %}
      {% set orm = user.orm_spawners.get(study.id) %}
      <tr class="home-server-row" data-server-name="{{ study.id }}">
        <td><code>{{ study.id }}</code></td>
        <td>{{ study.title }}</td>
        <td>{{ study.expires }}</td>
        <td>
          {% if study.allowed %}
            <a role="button" class="btn btn-xs btn-primary" id="open-{{ study.id }}"
               href="{{ base_url }}spawn/{{ user.name }}/{{ study.id }}">open</a>
            {% set hidden = "" if (orm and orm.server) else " hidden" %}
            <a role="button" id="stop-{{ study.id }}"
               class="stop-server btn btn-xs btn-danger{{ hidden }}">stop</a>
          {% else %}
            <span class="text-muted">{{ study.reason }}</span>
          {% endif %}
        </td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
  {% if policy_history %}
  <h2>Policy history</h2>
  <p id="policy-in-force">In force: serial {{ policy_history.serial }}, signed with
    <code>{{ policy_history.key_id }}</code>. Change it with
    <code>workbench policy apply FILE --key KEY</code>.</p>
  <table class="table table-condensed" id="policy-history">
    <thead><tr><th>Serial</th><th>Recorded</th><th>Key</th><th>By</th><th>What changed</th>
    </tr></thead>
    <tbody>
    {% for row in policy_history.rows %}
      <tr data-serial="{{ row.serial }}"><td>{{ row.serial }}</td><td>{{ row.ts[:19] }}</td>
        <td><code>{{ row.key_id }}</code></td><td>{{ row.actor }}</td><td>{{ row.what }}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
  {% endif %}
</div>
{% endblock main %}
{% block script %}
  {{ super() }}
  <script>require(["home"]);</script>
{% endblock script %}
"""


def studies_of(policy_path: str, space: Space):
    """``template_vars`` callable: the studies a user is a member of, from the policy in force
    (verified as the spawner verifies it; a refused policy lists nothing)."""
    source = active_policy(policy_path, space, "the hub")

    def studies(user) -> list[dict]:
        if user is None:
            return []
        try:
            policy = source.current()
        except WorkbenchError:
            return []
        listed = []
        for study_id, study in sorted(policy.studies.items()):
            if user.name not in study.members:
                continue
            decision = decide(policy, user.name, "spawn-server", study_id)
            listed.append({"id": study_id, "title": study.title,
                           "expires": study.expires.isoformat(), "allowed": decision.allowed,
                           "reason": "" if decision.allowed else "expired or suspended"})
        return listed

    return studies


def policy_history_of(policy_path: str, space: Space):
    """``template_vars`` callable: for an admin of the policy in force, the signed policy's
    serial and key and every recorded ``policy-change`` (from provenance); None for others."""
    from workbench.policy.changes import history

    source = active_policy(policy_path, space, "the hub")

    def policy_history(user) -> dict | None:
        try:
            policy = source.current()
        except WorkbenchError:
            return None
        if user is None or not decide(policy, user.name, "admin", None).allowed:
            return None
        record = source.record or {}
        try:
            rows = history(space)
        except WorkbenchError:
            rows = []
        return {"serial": record.get("serial", "- (unsigned)"),
                "key_id": record.get("key_id", "-"), "rows": rows}

    return policy_history


class _Queues:
    """A reviewer's queues, gathered only when a template reads them: the hub evaluates every
    template variable on every page, and only the home page shows these."""

    def __init__(self, gather):
        self._gather, self._found = gather, None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._found is None:
            try:
                self._found = self._gather()
            except WorkbenchError:  # a refused policy: no queues
                self._found = {"queues": [], "counts": True, "reason": ""}
        return self._found[name]


def review_queues_of(policy_path: str, space: Space):
    """``template_vars`` callable: a reviewer's queues with their pending counts, asked afresh
    on every render of the home page (workbench.review.queues)."""
    from workbench.review.queues import review_queues

    source = active_policy(policy_path, space, "the hub")

    def queues(user) -> _Queues | None:
        if user is None:
            return None
        return _Queues(lambda: review_queues(source.current(), space, user.name))

    return queues


def write_templates(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)  # noqa: S103 - root-owned templates the hub reads
    (directory / "home.html").write_text(HOME_TEMPLATE)
    os.chmod(directory / "home.html", 0o644)
    return directory
