"""Moving an output from the (untrusted) kernel to the airlock: JSON with Arrow IPC and image
bytes inside, never pickle.

``to_payload`` runs in the kernel and only reads attributes of the object; ``from_payload`` runs
in the airlock, accepts only plain column types and bounded sizes, and re-encodes images so that
nothing but pixels (no text chunks, no scripts) can leave.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd
import pyarrow as pa

from workbench.errors import WorkbenchUserError
from workbench.release.outputs import ModelFit, Output, SurvivalCurve

MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
MAX_CELLS = 200_000
MAX_IMAGE_PIXELS = 25_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WorkbenchUserError("the release request is damaged (bad base64)") from None


# -- kernel side ----------------------------------------------------------------------------------

def table_bytes(df: pd.DataFrame) -> str:
    df = df.copy()
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        df = df.reset_index()
    if isinstance(df.columns, pd.MultiIndex):
        df.columns = [" / ".join(str(p) for p in col if str(p)) for col in df.columns]
    df.columns = [str(c) for c in df.columns]
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype) or df[col].dtype == object:
            df[col] = df[col].astype(str)
    table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return _b64(sink.getvalue())


def _event_table_curve(event_table: pd.DataFrame, survival: pd.Series | None) -> pd.DataFrame:
    tab = event_table.copy()
    tab.index.name = "time"
    tab = tab.reset_index()
    if "time" not in tab.columns:
        tab = tab.rename(columns={tab.columns[0]: "time"})

    def counts(name: str) -> pd.Series:
        # withheld counts (NaN) stay unknown: they are not released as numbers
        values = pd.to_numeric(tab[name], errors="coerce")
        return values.astype("Int64") if values.notna().all() else values.astype(float)

    out = pd.DataFrame({"time": tab["time"].astype(float), "at_risk": counts("at_risk"),
                        "observed": counts("observed"), "censored": counts("censored")})
    if survival is not None:
        out["survival"] = survival.reindex(out["time"].to_numpy(), method="ffill").to_numpy()
    return out


def _one_curve(obj: Any, group: str | None = None) -> dict:
    survival = getattr(obj, "survival_function_", None)
    series = survival.iloc[:, 0] if isinstance(survival, pd.DataFrame) else None
    label = (group or getattr(obj, "group_label", None) or getattr(obj, "label", None)
             or getattr(obj, "_label", None) or "all")
    return {"group": str(label), "table": table_bytes(_event_table_curve(obj.event_table,
                                                                          series))}


def _has_event_table(obj: Any) -> bool:
    table = getattr(obj, "event_table", None)
    return isinstance(table, pd.DataFrame) and "at_risk" in table.columns


def _curves(obj: Any) -> list[dict] | None:
    tables = getattr(obj, "event_tables", None)  # coarsen_survival: {group: event table}
    if isinstance(tables, dict):
        return [{"group": str(g), "table": table_bytes(_event_table_curve(
                    t, t["survival"] if "survival" in t.columns else None))}
                for g, t in tables.items()]
    if isinstance(obj, dict) and obj and all(_has_event_table(v) for v in obj.values()):
        return [_one_curve(v, str(g)) for g, v in obj.items()]  # wb.secure KM by group
    if _has_event_table(obj):
        return [_one_curve(obj)]
    return None


def _model(obj: Any) -> dict | None:
    params = getattr(obj, "params_", None)
    if params is None and hasattr(obj, "df_resid") and hasattr(obj, "params"):
        params = obj.params  # statsmodels results
    if params is None:
        return None
    summary = getattr(obj, "summary", None)
    table = summary if isinstance(summary, pd.DataFrame) else pd.DataFrame({"coef": params})
    n_obs = next((getattr(obj, a) for a in ("n_obs_", "n_obs", "_n_examples", "nobs", "n")
                  if getattr(obj, a, None) is not None), None)
    if n_obs is None:
        raise WorkbenchUserError(
            "this model does not say how many observations it was fitted on, so its degrees of "
            "freedom cannot be checked: release a lifelines, statsmodels or wb.secure fit",
            reason="release-unsupported")
    n_params = len(params)
    if hasattr(obj, "df_resid"):
        n_params = int(round(float(n_obs) - float(obj.df_resid)))
    events = next((getattr(obj, a) for a in ("n_events_", "n_events", "events")
                   if getattr(obj, a, None) is not None), None)
    if events is None and getattr(obj, "event_observed", None) is not None:
        events = int(pd.Series(obj.event_observed).sum())
    family = (getattr(obj, "family_", None) or getattr(obj, "kind", None)
              or type(obj).__name__).lower()
    family = ("cox" if "cox" in family else "logistic" if "logistic" in family
              else family.replace("fitter", "").replace("result", ""))
    return {"family": str(family), "params": table_bytes(table), "n_obs": int(n_obs),
            "n_params": int(n_params), "n_events": None if events is None else int(events)}


def _figure(obj: Any) -> tuple[bytes, str] | None:
    if hasattr(obj, "savefig"):  # a matplotlib figure
        buf = io.BytesIO()
        obj.savefig(buf, format="png", dpi=100)
        return buf.getvalue(), "png"
    if hasattr(obj, "get_figure") and hasattr(obj.get_figure(), "savefig"):  # axes
        return _figure(obj.get_figure())
    if isinstance(obj, bytes | bytearray) and bytes(obj[:8]) == _PNG_MAGIC:
        return bytes(obj), "png"
    if isinstance(obj, str | bytes) and "<svg" in (obj[:2048] if isinstance(obj, str)
                                                    else obj[:2048].decode("utf-8", "replace")):
        return (obj.encode() if isinstance(obj, str) else obj), "svg"
    return None


def attestation_of(obj: Any) -> dict | None:
    """The release checker's signature a wb.secure result carries (``.attestation``, or
    ``.attrs["attestation"]`` on pandas objects, where an attribute could be a column)."""
    if isinstance(obj, pd.DataFrame | pd.Series):
        found = obj.attrs.get("attestation")
    else:
        found = getattr(obj, "attestation", None)
    return found if isinstance(found, dict) else None


def _signed_table(obj: Any) -> pd.DataFrame:
    """Some table for a signed result that is not a frame (a count, a Series, a histogram, a
    log-rank test): the airlock rebuilds the numbers from the signature, not from this."""
    if isinstance(obj, pd.Series):
        return obj.to_frame().reset_index()
    for attr in ("to_frame", "summary"):
        value = getattr(obj, attr, None)
        value = value() if callable(value) else value
        if isinstance(value, pd.DataFrame):
            return value
    return pd.DataFrame({"value": [float(obj)]})


def to_payload(obj: Any, *, view: str | None = None, counts: list[str] | None = None,
               data: Any = None) -> dict:
    """Serialise a DataFrame, survival fit, model fit or figure for the airlock, with the
    release checker's signature when ``obj`` is a wb.secure result."""
    payload: dict[str, Any] = {"view": view or getattr(obj, "view", None)}
    attestation = attestation_of(obj)
    if attestation is not None:
        payload["attestation"] = attestation
    if isinstance(obj, pd.DataFrame):
        payload.update(kind="table", table=table_bytes(obj), count_columns=counts)
    elif (curves := _curves(obj)) is not None:
        payload.update(kind="survival", curves=curves)
    elif (model := _model(obj)) is not None:
        payload.update(kind="model", model=model)
    elif attestation is not None:
        payload.update(kind="table", table=table_bytes(_signed_table(obj)), count_columns=counts)
    elif (figure := _figure(obj)) is not None:
        # the numbers the figure draws travel as their own payload: the airlock checks them
        # with the rules of their kind (workbench.release.outputs.with_data)
        payload.update(kind="figure", figure=_b64(figure[0]), figure_format=figure[1],
                       data=None if data is None else to_payload(data, view=view, counts=counts))
    else:
        raise WorkbenchUserError(
            f"cannot release a {type(obj).__name__}: release a pandas DataFrame, a Kaplan-Meier or "
            "model fit (wb.secure or lifelines), or a figure (matplotlib, PNG or SVG bytes)",
            reason="release-unsupported")
    return payload


# -- airlock side ---------------------------------------------------------------------------------

_ALLOWED_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean,
                  pa.types.is_string, pa.types.is_large_string, pa.types.is_date,
                  pa.types.is_timestamp, pa.types.is_null)


def read_table(text: str) -> pd.DataFrame:
    try:
        reader = pa.ipc.open_stream(io.BytesIO(_unb64(text)))
        table = reader.read_all()
    except (pa.ArrowInvalid, OSError):
        raise WorkbenchUserError("the release request's table is damaged (not Arrow IPC)") from None
    for f in table.schema:
        if not any(check(f.type) for check in _ALLOWED_TYPES):
            raise WorkbenchUserError(
                f"column '{f.name}' has type {f.type}: only numbers, text, booleans and dates can "
                "be released", reason="release-unsupported")
    if table.num_rows * max(table.num_columns, 1) > MAX_CELLS:
        raise WorkbenchUserError(
            f"the table has {table.num_rows} rows x {table.num_columns} columns: more than "
            f"{MAX_CELLS} cells is not an aggregate output", reason="release-too-large")
    return table.replace_schema_metadata(None).to_pandas()


def clean_png(data: bytes) -> bytes:
    """Decode and re-encode: only pixels survive (text chunks and trailing bytes are dropped)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    if data[:8] != _PNG_MAGIC:
        raise WorkbenchUserError("the figure is not a PNG file", reason="release-unsupported")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels = Image.frombytes(img.convert("RGBA").mode, img.size,
                                     img.convert("RGBA").tobytes())
    except (OSError, ValueError, Image.DecompressionBombError):
        raise WorkbenchUserError("the figure is not a readable PNG image") from None
    out = io.BytesIO()
    pixels.save(out, format="PNG")
    return out.getvalue()


def from_payload(payload: dict) -> Output:
    """The output a kernel sent, decoded with bounded sizes and plain types only. A payload with
    a missing or wrong-typed field is refused as the sender's mistake (found by fuzzing the
    airlock: tests/release/test_fuzz.py), naming the fault's type, never a value."""
    if not isinstance(payload, dict):
        raise WorkbenchUserError("the release payload must be a JSON object: build it with "
                                 "wb.release.request", reason="bad-request")
    try:
        return _decoded(payload)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise WorkbenchUserError(
            f"the release payload is malformed ({type(exc).__name__}: a field is missing or has "
            "the wrong type); build it with wb.release.request", reason="bad-request") from None


def _decoded(payload: dict) -> Output:
    kind = payload.get("kind")
    view = payload.get("view")
    if view is not None and not isinstance(view, str):
        raise WorkbenchUserError("'view' must be a view id")
    counts = payload.get("count_columns")
    if counts is not None and not (isinstance(counts, list)
                                   and all(isinstance(c, str) for c in counts)):
        raise WorkbenchUserError("'counts' must be a list of column names")
    if kind == "table":
        table = read_table(payload["table"])
        _known_columns(table, counts)
        return Output("table", table=table, count_columns=tuple(counts or ()), view=view)
    if kind == "survival":
        curves = []
        for item in payload.get("curves") or []:
            tab = read_table(item["table"])
            missing = {"time", "at_risk", "observed", "censored"} - set(tab.columns)
            if missing:
                raise WorkbenchUserError(f"survival table lacks columns {sorted(missing)}")
            curves.append(SurvivalCurve(str(item["group"])[:100], tab))
        if not curves:
            raise WorkbenchUserError("a survival output needs at least one curve")
        return Output("survival", curves=curves, view=view)
    if kind == "model":
        m = payload["model"]
        fit = ModelFit(family=str(m["family"])[:40], params=read_table(m["params"]),
                       n_obs=int(m["n_obs"]), n_params=int(m["n_params"]),
                       n_events=None if m.get("n_events") is None else int(m["n_events"]))
        return Output("model", model=fit, view=view)
    if kind == "figure":
        fmt = payload.get("figure_format")
        raw = _unb64(payload["figure"])
        if fmt == "png":
            image = clean_png(raw)
        elif fmt == "svg":
            from workbench.release.svg import clean_svg
            image = clean_svg(raw)
        else:
            raise WorkbenchUserError("figures are PNG or SVG", reason="release-unsupported")
        table = read_table(payload["table"]) if payload.get("table") else None
        if table is not None:
            _known_columns(table, counts)
        return Output("figure", figure=image, figure_format=fmt, table=table,
                      count_columns=tuple(counts or ()), view=view)
    raise WorkbenchUserError(f"unknown output kind {kind!r}", reason="release-unsupported")


def _known_columns(table: pd.DataFrame, counts: list[str] | None) -> None:
    for col in counts or ():
        if col not in table.columns:
            raise WorkbenchUserError(
                f"counts names column '{col}', which the table does not have "
                f"(columns: {', '.join(map(str, table.columns))})")
