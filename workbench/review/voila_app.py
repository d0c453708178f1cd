"""A reviewer dashboard service: standalone Voila behind hub OAuth (a hub-managed service).

    workbench review dashboard --notebooks DIR --policy P --dashboards NAME,... [--study S]
    workbench review dashboard ... --all-studies     (the shared service: every study's queue)

- who: JupyterHub's own ``JupyterHubIdentityProvider`` (HubOAuth; the service's access scope
  ``access:services!service=<name>`` is checked on every request; anonymous visitors are sent
  to the hub's login, signed-in users without the scope get 403);
- what runs: Voila drops every client ``execute_request`` and shows no sources or tracebacks;
  kernels start only through the sandboxed kernelspec (strict kernelspec manager: the
  ``workbench-sandbox`` provisioner in dashboard mode, the audit proxy). A dashboard kernel is
  out of the researcher's reach: it runs as the study's dashboard account (``wbr-<study>``),
  never the study's kernel account; no workspace is mounted, it starts in the sandbox's
  root-owned ``/`` and imports only from root-owned, read-only directories; it holds no token
  and its one socket is a decision relay acting for this visit's reviewer
  (workbench.review.relay). No kernel is pre-started: each belongs to one visit.
- shared (``--all-studies``, the default under the hub): one process for every study's
  reviewers; the study is the visit's ``?study=``, checked on every page against the policy
  (re-read) for the signed-in user (``view-dashboard``: its reviewers and admins; else 403), and
  again by the broker; the visit's kernel runs as that study's ``wbr-<study>`` with a relay
  bound to that study and user. A kernel answers only the user whose visit started it.
- data: on each visit the prelaunch hook gathers the snapshot for the signed-in user and
  injects it as the notebook's first cell (workbench.review.inject); the producing code and
  reads in it come from the audit proxy's records (workbench.review.snapshot).
- pages: the service's root and Voila's file tree redirect to its first dashboard (the
  release queue, or the admin overview), so a link to the service never lands on a bare file
  list; every response refuses to be framed (workbench.review.framing).
- privilege: none. Under the hub the service runs as its own account (``wbv-<study>``,
  ``wbv-review-admin``); kernels come from the root kernel launcher, the snapshot and the
  relay's decisions from the review broker (workbench.review.broker). Run as root (tests), it
  does both itself.
Guarded by tests/review/test_services.py and tests/review/test_reviewer_isolation.py.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from jupyterhub.singleuser.extension import JupyterHubIdentityProvider
from jupyterhub.utils import url_path_join
from tornado.web import HTTPError
from traitlets.config import Config

from workbench.paths import Space
from workbench.review.framing import VOILA_CSP, deny_framing
from workbench.review.services import ADMIN_SANDBOX
from workbench.sandbox.provisioner import PER_VISIT


class ServiceIdentityProvider(JupyterHubIdentityProvider):
    """JupyterHub's identity provider, with its OAuth routes under the service prefix (Voila
    does not prefix identity-provider routes as Jupyter Server does)."""

    def get_handlers(self):
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        return [(url_path_join(prefix, path), handler, *rest)
                for path, handler, *rest in super().get_handlers()]


def visit_study(req, policy_file: str, user: str) -> str:
    """The shared service's study for this visit (``?study=``): one of the policy's, re-read
    now, that ``user`` may see (its reviewers and admins: ``view-dashboard``), else 404/403."""
    from workbench.policy import load_policy
    from workbench.policy.access import decide

    study = req.get_query_argument("study", "")
    policy = load_policy(policy_file)
    if study not in policy.studies:
        raise HTTPError(404, reason="no-such-study")
    if not decide(policy, user, "view-dashboard", study):
        raise HTTPError(403, reason="not-a-reviewer-of-this-study")
    return study


def make_prelaunch_hook(space: Space, policy_file: str, study: str | None, allowed: set[str],
                        kernel_name: str | None):
    """``study``: the service's study, None for the admin overview, PER_VISIT for the shared
    service (the visit's ``?study=``, checked against the policy for the signed-in user)."""
    from workbench.errors import WorkbenchError, WorkbenchUserError
    from workbench.policy import load_policy
    from workbench.review.broker import ask
    from workbench.review.inject import inject
    from workbench.review.snapshot import admin_snapshot, study_snapshot

    def hook(req, notebook, cwd):
        name = os.path.splitext(os.path.basename(req.request.path.rstrip("/")))[0]
        if name not in allowed:
            raise HTTPError(404)
        user = req.current_user.username if req.current_user else None
        if not user:
            raise HTTPError(403)
        this_study = visit_study(req, policy_file, user) if study == PER_VISIT else study
        # This visit's kernel serves ``user`` in ``this_study`` (audit attribution, its decision
        # relay, its account): Voila copies the environment into the kernel's start right after
        # this hook, with no await between, so a concurrent visit cannot put its own in between.
        os.environ["WORKBENCH_RUN_USER"] = user
        if study == PER_VISIT:
            os.environ["WORKBENCH_REVIEW_STUDY"] = this_study
        if os.geteuid() != 0:  # the service's own account: the broker gathers it
            try:
                snapshot = ask(space, {"op": "snapshot", "user": user,
                                       "study": this_study})["snapshot"]
            except WorkbenchUserError as exc:  # the broker's own check refused the pair
                raise HTTPError(403, reason=exc.reason) from exc
            except WorkbenchError as exc:
                raise HTTPError(503, reason="review-broker-unavailable") from exc
        elif this_study is None:
            snapshot = admin_snapshot(space, policy_file, user)
        else:  # re-read: revocations apply at the next visit
            snapshot = study_snapshot(space, load_policy(policy_file), this_study, user)
        return inject(notebook, snapshot, kernel_name)

    return hook


def kernel_owner_only(handler_class):
    """``handler_class`` (a Voila handler of one kernel: its websocket, its REST resource, its
    shutdown) refusing everyone but the user whose visit started that kernel: a kernel's relay
    acts for that user in that study, so nobody else may drive it, even knowing its id."""

    class OwnKernelOnly(handler_class):
        async def prepare(self, *args, **kwargs):
            result = super().prepare(*args, **kwargs)
            if result is not None:
                await result
            if self._finished:
                return
            kernel_id = self.path_kwargs.get("kernel_id") or next(iter(self.path_args), "")
            user = self.current_user.username if self.current_user else None
            try:
                owner = self.kernel_manager.get_kernel(kernel_id.strip("/")).provisioner.run_user
            except (KeyError, AttributeError):
                owner = None
            if not user or owner != user:
                raise HTTPError(403, reason="not-your-kernel")

    OwnKernelOnly.__name__ = f"OwnKernelOnly{handler_class.__name__}"
    return OwnKernelOnly


def review_app_class(first_dashboard: str, shared: bool = False):
    """Voila as a review service: its file tree (the service's root, ``voila/tree``) redirects
    to ``first_dashboard`` (the shared service: to the hub's home page, which lists the
    reviewer's queues), every response carries the framing headers, and a kernel answers only
    the user whose visit started it."""
    from tornado.web import RedirectHandler
    from voila.app import Voila
    from voila.tornado.treehandler import TornadoVoilaTreeHandler

    class ReviewVoila(Voila):
        def init_settings(self):
            return {**super().init_settings(), "transforms": [deny_framing(VOILA_CSP)]}

        def init_handlers(self):
            target = url_path_join(self.server_url, "voila/render", f"{first_dashboard}.ipynb")
            if shared:  # {base}services/review/ -> {base}hub/home
                target = url_path_join(self.server_url.rsplit("services/", 1)[0], "hub/home")
            handlers = []
            for pattern, handler, *rest in super().init_handlers():
                if handler is TornadoVoilaTreeHandler:
                    # 302, not 301: a browser must not remember where the root leads
                    handlers.append((pattern, RedirectHandler, {"url": target,
                                                                "permanent": False}))
                elif "kernel_id" in pattern or "/voila/api/shutdown/" in pattern:
                    handlers.append((pattern, kernel_owner_only(handler), *rest))
                else:
                    handlers.append((pattern, handler, *rest))
            return handlers

    return ReviewVoila


def build_config(args) -> Config:
    """Voila's configuration from the command's options (``args``: notebooks, data_dir, policy,
    study, dashboards; workbench/review/cli.py)."""
    service_url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8866"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    space = Space.at(args.data_dir)
    allowed = set(args.dashboards.split(","))
    c = Config()
    c.Voila.root_dir = args.notebooks
    c.Voila.ip = service_url.hostname or "127.0.0.1"
    c.Voila.port = service_url.port or 8866
    c.Voila.open_browser = False
    c.Voila.base_url = prefix
    c.Voila.server_url = prefix
    c.Voila.identity_provider_class = ServiceIdentityProvider
    c.Voila.tornado_settings = {"headers": {"Content-Security-Policy": VOILA_CSP,
                                            "X-Frame-Options": "DENY"}}
    c.VoilaConfiguration.strip_sources = True
    c.VoilaConfiguration.show_tracebacks = False
    c.VoilaConfiguration.file_allowlist = []  # no static file from the notebook directory
    c.VoilaConfiguration.preheat_kernel = False  # a kernel is one visitor's: never pooled
    # the service cannot (and need not) write its data dir: no stored notebook signatures
    c.NotebookNotary.db_file = ":memory:"
    c.NotebookNotary.secret = os.urandom(32)
    # Every dashboard kernel is sandboxed, in dashboard mode (see the module docstring): the
    # study's dashboard account for study dashboards, the admin sandbox's for the admin's.
    from workbench.sandbox.kernelspec import KERNEL_NAME, StrictKernelSpecManager

    c.VoilaConfiguration.kernel_spec_manager_class = StrictKernelSpecManager
    c.SandboxProvisioner.dashboard = True
    c.SandboxProvisioner.data_dir = str(space.root)
    c.SandboxProvisioner.study = args.study or ADMIN_SANDBOX  # PER_VISIT: the shared service
    kernel_name = KERNEL_NAME
    c.VoilaConfiguration.prelaunch_hook = make_prelaunch_hook(
        space, args.policy, args.study, allowed, kernel_name)
    return c



def serve(args) -> None:
    """Run the service (``workbench review dashboard``; ``args`` as build_config takes them)."""
    app = review_app_class(args.dashboards.split(",")[0], shared=args.study == PER_VISIT)(
        config=build_config(args))
    app.initialize([])
    app.start()
