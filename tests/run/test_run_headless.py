"""`workbench run` as a user calls it: parameters injected papermill-style, a failing cell named
with a non-zero exit and no traceback, refusals by the access decision point before anything
starts, the services started for the run and stopped afterwards, the cells on the record."""

from __future__ import annotations

import ast
import hashlib
import pwd
import re
from pathlib import Path

import nbformat
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from run_support import workbench

from workbench import accounts
from workbench.errors import WorkbenchUserError
from workbench.provenance.reader import ProvenanceReader
from workbench.run.headless import inject_parameters, parse_parameters
from workbench.services import socket_answers

pytestmark = pytest.mark.slow
STUDY = "lung-validation"


def _notebook(path: Path, *sources: str, parameters: str | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    cells = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    nb.cells = cells + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def _args(env: dict) -> list[str]:
    return ["--data-dir", env["space"].root, "--policy", env["policy"]]


def test_failing_cell_exits_non_zero_naming_it(public_space):
    notebook = _notebook(public_space["base"] / "divide.ipynb",
                         "import workbench as wb\nsorted(wb.describe('lung_survival'))[:2]",
                         "ratio = 1 / divisor  # fails only with the injected value",
                         "print('never reached')", parameters="divisor = 2")
    result = workbench("run", notebook, "--study", STUDY, "--user", "alice",
                       "-p", "divisor=0", *_args(public_space))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cell [4/5] failed: ratio = 1 / divisor" in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "[1/5] divisor = 2" in result.stdout and "[2/5] # Parameters" in result.stdout
    # the services were started for the run and stopped afterwards
    space = public_space["space"]
    assert "provenance collector: started" in result.stdout
    assert not socket_answers(space.collector_socket)
    assert not socket_answers(space.gateway_socket(STUDY))
    # the executed notebook is in the study workspace, the study's own, with the injection
    executed = Path(re.search(r"executed notebook: (\S+)", result.stdout).group(1))
    assert executed.parent == space.workspace(STUDY) / "runs"
    assert executed.stat().st_uid == pwd.getpwnam(accounts.study_kernel_user(STUDY)).pw_uid
    nb = nbformat.read(executed, as_version=4)
    assert nb.cells[1].metadata["tags"] == ["injected-parameters"]
    assert "divisor = 0" in nb.cells[1].source
    assert nb.cells[3].outputs[-1]["ename"] == "ZeroDivisionError"
    assert nb.cells[4].get("execution_count") is None  # nothing ran after the failure
    # the failing cell is on the record, attributed to the run user and the notebook
    digest = hashlib.sha256(nb.cells[3].source.encode()).hexdigest()
    with ProvenanceReader(space) as reader:
        done = [r.fields for r in reader.records(study=STUDY, kinds=["cell-execution"])
                if r.fields.get("code_sha256") == digest and r.fields.get("ref")]
    assert [f["status"] for f in done] == ["error"]
    assert done[0]["user"] == "alice" and done[0]["notebook_path"] == "divide.ipynb"


@pytest.mark.parametrize("user", ["rita", "mallory"])
def test_who_may_not_run_in_the_study_is_refused_before_anything_starts(public_space, user):
    notebook = _notebook(public_space["base"] / "hello.ipynb", "print('hello')")
    result = workbench("run", notebook, "--study", STUDY, "--user", user, *_args(public_space))
    assert result.returncode == 2
    assert "Access denied" in result.stderr and "Traceback" not in result.stderr
    assert "started" not in result.stdout
    assert not (public_space["space"].workspace(STUDY) / "runs").exists()


def test_unknown_study_and_missing_notebook_are_user_errors(public_space):
    notebook = _notebook(public_space["base"] / "hello.ipynb", "print('hello')")
    unknown = workbench("run", notebook, "--study", "no-such-study", "--user", "alice",
                        *_args(public_space))
    assert unknown.returncode == 2 and "no study 'no-such-study'" in unknown.stderr
    missing = workbench("run", public_space["base"] / "absent.ipynb", "--study", STUDY,
                        "--user", "alice", *_args(public_space))
    assert missing.returncode == 2 and "absent.ipynb does not exist" in missing.stderr
    for result in (unknown, missing):
        assert "Traceback" not in result.stderr


def test_a_malformed_parameter_is_a_user_error():
    with pytest.raises(WorkbenchUserError, match="is not name=value"):
        parse_parameters(["1x=3"])
    with pytest.raises(WorkbenchUserError, match="is not name=value"):
        parse_parameters(["novalue"])


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                 st.none(), st.text(max_size=20), st.lists(st.integers(), max_size=4),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)))
def test_python_literals_are_parsed_as_values(value):
    assert parse_parameters([f"name={value!r}"])["name"] == value


@given(st.text(max_size=30))
def test_anything_that_is_not_a_literal_stays_text(text):
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        assert parse_parameters([f"name={text}"])["name"] == text
    else:
        assume(False)


def test_parameters_go_after_the_parameters_cell_and_replace_an_earlier_injection():
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("import math")
    params = nbformat.v4.new_code_cell("alpha = 0.05")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [first, params, nbformat.v4.new_code_cell("alpha")]
    warnings = []
    once = inject_parameters(nb, {"alpha": 0.1}, warnings.append)
    twice = inject_parameters(once, {"alpha": 0.2, "extra": "x"}, warnings.append)
    assert [c.source.splitlines()[-1] if c.source else "" for c in twice.cells[:3]] == [
        "import math", "alpha = 0.05", "extra = \"x\""]
    injected = [c for c in twice.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "alpha = 0.2" in injected[0].source
    assert warnings == ["warning: 'extra' is not set in the notebook's parameters cell; "
                        "injected anyway"]
