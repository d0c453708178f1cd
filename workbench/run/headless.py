"""``workbench run``: execute a notebook as a study user, headless, exactly as in a study server.

The run is allowed only if the access decision point lets the user run kernels in the study
(``spawn-server``). Cells go through the sandboxed kernel and its audit proxy, so each one is in
the provenance log before it runs; the executed notebook is written into the study workspace.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.paths import Space
from workbench.policy import load_policy
from workbench.policy.access import ensure_allowed
from workbench.run.kernel import run_user, sandbox_kernel_manager
from workbench.services import space_services

Echo = Callable[[str], None]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CELL_TIMEOUT = 1800  # seconds per cell: a Cox model over HE on a large view may take minutes


@dataclass
class RunResult:
    notebook: Path  # the executed notebook in the study workspace
    kernel_id: str
    cells: int  # code cells executed (including a failed one)
    code_cells: int  # code cells in the notebook (with an injected parameters cell)
    failed: dict | None = None  # {"index", "first_line", "error"} of the failing cell
    services_started: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed is None


def first_line(source: str, width: int = 80) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def parse_parameters(pairs: list[str]) -> dict:
    """``name=value`` pairs; values are Python literals when they parse as one, else text."""
    parameters = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise WorkbenchUserError(
                f"parameter '{pair}' is not name=value (a Python identifier, '=', a value), "
                "e.g. -p seed=7 -p view=cml_cohort.", reason="bad-parameter")
        try:
            parameters[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parameters[name] = text  # e.g. -p view=cml_cohort
    return parameters


def load_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise WorkbenchUserError(f"notebook {path} does not exist.", reason="no-notebook") from None
    except (OSError, ValueError) as exc:  # nbformat's read errors are ValueErrors
        raise WorkbenchUserError(f"{path} is not a readable Jupyter notebook ({type(exc).__name__}"
                                 f": {str(exc)[:200]}).", reason="bad-notebook") from None
    nb.metadata.setdefault("kernelspec", {"name": "python3", "language": "python",
                                          "display_name": "Python 3"})
    return nb


def inject_parameters(nb: nbformat.NotebookNode, parameters: dict,
                      echo: Echo) -> nbformat.NotebookNode:
    """Papermill's injection: a cell tagged ``injected-parameters`` after the ``parameters`` cell
    (or first when there is none), written by papermill's own Python translator."""
    if not parameters:
        return nb
    from papermill.translators import translate_parameters

    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    where = next((i for i, c in enumerate(cells) if c.cell_type == "code"
                  and "parameters" in c.metadata.get("tags", [])), None)
    declared: set[str] = set()
    if where is not None:
        try:
            tree = ast.parse(cells[where].source)
            declared = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                        for t in node.targets if isinstance(t, ast.Name)}
        except SyntaxError:
            pass
    for name in sorted(set(parameters) - declared):
        echo(f"warning: '{name}' is not set in the notebook's parameters cell; injected anyway")
    injected = nbformat.v4.new_code_cell(
        translate_parameters("python3", "python", parameters, "Parameters"))
    injected.metadata["tags"] = ["injected-parameters"]
    cells.insert(0 if where is None else where + 1, injected)
    nb.cells = cells
    return nb


def output_path(space: Space, study: str, notebook: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return space.workspace(study) / "runs" / f"{notebook.stem}-{stamp}.ipynb"


def write_into_workspace(space: Space, study: str, target: Path, nb) -> None:
    """Written as root, then handed to the study's kernel uid and server group, as if the
    study's own server had saved it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    if accounts.is_root():
        kernel_uid, _ = accounts.ensure_user(accounts.study_kernel_user(study))
        _, server_gid = accounts.ensure_user(accounts.study_server_user(study))
        for path in (target.parent, target):
            os.chown(path, kernel_uid, server_gid)
        os.chmod(target.parent, 0o2770)  # noqa: S103 - kernel and study server both use it
        os.chmod(target, 0o660)


def _error_of(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {str(output.get('evalue'))[:300]}"
    return "the cell did not complete"


def run_notebook(space: Space, policy_path: str | os.PathLike, study: str, user: str,
                 notebook: str | os.PathLike, parameters: dict | None = None,
                 echo: Echo = print, timeout: int = CELL_TIMEOUT) -> RunResult:
    """Run ``notebook`` in ``study`` as ``user``; never raises for a failing cell (see
    ``RunResult.failed``); raises WorkbenchUserError when the run may not or cannot start."""
    notebook = Path(notebook)
    if not space.manifest.exists():
        raise WorkbenchUserError(f"no data space at {space.root}: build one with 'workbench init "
                                 f"--data-dir {space.root}'.", reason="no-space")
    policy = load_policy(policy_path)
    ensure_allowed(policy, user, "spawn-server", study)
    nb = inject_parameters(load_notebook(notebook), parameters or {}, echo)
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    ordinal = {index: n for n, index in enumerate(code_cells, start=1)}
    failed: dict | None = None

    kernel_ids: list[str] = []

    def on_start(cell, cell_index):
        if not kernel_ids:
            kernel_ids.append(km.kernel_id or "")
        if cell.cell_type == "code":
            echo(f"[{ordinal[cell_index]}/{len(code_cells)}] {first_line(cell.source)}")

    def on_error(cell, cell_index, execute_reply=None):
        nonlocal failed
        failed = {"index": cell_index, "code_cell": ordinal[cell_index],
                  "first_line": first_line(cell.source), "error": _error_of(cell)}

    target = output_path(space, study, notebook)
    echo(f"running {notebook.name} in study '{study}' as {user}")
    with space_services(space, policy_path, echo) as started, run_user(user), \
            sandbox_kernel_manager(space, study) as km:
        client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=km.kernel_name,
                                on_cell_start=on_start, on_cell_error=on_error,
                                record_timing=False)
        try:
            # the kernel is ours: shut it down (nbclient keeps a kernel it did not start)
            client.execute(cleanup_kc=True, env={"JPY_SESSION_NAME": notebook.name},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except CellExecutionError:
            if failed is None:  # defensive: nbclient always calls on_cell_error first
                failed = {"index": -1, "code_cell": 0, "first_line": "", "error": "cell failed"}
        except (CellTimeoutError, DeadKernelError) as exc:
            index = next((i for i in code_cells if not nb.cells[i].get("outputs")
                          and nb.cells[i].get("execution_count") is None), -1)
            failed = {"index": index, "code_cell": ordinal.get(index, 0),
                      "first_line": first_line(nb.cells[index].source) if index >= 0 else "",
                      "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    write_into_workspace(space, study, target, nb)
    executed = sum(1 for i in code_cells if nb.cells[i].get("execution_count") is not None)
    return RunResult(target, kernel_ids[0] if kernel_ids else "", executed, len(code_cells), failed,
                     started)
