"""What may cross from the kernel to the airlock (security boundary: serialize.py, svg.py)."""

from __future__ import annotations

import base64
import io
import pickle
import zlib

import matplotlib
import pandas as pd
import pyarrow as pa
import pytest
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi

from workbench.errors import WorkbenchUserError
from workbench.release.serialize import clean_png, from_payload, to_payload
from workbench.release.svg import clean_svg

matplotlib.use("Agg")


def test_pickle_is_never_accepted():
    evil = base64.b64encode(pickle.dumps(pd.DataFrame({"n": [10]}))).decode()
    with pytest.raises(WorkbenchUserError):
        from_payload({"kind": "table", "table": evil})


def test_nested_or_binary_columns_are_refused():
    table = pa.table({"blob": pa.array([b"\x00\x01"]), "n": [10]})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = {"kind": "table", "table": base64.b64encode(sink.getvalue()).decode()}
    with pytest.raises(WorkbenchUserError, match="blob"):
        from_payload(payload)


def test_png_text_chunks_do_not_survive():
    """A PNG can carry text chunks: a way to smuggle rows out inside a 'figure'."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Description": "SECRET-ROWS-1234"})
    plt.close(fig)
    raw = buf.getvalue()
    assert b"SECRET-ROWS-1234" in raw
    smuggled = raw + b"trailing SECRET-ROWS-5678"
    clean = clean_png(smuggled)
    assert b"SECRET-ROWS" not in clean and b"SECRET-ROWS" not in zlib.compress(clean)
    assert clean.startswith(b"\x89PNG")


@pytest.mark.parametrize("svg", [
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg"><rect onload="alert(1)"/></svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
    b'<image x:href="http://example.invalid/beacon.png"/></svg>',
    b'<!DOCTYPE svg [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg">&x;</svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg"><style>rect{fill:url(http://e.invalid/)}</style>'
    b'</svg>',
])
def test_unsafe_svg_is_refused(svg):
    with pytest.raises(WorkbenchUserError):
        clean_svg(svg)


def test_matplotlib_svg_passes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    out = from_payload(to_payload(buf.getvalue()))
    assert out.kind == "figure" and out.figure_format == "svg" and b"<svg" in out.figure[:400]


def test_cox_fit_carries_what_the_rules_need():
    fit = CoxPHFitter().fit(load_rossi(), "week", "arrest")
    model = from_payload(to_payload(fit)).model
    assert (model.family, model.n_obs, model.n_params, model.n_events) == ("cox", 432, 7, 114)


def test_unsupported_objects_say_what_to_release():
    with pytest.raises(WorkbenchUserError, match="DataFrame"):
        to_payload(object())


def test_oversized_tables_are_refused():
    big = pd.DataFrame({"n": range(300_000)})
    with pytest.raises(WorkbenchUserError) as err:
        from_payload(to_payload(big))
    assert err.value.reason == "release-too-large"
