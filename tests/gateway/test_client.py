"""The notebook client without a gateway: clear user errors, no traceback noise in IPython."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchUserError


def test_unreachable_gateway_is_a_user_error(monkeypatch, tmp_path):
    import workbench as wb

    monkeypatch.setenv("WORKBENCH_GATEWAY_SOCKET", str(tmp_path / "none.sock"))
    with pytest.raises(WorkbenchUserError) as info:
        wb.view("visits")
    assert info.value.reason == "gateway-unavailable"
    assert str(tmp_path / "none.sock") in str(info.value)


def test_ipython_shows_one_line_not_a_traceback(monkeypatch, tmp_path, capfd):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("WORKBENCH_GATEWAY_SOCKET", str(tmp_path / "none.sock"))
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("import workbench as wb\nwb.view('visits')")
        out = capfd.readouterr()
        text = out.out + out.err
        assert "WorkbenchUserError: cannot reach the data gateway" in text
        assert "Traceback" not in text and "File " not in text
    finally:
        InteractiveShell.clear_instance()


def test_to_frame_uses_pandas3_types():
    import datetime

    import pyarrow as pa

    from workbench.client import to_frame

    frame = to_frame(pa.table({"s": ["a", None], "d": [datetime.date(2020, 1, 2), None]}))
    assert str(frame["s"].dtype) == "string" and frame["s"].isna().tolist() == [False, True]
    assert str(frame["d"].dtype).startswith("datetime64")
