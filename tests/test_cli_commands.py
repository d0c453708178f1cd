"""The top-level ``workbench`` command: each command comes from the module COMMAND_MODULES names,
and running one imports only that module."""

from __future__ import annotations

import importlib
import subprocess
import sys

from workbench.cli import COMMAND_MODULES, cli


def test_each_module_defines_exactly_the_commands_listed_for_it():
    for module, names in COMMAND_MODULES.items():
        assert tuple(c.name for c in importlib.import_module(module).commands) == names, module


def test_every_command_is_reachable_and_listed_once():
    names = [name for names in COMMAND_MODULES.values() for name in names]
    assert len(names) == len(set(names))
    ctx = cli.make_context("workbench", ["--help"], resilient_parsing=True)
    assert cli.list_commands(ctx) == sorted(names)
    for name in names:
        assert cli.get_command(ctx, name).name == name
    assert cli.get_command(ctx, "no-such-command") is None


def test_a_command_imports_only_its_own_component():
    # `workbench collector` is how the provenance collector starts: it must not pay for the
    # other components (TenSEAL, pandas, the hub) at every start
    probe = ("import sys\n"
             "from workbench.cli import cli\n"
             "cli.main(['collector', '--help'], standalone_mode=False)\n"
             "print(sorted(m for m in ('tenseal', 'pandas', 'jupyterhub', 'workbench.hub.cli',"
             " 'workbench.secure.cli') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out
