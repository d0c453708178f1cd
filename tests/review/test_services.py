"""The hub side of the dashboards: services, roles, Voila's secure defaults, the prelaunch hook."""

from __future__ import annotations

import os
import types

import nbformat
import pytest
from tornado.web import HTTPError

from workbench.review import voila_app
from workbench.review.services import hub_services
from workbench.sandbox.provisioner import PER_VISIT


@pytest.fixture
def services(review_env):
    return hub_services(review_env.policy, review_env.space, review_env.policy_file)


def test_one_shared_review_service_for_every_studys_reviewers_never_servers(services,
                                                                               review_env):
    svc, roles = services
    names = {s["name"] for s in svc}
    assert names == {"review", "review-admin", "review-files", "review-broker"}
    by_name = {r["name"]: r for r in roles}
    assert by_name["review"]["groups"] == ["cml-tki-reviewers", "lonely-reviewers"]
    assert by_name["review"]["users"] == ["ada"]
    assert by_name["review"]["scopes"] == ["access:services!service=review"]
    assert by_name["review-admin"]["users"] == ["ada"]
    for role in roles:
        assert all(s.startswith("access:services!service=") for s in role["scopes"])
        assert not any("servers" in s for s in role["scopes"])
    ports = [s["url"].rsplit(":", 1)[1] for s in svc if "url" in s]
    assert len(set(ports)) == len(ports) == len(svc) - 1  # the broker has no URL
    assert all(s["url"].startswith("http://127.0.0.1:") for s in svc if "url" in s)
    shared = next(s for s in svc if s["name"] == "review")
    assert "--all-studies" in shared["command"] and "--study" not in shared["command"]
    assert "WORKBENCH_STUDY" not in shared["environment"]


def test_the_per_study_layout_gives_each_study_its_own_service_and_role(review_env):
    svc, roles = hub_services(review_env.policy, review_env.space, review_env.policy_file,
                              per_study=True)
    assert {s["name"] for s in svc} == {"review-cml-tki", "review-lonely", "review-admin",
                                        "review-files", "review-broker"}
    by_name = {r["name"]: r for r in roles}
    assert by_name["review-cml-tki"]["groups"] == ["cml-tki-reviewers"]
    assert by_name["review-cml-tki"]["scopes"] == ["access:services!service=review-cml-tki"]
    ports = [s["url"].rsplit(":", 1)[1] for s in svc if "url" in s]
    assert len(set(ports)) == len(ports) == len(svc) - 1


def test_dashboard_servers_run_as_their_own_accounts_and_only_the_broker_as_root(services):
    import pwd
    import stat
    from pathlib import Path

    svc, _ = services
    by_name = {s["name"]: s for s in svc}
    assert by_name["review"]["user"] == "wbv-review-studies"
    assert by_name["review-admin"]["user"] == "wbv-review-admin"
    assert by_name["review-files"]["user"] == "wb-review-files"
    assert "user" not in by_name["review-broker"] and "url" not in by_name["review-broker"]
    for name in ("wbr-cml-tki", "wbr-lonely", "wbr-review-admin"):  # their kernels' accounts
        pwd.getpwnam(name)
    for name in ("review", "review-admin"):
        env = by_name[name]["environment"]
        runtime = Path(env["JUPYTER_RUNTIME_DIR"]).stat()
        assert pwd.getpwuid(runtime.st_uid).pw_name == by_name[name]["user"]
        for key in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
            info = Path(env[key]).stat()  # the service cannot change its own configuration
            assert info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_study_dashboards_use_the_sandboxed_kernelspec(services):
    """... in dashboard mode, with no pre-started kernel (each kernel is one visitor's)."""
    svc, _ = services
    study = next(s for s in svc if s["name"] == "review")
    from pathlib import Path

    spec = Path(study["environment"]["JUPYTER_PATH"]) / "kernels" / "workbench-python"
    assert (spec / "kernel.json").exists()
    args = types.SimpleNamespace(
        notebooks=study["command"][study["command"].index("--notebooks") + 1],
        data_dir=study["environment"]["WORKBENCH_DATA_DIR"],
        policy=study["environment"]["WORKBENCH_POLICY"], study=PER_VISIT,
        dashboards="release_queue,provenance,results")
    config = voila_app.build_config(args)
    from workbench.sandbox.kernelspec import StrictKernelSpecManager

    assert config.VoilaConfiguration.kernel_spec_manager_class is StrictKernelSpecManager
    assert config.VoilaConfiguration.strip_sources is True
    assert config.VoilaConfiguration.show_tracebacks is False
    assert config.VoilaConfiguration.preheat_kernel is False
    assert config.SandboxProvisioner.dashboard is True
    assert config.SandboxProvisioner.study == PER_VISIT  # each kernel: its visit's study
    assert config.Voila.identity_provider_class is voila_app.ServiceIdentityProvider
    notebooks = sorted(p.name for p in Path(args.notebooks).iterdir())
    assert notebooks == ["provenance.ipynb", "release_queue.ipynb", "results.ipynb"]


def test_voila_defaults_we_rely_on(services):
    """The secure defaults hold in Voila itself too, and its kernels accept no execute_request."""
    from voila.app import Voila
    from voila.configuration import VoilaConfiguration

    assert VoilaConfiguration().strip_sources is True
    assert VoilaConfiguration().show_tracebacks is False
    import inspect

    source = inspect.getsource(Voila.init_settings)
    allowed = source[source.index("allowed_message_types"):].split("]")[0]
    assert "execute_request" not in allowed and "comm_msg" in allowed


def _request(path, user, study=""):
    current = types.SimpleNamespace(username=user) if user else None
    return types.SimpleNamespace(request=types.SimpleNamespace(path=path), current_user=current,
                                 get_query_argument=lambda name, default: study or default)


def test_prelaunch_hook_injects_the_snapshot_and_no_token(review_env, monkeypatch):
    """The injected cell is code (recorded by the audit proxy) and the kernel needs no token:
    the visit's reviewer goes to the provisioner (its decision relay), not into the notebook."""
    monkeypatch.setenv("WORKBENCH_RUN_USER", "")  # restored after the test
    hook = voila_app.make_prelaunch_hook(review_env.space, str(review_env.policy_file), "cml-tki",
                                         {"release_queue"}, "workbench-python")
    nb = nbformat.v4.new_notebook()
    out = hook(_request("/services/review-cml-tki/voila/render/release_queue.ipynb", "rita"),
               nb, "/")
    first = out.cells[0].source
    assert "load_snapshot(" in first and "token" not in first
    assert os.environ["WORKBENCH_RUN_USER"] == "rita"
    assert out.metadata["kernelspec"]["name"] == "workbench-python"
    admin = hook(_request("/x/voila/render/release_queue.ipynb", "ada"),
                 nbformat.v4.new_notebook(), "/")
    assert "token" not in admin.cells[0].source and os.environ["WORKBENCH_RUN_USER"] == "ada"
    with pytest.raises(HTTPError) as other:
        hook(_request("/x/voila/render/admin_overview.ipynb", "rita"),
             nbformat.v4.new_notebook(), "/")
    assert other.value.status_code == 404
    with pytest.raises(HTTPError):
        hook(_request("/x/voila/render/release_queue.ipynb", None), nbformat.v4.new_notebook(), "/")


def test_the_admin_sandbox_name_is_reserved(review_env):
    from workbench.errors import WorkbenchUserError
    from workbench.policy.model import Policy

    data = review_env.policy.model_dump(mode="json")
    for reserved in ("review-admin", "review-studies"):
        taken = {**data, "studies": {**data["studies"], reserved: data["studies"]["lonely"]}}
        with pytest.raises(WorkbenchUserError, match="reserved"):
            hub_services(Policy.model_validate(taken), review_env.space, review_env.policy_file)


def test_the_shared_hook_serves_a_study_only_to_its_reviewers_and_admins(review_env,
                                                                         monkeypatch):
    """The shared service's study is the visit's ?study=, checked against the policy for the
    signed-in user before anything is gathered; the kernel start gets that study."""
    monkeypatch.setenv("WORKBENCH_RUN_USER", "")
    monkeypatch.setenv("WORKBENCH_REVIEW_STUDY", "")
    hook = voila_app.make_prelaunch_hook(review_env.space, str(review_env.policy_file),
                                         PER_VISIT, {"release_queue"}, "workbench-python")
    page = "/services/review/voila/render/release_queue.ipynb"
    out = hook(_request(page, "rita", "cml-tki"), nbformat.v4.new_notebook(), "/")
    assert "load_snapshot(" in out.cells[0].source
    assert os.environ["WORKBENCH_REVIEW_STUDY"] == "cml-tki"
    assert os.environ["WORKBENCH_RUN_USER"] == "rita"
    hook(_request(page, "ada", "lonely"), nbformat.v4.new_notebook(), "/")  # an admin
    assert os.environ["WORKBENCH_REVIEW_STUDY"] == "lonely"
    for user, study, status in (("rita", "lonely", 403),   # reviews cml-tki only
                                ("olga", "cml-tki", 403),  # another study's reviewer
                                ("alice", "cml-tki", 403),  # a member
                                ("rita", "", 404), ("rita", "no-such", 404),
                                ("rita", "cml-tki&study=lonely", 404)):
        with pytest.raises(HTTPError) as refused:
            hook(_request(page, user, study), nbformat.v4.new_notebook(), "/")
        assert refused.value.status_code == status, (user, study)
        assert os.environ["WORKBENCH_REVIEW_STUDY"] == "lonely"  # untouched by a refusal
