"""The IPython extension in a real sealed kernel: ``wb`` is there, user errors are one line."""

from __future__ import annotations

import pytest
from sandbox_support import execute

pytestmark = pytest.mark.slow


def test_wb_helpers_are_in_the_namespace(kernel):
    result = execute(kernel["kc"], "print(wb.__name__, callable(wb.views))")
    assert result["text"].strip() == "workbench True"


def test_user_errors_are_shown_without_a_traceback(kernel):
    kc = kernel["kc"]
    msg_id = kc.execute("from workbench.errors import WorkbenchUserError\n"
                        "def helper():\n"
                        "    raise WorkbenchUserError('View x is not granted: ask the admin.')\n"
                        "helper()")
    errors = []
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            errors.append(msg["content"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    error, = errors
    assert error["ename"] == "WorkbenchUserError"
    assert len(error["traceback"]) == 1
    assert "View x is not granted: ask the admin." in error["traceback"][0]
    assert "helper" not in error["traceback"][0]  # no frames


def test_other_errors_keep_their_traceback(kernel):
    result = execute(kernel["kc"], "def helper():\n    1 / 0\nhelper()")
    assert result["status"] == "error" and "ZeroDivisionError" in result["errors"]
    assert result["reply"]["traceback"] and len(result["reply"]["traceback"]) > 1
