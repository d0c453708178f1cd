"""JupyterHub configuration of the workbench: thin glue, the logic is in workbench.hub.config.

Run: WORKBENCH_DATA_DIR=/var/lib/workbench/demo WORKBENCH_POLICY=workbench/hub_config/policy.yaml \
     jupyterhub -f workbench/hub_config/jupyterhub_config.py
(`workbench demo` does this and starts the proxy and the space's services first.)
"""

import os

from workbench.hub.config import configure

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
configure(
    c,
    policy_path=os.environ.get("WORKBENCH_POLICY")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "policy.yaml"),
    data_dir=os.environ.get("WORKBENCH_DATA_DIR"),
)
