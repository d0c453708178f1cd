"""The root-owned configuration and environment of a study's single-user Jupyter server.

The server runs as the study's server uid and must not be able to change its own configuration:
the config directory (``JUPYTER_CONFIG_DIR``) and data directory (``JUPYTER_DATA_DIR``, holding the
sandboxed kernelspec) are written here by the hub as root, mode 0755/0644. HOME is the study
workspace, which the kernel can write, so every other place a Jupyter or Python process reads
settings from under HOME is pointed elsewhere (XDG dirs, IPYTHONDIR, no user site-packages).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from workbench.hub.layout import HubLayout
from workbench.policy.model import Study

CONTENTS_MANAGER = "workbench.hub.contents.WorkspaceContentsManager"
KERNEL_MANAGER = "workbench.hub.kernels.StudyKernelManager"
KERNEL_SPEC_MANAGER = "workbench.sandbox.kernelspec.StrictKernelSpecManager"
PROVISIONER = "workbench-sandbox"
# The SANDBOX component's Jupyter server extension: attributes each websocket message to the
# authenticated hub user (never to the client-set header.username).
SERVER_EXTENSION = "workbench_server"
# Server extensions shipped in the environment that a study server must not load.
DISABLED_EXTENSIONS = ("jupyter_server_terminals", "voila", "jupyter_lsp")


def server_config(workspace: Path, study: Study, state: Path, kernel_idle_timeout: int,
                  server_idle_timeout: int) -> dict:
    """jupyter_server_config.json of one study server."""
    extensions = {name: False for name in DISABLED_EXTENSIONS}
    extensions["jupyterlab"] = True
    if importlib.util.find_spec(SERVER_EXTENSION) is not None:
        extensions[SERVER_EXTENSION] = True
    return {
        "ServerApp": {
            "root_dir": str(workspace),
            "terminals_enabled": False,
            "contents_manager_class": CONTENTS_MANAGER,
            "kernel_manager_class": KERNEL_MANAGER,
            "kernel_spec_manager_class": KERNEL_SPEC_MANAGER,
            "jpserver_extensions": extensions,
            "shutdown_no_activity_timeout": server_idle_timeout,
            "allow_remote_access": False,
        },
        "FileContentsManager": {"allow_hidden": False, "always_delete_dir": False},
        "ContentsManager": {"allow_hidden": False},
        "StudyKernelManager": {
            "max_kernels": study.resources.max_kernels,
            "cull_idle_timeout": kernel_idle_timeout,
            "cull_interval": 60,
            "cull_connected": False,
        },
        "KernelProvisionerFactory": {"default_provisioner_name": PROVISIONER},
        "LabApp": {
            "extension_manager": "readonly",
            "user_settings_dir": str(state / "lab-settings"),
            "workspaces_dir": str(state / "lab-workspaces"),
            "news_url": None,
            "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        },
        "LabServerApp": {"user_settings_dir": str(state / "lab-settings"),
                         "workspaces_dir": str(state / "lab-workspaces")},
    }


def write_root_owned(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)


def prepare_config(layout: HubLayout, study_id: str, study: Study, kernel_idle_timeout: int,
                   server_idle_timeout: int) -> tuple[Path, Path]:
    """(Re)write the study server's config and data dirs; returns (config_dir, data_dir)."""
    config_dir, data_dir = layout.config_dir(study_id), layout.data_dir(study_id)
    for path in (config_dir, data_dir):
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755)  # noqa: S103 - root-owned, read-only for the server uid
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
    config = server_config(layout.space.workspace(study_id), study, layout.server_state(study_id),
                           kernel_idle_timeout, server_idle_timeout)
    # jupyter_core writes this marker at first start; the server uid cannot write here
    write_root_owned(config_dir / "migrated", "")
    write_root_owned(config_dir / "jupyter_server_config.json",
                     json.dumps(config, indent=2, sort_keys=True) + "\n")
    from workbench.sandbox.kernelspec import install_kernelspec

    install_kernelspec(data_dir)
    return config_dir, data_dir


def server_environment(layout: HubLayout, study_id: str, config_dir: Path, data_dir: Path,
                       policy_path: str) -> dict[str, str]:
    """Environment variables of the study server beyond the hub's own JUPYTERHUB_* ones."""
    state = layout.server_state(study_id)
    workspace = layout.space.workspace(study_id)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "SHELL": "/usr/sbin/nologin",
        "JUPYTER_CONFIG_DIR": str(config_dir),
        "JUPYTER_CONFIG_PATH": str(config_dir),
        "JUPYTER_DATA_DIR": str(data_dir),
        "JUPYTER_PATH": str(data_dir),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTER_PREFER_ENV_PATH": "1",
        "IPYTHONDIR": str(state / "ipython"),
        "XDG_CONFIG_HOME": str(state / "xdg-config"),
        "XDG_DATA_HOME": str(state / "xdg-data"),
        "XDG_CACHE_HOME": str(state / "xdg-cache"),
        "XDG_RUNTIME_DIR": str(state / "runtime"),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",  # keeps a threaded server's address space modest
        "WORKBENCH_DATA_DIR": str(layout.space.root),
        "WORKBENCH_STUDY": study_id,
        "WORKBENCH_POLICY": str(policy_path),
    }
